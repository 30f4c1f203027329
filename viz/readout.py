"""What a viewer reads off the twin's state, whatever draws it: the desktop window
(:mod:`viz.viewer`) and the web page (:mod:`viz.web`) share these.

Joint limits per robot (:func:`joint_index`), a joint quantity as a fraction of its limit
for the colour modes (:func:`joint_fractions`), whether a robot is down
(:func:`is_fallen`), its label, the LED panels' lines and a lesson event's task.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Iterable
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from robots import get_model
from sync.fanout import RobotView
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


def is_fallen(view: RobotView) -> bool:
    """Down: a protective stop, a fault, or the base well below its standing height."""
    standing = get_model(view.model).base_height_m
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


def panel_lines(views: Collection[RobotView], *, fallen: int, failures_seen: int) -> dict[str, str]:
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
        "data_rate": f"DATA {rate_kb:.0f} kB/s",
        "clock": time.strftime("%H:%M:%S"),
    }


def panel_text(shows: Iterable[str], lines: dict[str, str]) -> str:
    """A panel's text: the lines it shows, at most three."""
    return "\n".join([lines[s] for s in shows][:3])


def lesson_task(detail: str) -> str:
    """The task a ``lesson`` event concerns: its JSON detail's ``task``, or the detail itself."""
    try:
        data = json.loads(detail)
    except ValueError:
        return detail
    return str(data.get("task", "")) if isinstance(data, dict) else detail
