"""What a viewer reads off the twin's state, whatever draws it: the desktop window
(:mod:`viz.viewer`) and the web page (:mod:`viz.web`) share these.

Joint limits per robot (:func:`joint_index`), a joint quantity as a fraction of its limit
for the colour modes (:func:`joint_fractions`), whether a robot is down
(:func:`is_fallen`), its label, the LED panels' lines, and the failures and lessons a viewer
has seen with the robots a lesson's burst goes to (:class:`EventTally`).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from robots import get_model
from sync.fanout import Event, RobotView
from twin.world.world import World
from viz.joint_panel import JointIndex

ColourBy = Literal["manufacturer", "effort", "position", "velocity"]
COLOUR_MODES: Final[tuple[str, ...]] = ("manufacturer", "effort", "position", "velocity")
COLOUR_TITLES: Final[dict[str, str]] = {
    "effort": "effort / rating",
    "position": "position / range",
    "velocity": "speed / limit",
}
GREY_RGB: Final = (150, 150, 150)
DEAD: Final = frozenset({"STALE", "GONE"})
FALLEN_HEIGHT_FRACTION: Final = 0.6  # a base below this share of its standing height is down


def joint_index(world: World, view: RobotView) -> JointIndex | None:
    """Where each of a view's joints sits in ``world`` and its limits; None for a robot the
    world does not hold."""
    if view.robot_id not in world.robots:
        return None
    handle = world.robot(view.robot_id)
    model = get_model(handle.model.name)
    links, lower, upper, effort, velocity = [], [], [], [], []
    for name in view.joint_names:
        joint = model.joint(name)
        links.append(handle.joint_index[joint.name])
        lower.append(joint.lower)
        upper.append(joint.upper)
        effort.append(joint.effort_limit)
        velocity.append(joint.velocity_limit)
    return JointIndex(
        list(view.joint_names),
        np.array(links, dtype=np.int64),
        np.array(lower),
        np.array(upper),
        np.array(effort),
        np.array(velocity),
    )


def joint_fractions(mode: ColourBy, view: RobotView, index: JointIndex) -> NDArray[np.float64]:
    """Per joint: |effort| / rating, |speed| / limit, or position within its range (0..1 when
    inside; a joint without limits spans one turn)."""
    if mode == "effort":
        effort: NDArray[np.float64] = np.abs(np.asarray(view.efforts)) / np.maximum(
            index.effort_limit, 1e-9
        )
        return effort
    if mode == "velocity":
        speed: NDArray[np.float64] = np.abs(np.asarray(view.velocities)) / np.maximum(
            index.velocity_limit, 1e-9
        )
        return speed
    span = np.where(np.isfinite(index.upper - index.lower), index.upper - index.lower, 2 * math.pi)
    lower = np.where(np.isfinite(index.lower), index.lower, -math.pi)
    fractions: NDArray[np.float64] = (np.asarray(view.positions) - lower) / np.maximum(span, 1e-9)
    return fractions


@functools.lru_cache(maxsize=256)
def _standing_height_m(model_name: str) -> float:
    """A model's standing base height, looked up once per viewer process (``get_model`` walks
    the models path on every call: 34 ms per label update of a 100-robot hall)."""
    return get_model(model_name).base_height_m


def is_fallen(view: RobotView) -> bool:
    """Down: a protective stop, a fault, or the base well below its standing height."""
    standing = _standing_height_m(view.model)
    return (
        view.protective_stop
        or view.mode == "fault"
        or view.base_position_m[2] < FALLEN_HEIGHT_FRACTION * standing
    )


def robot_label(view: RobotView | None, robot_id: str, *, fallen: bool) -> str:
    """Two lines: id and manufacturer; task and liveness (or FALLEN)."""
    if view is None:
        return robot_id
    state = "FALLEN" if fallen else view.liveness
    return f"{robot_id} {view.manufacturer}\n{view.task} - {state}"


def panel_lines(
    views: Collection[RobotView], *, fallen: int, failures_seen: int, lessons_seen: int = 0
) -> dict[str, str]:
    """The text each kind of LED panel line shows (keys as in a scene's ``panels[].shows``)."""
    live = sum(1 for v in views if v.liveness == "LIVE")
    tasks = sum(1 for v in views if v.liveness == "LIVE" and v.mode == "running")
    rate_kb = sum(v.in_bytes_per_s for v in views if v.liveness not in DEAD) / 1000.0
    # failures the twin reported while we watched; at least the robots down right now
    failures = max(failures_seen, fallen)
    return {
        "robots_live": f"LIVE {live}/{len(views)}",
        "tasks_running": f"TASKS {tasks}",
        "failures_today": f"FAILURES {failures}",
        "lessons": f"LESSONS {lessons_seen}",
        "data_rate": f"DATA {rate_kb:.0f} kB/s",
        "clock": time.strftime("%H:%M:%S"),
    }


def panel_text(shows: Iterable[str], lines: dict[str, str]) -> str:
    """A panel's text: the lines it shows, at most three."""
    return "\n".join([lines[s] for s in shows][:3])


def lesson_task(detail: str) -> str:
    """The task a ``lesson`` event concerns: its JSON detail's ``task``, or the detail itself."""
    data = _lesson_detail(detail)
    return str(data.get("task", "")) if data is not None else detail


def _lesson_detail(detail: str) -> dict[str, Any] | None:
    try:
        data = json.loads(detail)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass
class EventTally:
    """What a viewer counts from the twin's events while it watches: failures, and the
    lessons shared (distinct ids: a strengthened lesson is not a new one)."""

    failures_seen: int = 0
    lesson_ids: set[str] = field(default_factory=set)

    @property
    def lessons_seen(self) -> int:
        return len(self.lesson_ids)

    def take(self, event: Event, views: Collection[RobotView]) -> tuple[str, ...] | None:
        """Count ``event``; for a lesson, the robots its burst goes to: those the lesson
        concerns (its ``concerns``: same task or the same skill, across manufacturers), or,
        for a detail without that list, every robot on its task. None for other events."""
        if event.kind == "failure":
            self.failures_seen += 1
            return None
        if event.kind != "lesson":
            return None
        data = _lesson_detail(event.detail)
        if data is not None and data.get("lesson"):
            self.lesson_ids.add(str(data["lesson"]))
        concerns = data.get("concerns") if data is not None else None
        if isinstance(concerns, list):
            known = {v.robot_id for v in views}
            return tuple(str(r) for r in concerns if str(r) in known)
        task = lesson_task(event.detail)
        return tuple(v.robot_id for v in views if v.task == task)
