"""Lessons made live, inside ``twin live``: failures grouped into incidents as they come, and a
lesson made (or strengthened) once an incident's cause is settled.

The mirror hands every failure to :meth:`LiveLessons.on_failure`, which snapshots the robot's
conditions at detection (tilt, base height, effort against rating, what it holds) when the
failure opens an incident; :meth:`LiveLessons.poll`, called after each run of the detectors,
makes the lesson of every incident whose cause is settled (the search for a stronger cause is
over: at once for a fall, which nothing later can outrank, 0.3 s after a grasp dropped
by an upright robot, else 1 s after its first event; :meth:`Incident.cause_settled`) and hands
it to ``publish``. A lessons database that fails mid-run is
one warning: the twin goes on mirroring without lessons (``enabled`` turns False).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

from scenes.model import Scene
from sync.codecs import codec_for
from twin.failures.events import FailureEvent, RobotLike
from twin.failures.incidents import Incident, IncidentGrouper
from twin.failures.monitors import tilt_rad
from twin.lessons.concern import concerned_robots
from twin.lessons.derive import LESSON_CAUSES, reproducible, step_words
from twin.lessons.store import NOT_RECORDED, LessonStore, LessonStoreError, Sighting

log = logging.getLogger(__name__)

INCIDENTS_KEPT: Final = 256
"""Incidents a live twin holds for grouping (the lessons and the recording keep the rest)."""
Publish = Callable[[str, str, dict[str, Any]], None]
"""``publish(robot_id, lesson_id, detail)``."""


def conditions_now(robot: RobotLike) -> dict[str, Any]:
    """What a robot's latest state says: tilt, base height, peak effort over rating, held item,
    the task step or motion phase its gateway says it is in."""
    out: dict[str, Any] = {"measured": "at detection"}
    base = robot.base
    if base is not None:
        tilt = tilt_rad(base.orientation_xyzw, robot.model.base_orientation_xyzw)
        out["tilt_rad"] = round(tilt, 4)
        out["base_height_m"] = round(base.position_m[2], 4)
    joints = robot.joints
    if joints is not None:
        codec = codec_for(robot.model)
        ratings = np.array([robot.model.joint(n).effort_limit for n in codec.names])
        if len(ratings) == len(joints.efforts):
            usable = np.isfinite(ratings) & (ratings > 0)
            ratio = np.where(usable, np.abs(joints.efforts) / np.where(usable, ratings, 1.0), 0.0)
            i = int(np.argmax(ratio))
            out["peak_effort_ratio"] = round(float(ratio[i]), 3)
            out["peak_effort_joint"] = codec.canonical_names[i]
    beat = robot.heartbeat
    out["holding"] = (beat.holding or None) if beat is not None else None
    out["step"] = (getattr(beat, "step", "") or None) if beat is not None else None
    return out


class LiveLessons:
    """Incidents and lessons of a running twin."""

    def __init__(
        self,
        store: LessonStore,
        scene: Scene,
        robots: Mapping[str, RobotLike],
        publish: Publish,
        *,
        recording: str = NOT_RECORDED,
    ) -> None:
        self.store = store
        self.scene = scene
        self.robots = robots
        self.publish = publish
        self.recording = recording
        self.enabled = True
        self.why_off = ""
        self.made = 0
        self.grouper = IncidentGrouper(keep=INCIDENTS_KEPT)
        self._pending: list[tuple[Incident, dict[str, Any]]] = []

    def status(self) -> dict[str, Any]:
        """The ``lessons`` part of ``twin status``: on or off (and why), made, in the store."""
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "why_off": self.why_off,
            "database": str(self.store.path),
            "made": self.made,
            "incidents": self.grouper.opened,
            "waiting_for_cause": len(self._pending),
        }
        return out

    def on_failure(self, failure: FailureEvent) -> None:
        incident, opened = self.grouper.add(failure)
        if opened:
            robot = self.robots.get(failure.robot_id)
            conditions = conditions_now(robot) if robot is not None else {}
            self._pending.append((incident, conditions))

    def poll(self, now_ns: int) -> None:
        """Make the lessons of incidents whose cause is settled."""
        due = [p for p in self._pending if p[0].cause_settled(now_ns)]
        if not due:
            return
        self._pending = [p for p in self._pending if p not in due]
        for incident, conditions in due:
            if self.enabled:
                self._learn(incident, conditions)

    def _learn(self, incident: Incident, conditions: dict[str, Any]) -> None:
        cause = incident.cause
        if cause.kind not in LESSON_CAUSES:
            return
        try:
            robot = self.scene.robot(incident.robot_id)
        except KeyError:
            return
        model = self.robots[robot.id].model
        summary = (
            f"{cause.kind.replace('_', ' ')} by {robot.id} ({model.manufacturer} "
            f"{model.name}) during {robot.task}{step_words(conditions)}: {cause.details}"
        )
        condition = reproducible(cause.kind, cause.details, conditions)
        try:
            lesson, new = self.store.learn(
                kind=cause.kind,
                severity=incident.severity,
                task=robot.task,
                step=conditions.get("step"),
                summary=summary,
                condition=condition,
                sighting=Sighting(
                    robot.id,
                    model.name,
                    model.manufacturer,
                    cause.stamp_ns,
                    self.recording,
                    incident.id,
                    conditions,
                ),
                now_ns=time.time_ns(),
            )
        except LessonStoreError as exc:
            log.warning("lessons off, the twin goes on mirroring: %s", exc)
            self.enabled = False
            self.why_off = str(exc)
            return
        self.made += 1
        concerned = concerned_robots(cause.kind, robot.task, self.scene)
        self.publish(
            robot.id,
            lesson,
            {
                "lesson": lesson,
                "new": new,
                "kind": cause.kind,
                "task": robot.task,
                "robot": robot.id,
                "manufacturer": model.manufacturer,
                "incident": incident.id,
                "concerns": concerned,
                "summary": summary,
                "condition": condition,
            },
        )
