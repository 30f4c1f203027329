"""Data-sharing flows: glowing arcs between each robot and the hub, with travelling pulses.

One line actor holds every arc (brightness from the measured bytes/s, through a
colormap) and one point actor every pulse. Pulses travel robot -> hub for each robot's
upload, at a pace and density that grow with its data rate; a shared lesson sends a
burst of pulses from the robot that failed to the hub, then hub -> every robot it concerns
(:meth:`FlowLayer.share_lesson`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pyvista as pv
from matplotlib.colors import LinearSegmentedColormap
from numpy.typing import NDArray

ARC_SEGMENTS: Final = 24
ARC_LIFT_M: Final = 2.5
UP_RGB: Final = (0.30, 0.80, 1.00)
LESSON_RGB: Final = (1.00, 0.62, 0.20)
GLOW_CMAP: Final = LinearSegmentedColormap.from_list(
    "flow_glow", [(0.62, 0.70, 0.80), (0.25, 0.72, 1.0), (0.55, 1.0, 1.0)]
)
PULSES_PER_ARC: Final = 4
LESSON_S: Final = 2.0
LESSON_UP_SHARE: Final = 0.3  # of a burst: from the robot that failed up to the hub
_REFERENCE_BYTES_PER_S: Final = 250_000.0  # an arc at this rate glows at full brightness


def arc_points(start: NDArray[np.float64], end: NDArray[np.float64]) -> NDArray[np.float64]:
    """A quadratic Bezier arc lifted above ``start`` and ``end``, shape (ARC_SEGMENTS+1, 3)."""
    mid = (start + end) / 2.0
    distance = float(np.linalg.norm(end[:2] - start[:2]))
    control = mid + np.array([0.0, 0.0, ARC_LIFT_M + 0.15 * distance])
    t = np.linspace(0.0, 1.0, ARC_SEGMENTS + 1)[:, None]
    points: NDArray[np.float64] = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    return points


def brightness(bytes_per_s: float) -> float:
    """0..1 glow of an arc for a data rate (log scale; 0 when nothing flows)."""
    if bytes_per_s <= 0:
        return 0.0
    return float(min(1.0, math.log1p(bytes_per_s) / math.log1p(_REFERENCE_BYTES_PER_S)))


@dataclass
class Lesson:
    started_s: float
    robot_ids: tuple[str, ...]
    source_id: str | None = None
    """The robot whose failure taught it: the burst first rises from it to the hub."""


_PHASES: Final = np.linspace(0.0, 1.0, PULSES_PER_ARC, endpoint=False)


def pulse_points(arc: NDArray[np.float64], level: float, now_s: float) -> NDArray[np.float64]:
    """Where an arc's pulses are at ``now_s`` (shape (pulses per arc, 3)): evenly spaced,
    faster for a brighter ``level`` (0..1); all at the arc's start when nothing flows."""
    if level <= 0.0:
        return np.repeat(arc[:1], PULSES_PER_ARC, axis=0)
    speed = 0.15 + 0.6 * level  # arc lengths per second
    return np.array([_along(arc, (phase + now_s * speed) % 1.0) for phase in _PHASES])


def pulse_rgb(level: float) -> tuple[int, int, int]:
    """A pulse's colour (0-255) for an arc's glow ``level``; black when nothing flows."""
    if level <= 0.0:
        return (0, 0, 0)
    r, g, b = (int(255 * c * (0.4 + 0.6 * level)) for c in UP_RGB)
    return (r, g, b)


def lesson_points(
    lessons: list[Lesson], arcs: Mapping[str, NDArray[np.float64]], now_s: float
) -> list[NDArray[np.float64]]:
    """Where each lesson burst's pulses are: first all together from the robot that failed up
    to the hub (when it is known and drawn), then hub -> every robot the lesson concerns."""
    positions = []
    for lesson in lessons:
        u = (now_s - lesson.started_s) / LESSON_S
        source = arcs.get(lesson.source_id) if lesson.source_id is not None else None
        if source is not None and u < LESSON_UP_SHARE:
            up = _along(source, u / LESSON_UP_SHARE)  # robot -> hub
            positions += [up for r in lesson.robot_ids if r in arcs]
            continue
        if source is not None:
            u = (u - LESSON_UP_SHARE) / (1.0 - LESSON_UP_SHARE)
        for robot_id in lesson.robot_ids:
            arc = arcs.get(robot_id)
            if arc is not None:
                positions.append(_along(arc[::-1], u))  # hub -> robot
    return positions


@dataclass
class FlowLayer:
    """Arcs and pulses for a set of robots and one hub."""

    plotter: pv.Plotter
    hub_top_m: tuple[float, float, float]
    robot_ids: tuple[str, ...]
    arcs: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    lessons: list[Lesson] = field(default_factory=list)
    visible: bool = True

    def __post_init__(self) -> None:
        n = len(self.robot_ids)
        points = np.zeros((n * (ARC_SEGMENTS + 1), 3))
        lines = []
        for i in range(n):
            lines.append(ARC_SEGMENTS + 1)
            lines.extend(range(i * (ARC_SEGMENTS + 1), (i + 1) * (ARC_SEGMENTS + 1)))
        self.arc_mesh = pv.PolyData(points, lines=np.array(lines)) if n else pv.PolyData()
        self.arc_mesh.point_data["glow"] = np.zeros(len(points))
        self.pulse_mesh = pv.PolyData(np.zeros((max(1, n * PULSES_PER_ARC), 3)))
        self.pulse_mesh.point_data["rgb"] = np.zeros((self.pulse_mesh.n_points, 3), dtype=np.uint8)
        self._lesson_capacity = max(1, 4 * n)
        self.lesson_mesh = pv.PolyData(
            np.tile(np.asarray(self.hub_top_m), (self._lesson_capacity, 1))
        )
        if n:
            self.arc_actor = self.plotter.add_mesh(
                self.arc_mesh,
                scalars="glow",
                cmap=GLOW_CMAP,
                clim=(0.0, 1.0),
                line_width=3,
                render_lines_as_tubes=True,
                lighting=False,
                show_scalar_bar=False,
                name="flows",
            )
            self.pulse_actor = self.plotter.add_mesh(
                self.pulse_mesh,
                scalars="rgb",
                rgb=True,
                point_size=12,
                render_points_as_spheres=True,
                lighting=False,
                name="pulses",
            )
            self.lesson_actor = self.plotter.add_mesh(
                self.lesson_mesh,
                color=LESSON_RGB,
                point_size=16,
                render_points_as_spheres=True,
                lighting=False,
                name="lessons",
            )

    def set_visible(self, visible: bool) -> None:
        """Show or hide all flows."""
        self.visible = visible
        for name in ("arc_actor", "pulse_actor", "lesson_actor"):
            actor = getattr(self, name, None)
            if actor is not None:
                actor.SetVisibility(visible)

    def share_lesson(
        self, now_s: float, robot_ids: tuple[str, ...], source_id: str | None = None
    ) -> None:
        """Start a burst of pulses (from ``source_id`` to the hub, then) from the hub to these
        robots: a lesson shared."""
        self.lessons.append(Lesson(now_s, robot_ids, source_id))

    def update(
        self,
        now_s: float,
        chest_m: Mapping[str, tuple[float, float, float]],
        bytes_per_s: Mapping[str, float],
    ) -> None:
        """Re-route arcs to the robots' chests and move pulses along them."""
        if not self.robot_ids:
            return
        hub = np.asarray(self.hub_top_m, dtype=np.float64)
        points = self.arc_mesh.points
        glow = self.arc_mesh.point_data["glow"]
        pulses = self.pulse_mesh.points
        colours = self.pulse_mesh.point_data["rgb"]
        k = ARC_SEGMENTS + 1
        for i, robot_id in enumerate(self.robot_ids):
            arc = arc_points(np.asarray(chest_m[robot_id], dtype=np.float64), hub)
            self.arcs[robot_id] = arc
            points[i * k : (i + 1) * k] = arc
            level = brightness(bytes_per_s.get(robot_id, 0.0))
            glow[i * k : (i + 1) * k] = level
            slots = slice(i * PULSES_PER_ARC, (i + 1) * PULSES_PER_ARC)
            pulses[slots] = pulse_points(arc, level, now_s)
            colours[slots] = pulse_rgb(level)
        self.arc_mesh.points = points
        self.pulse_mesh.points = pulses
        self._update_lessons(now_s)

    def _update_lessons(self, now_s: float) -> None:
        self.lessons = [ls for ls in self.lessons if now_s - ls.started_s < LESSON_S]
        positions = lesson_points(self.lessons, self.arcs, now_s)
        # fixed capacity: unused slots wait inside the hub, out of sight
        slots = np.tile(
            np.asarray(self.hub_top_m) - np.array([0.0, 0.0, 0.5]), (self._lesson_capacity, 1)
        )
        for i, position in enumerate(positions[: self._lesson_capacity]):
            slots[i] = position
        self.lesson_mesh.points = slots


def _along(arc: NDArray[np.float64], u: float) -> NDArray[np.float64]:
    """The point a fraction ``u`` (0..1) along a polyline (by index, arcs are evenly sampled)."""
    x = u * (len(arc) - 1)
    i = min(int(x), len(arc) - 2)
    f = x - i
    point: NDArray[np.float64] = arc[i] * (1 - f) + arc[i + 1] * f
    return point
