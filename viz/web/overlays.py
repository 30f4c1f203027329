"""What floats over the robots on a web page: labels, fallen markers, data-sharing flows.

Labels say id, manufacturer, task and liveness (:func:`viz.readout.robot_label`) and follow
each robot's head; fallen robots carry a red marker; arcs from every robot to the hub glow
with its measured bytes/s, pulses run along them (faster for more data), and a lesson shared
by the twin sends a burst of orange pulses from the hub to every robot on its task. The arc
and pulse geometry is the desktop viewer's (:mod:`viz.flows`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import viser

from viz.flows import (
    ARC_SEGMENTS,
    GLOW_CMAP,
    LESSON_RGB,
    LESSON_S,
    PULSES_PER_ARC,
    Lesson,
    arc_points,
    brightness,
    lesson_points,
    pulse_points,
    pulse_rgb,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Vec3 = tuple[float, float, float]
FALLEN_RGB: Final = (230, 30, 30)
_LABEL_MOVE_M: Final = 0.03  # a label is moved when its robot's head moved this far
_ARC_MOVE_M: Final = 0.05


class RobotLabels:
    """One label per robot, re-sent only when its text changes or its robot moves."""

    def __init__(self, scene: viser.SceneApi, robot_ids: tuple[str, ...]) -> None:
        self.text: dict[str, str] = {}
        self._at: dict[str, npt.NDArray[np.float64]] = {}
        self.handles: dict[str, viser.LabelHandle] = {}
        for robot_id in robot_ids:
            self.handles[robot_id] = scene.add_label(
                f"/labels/{robot_id}",
                robot_id,
                position=(0.0, 0.0, -10.0),
                anchor="bottom-center",
                font_screen_scale=0.8,
            )
            self.text[robot_id] = robot_id
        self.markers = scene.add_point_cloud(
            "/labels/fallen",
            points=np.full((max(1, len(robot_ids)), 3), -10.0, dtype=np.float32),
            colors=FALLEN_RGB,
            point_size=0.35,
            point_shape="circle",
            precision="float32",
        )
        self._robot_ids = robot_ids
        self._fallen_points = np.full((max(1, len(robot_ids)), 3), -10.0, dtype=np.float32)

    def update(self, heads: Mapping[str, Vec3], texts: Mapping[str, str], fallen: set[str]) -> None:
        """Move and rewrite labels; a red marker above each fallen robot."""
        markers = np.full_like(self._fallen_points, -10.0)
        for i, robot_id in enumerate(self._robot_ids):
            handle = self.handles[robot_id]
            head = np.asarray(heads[robot_id], dtype=np.float64)
            last = self._at.get(robot_id)
            if last is None or float(np.abs(head - last).max()) > _LABEL_MOVE_M:
                self._at[robot_id] = head
                handle.position = head + np.array([0.0, 0.0, 0.25])
            text = texts[robot_id]
            if self.text[robot_id] != text:
                self.text[robot_id] = text
                handle.text = text
            if robot_id in fallen:
                markers[i] = head + np.array([0.0, 0.0, 0.55])
        if not np.array_equal(markers, self._fallen_points):
            self._fallen_points = markers
            self.markers.points = markers


class WebFlows:
    """Arcs, pulses and lesson bursts between the robots and the hub."""

    def __init__(self, scene: viser.SceneApi, hub_top_m: Vec3, robot_ids: tuple[str, ...]) -> None:
        self.hub = np.asarray(hub_top_m, dtype=np.float64)
        self.robot_ids = robot_ids
        self.arcs: dict[str, npt.NDArray[np.float64]] = {}
        self._ends: dict[str, npt.NDArray[np.float64]] = {}
        self._glow: dict[str, float] = {}
        self.lessons: list[Lesson] = []
        n = max(1, len(robot_ids))
        self._segments = np.zeros((n * ARC_SEGMENTS, 2, 3), dtype=np.float32)
        self._colours = np.zeros((n * ARC_SEGMENTS, 2, 3), dtype=np.uint8)
        self.arc_node = scene.add_line_segments(
            "/flows/arcs", self._segments, colors=self._colours, thickness=0.04
        )
        self.pulse_node = scene.add_point_cloud(
            "/flows/pulses",
            points=np.zeros((n * PULSES_PER_ARC, 3), dtype=np.float32),
            colors=np.zeros((n * PULSES_PER_ARC, 3), dtype=np.uint8),
            point_size=0.08,
            point_shape="circle",
        )
        self._lesson_capacity = 4 * n
        self.lesson_node = scene.add_point_cloud(
            "/flows/lessons",
            points=self._parked_lessons(),
            colors=tuple(int(255 * c) for c in LESSON_RGB),  # type: ignore[arg-type]
            point_size=0.15,
            point_shape="sparkle",
        )

    def _parked_lessons(self) -> F32:
        parked = self.hub - np.array([0.0, 0.0, 0.5])  # inside the hub, out of sight
        return np.tile(parked, (self._lesson_capacity, 1)).astype(np.float32)

    def share_lesson(
        self, now_s: float, robot_ids: tuple[str, ...], source_id: str | None = None
    ) -> None:
        """A burst from ``source_id`` to the hub, then from the hub to these robots."""
        self.lessons.append(Lesson(now_s, robot_ids, source_id))

    def update(
        self, now_s: float, chest_m: Mapping[str, Vec3], bytes_per_s: Mapping[str, float]
    ) -> None:
        """Re-route arcs whose robot moved or whose glow changed; move pulses and bursts."""
        arcs_changed = False
        pulses = np.zeros((max(1, len(self.robot_ids)) * PULSES_PER_ARC, 3), dtype=np.float32)
        colours = np.zeros_like(pulses, dtype=np.uint8)
        for i, robot_id in enumerate(self.robot_ids):
            end = np.asarray(chest_m[robot_id], dtype=np.float64)
            level = round(brightness(bytes_per_s.get(robot_id, 0.0)), 2)
            last = self._ends.get(robot_id)
            if (
                last is None
                or float(np.abs(end - last).max()) > _ARC_MOVE_M
                or level != self._glow.get(robot_id)
            ):
                self._ends[robot_id] = end
                self._glow[robot_id] = level
                arc = arc_points(end, self.hub)
                self.arcs[robot_id] = arc
                rows = slice(i * ARC_SEGMENTS, (i + 1) * ARC_SEGMENTS)
                self._segments[rows, 0] = arc[:-1]
                self._segments[rows, 1] = arc[1:]
                rgb = np.asarray(GLOW_CMAP(level)[:3]) * 255
                self._colours[rows] = rgb.astype(np.uint8)
                arcs_changed = True
            slots = slice(i * PULSES_PER_ARC, (i + 1) * PULSES_PER_ARC)
            pulses[slots] = pulse_points(self.arcs[robot_id], level, now_s)
            colours[slots] = pulse_rgb(level)
        if arcs_changed:
            self.arc_node.points = self._segments
            self.arc_node.colors = self._colours
        self.pulse_node.points = pulses
        self.pulse_node.colors = colours
        self._update_lessons(now_s)

    def _update_lessons(self, now_s: float) -> None:
        before = len(self.lessons)
        self.lessons = [ls for ls in self.lessons if now_s - ls.started_s < LESSON_S]
        if not self.lessons and not before:
            return
        slots = self._parked_lessons()
        for i, position in enumerate(lesson_points(self.lessons, self.arcs, now_s)):
            if i >= len(slots):
                break
            slots[i] = position
        self.lesson_node.points = slots
