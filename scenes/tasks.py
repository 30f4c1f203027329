"""Load and validate task files against a scene: YAML in, a :class:`Task` or precise errors out.

A task file (``scenes/tasks/*.yaml``, format in docs/task-format.md and
:mod:`scenes.task_model`) names a robot of the scene and the steps it should do. Every problem is
reported at once, one line each, as ``FILE:LINE: KEY.PATH: reason``, the same way scene files are
(the machinery is :mod:`hallfiles.yaml_reader`'s): unknown keys with a "did you mean", wrong units,
unknown robots, stations, benches, items and cranes, grasping a fixed item, placing or turning
something not in hand, a wrench turned above its rating, a crane path outside its travel or
faster than its axes.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hallfiles.yaml_reader import (
    KeyPath,
    Problem,
    YamlProblem,
    format_path,
    line_for,
    read_file_text,
    read_mapping,
    reason_for,
    sorted_problems,
)
from scenes.model import Bench, Item, Scene
from scenes.task_model import STEP_KINDS, Step, Target, Task

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).with_name("tasks")
"""The example tasks shipped with the default hall."""

Issue = tuple[KeyPath, str]

__all__ = [
    "TASKS_DIR",
    "Task",
    "TaskError",
    "item_on_bench",
    "load_task",
    "parse_task_text",
    "target_point",
]


class TaskError(Exception):
    """A task file could not be loaded; ``problems`` holds every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# -- geometry helpers shared with the compiler -----------------------------------


def item_on_bench(scene: Scene, item_id: str) -> tuple[Bench, Item]:
    """The bench an item lies on and the item (KeyError if no such item)."""
    for bench in scene.benches:
        for item in bench.items:
            if item.id == item_id:
                return bench, item
    raise KeyError(f"no item {item_id!r} in scene {scene.name!r}")


def _bench_point(bench: Bench, dx: float, dy: float, z: float) -> tuple[float, float, float]:
    yaw = bench.pose.yaw_rad
    c, s = math.cos(yaw), math.sin(yaw)
    x0, y0, _ = bench.pose.xyz
    return (x0 + c * dx - s * dy, y0 + s * dx + c * dy, z)


def item_top(scene: Scene, item_id: str) -> tuple[float, float, float]:
    """Centre of an item's top face where it lies in the scene (m, hall frame)."""
    bench, item = item_on_bench(scene, item_id)
    top = bench.pose.xyz[2] + bench.height + item.size[2]
    return _bench_point(bench, item.offset[0], item.offset[1], top)


def target_point(target: Target, scene: Scene) -> tuple[float, float, float]:
    """A target as a hall-frame point (m); offsets turn with the bench."""
    if target.xyz is not None:
        return target.xyz
    ox, oy, oz = target.offset
    if target.bench is not None:
        bench = scene.bench(target.bench)
        return _bench_point(bench, ox, oy, bench.pose.xyz[2] + bench.height + oz)
    assert target.item is not None
    bench, item = item_on_bench(scene, target.item)
    top = bench.pose.xyz[2] + bench.height + item.size[2]
    return _bench_point(bench, item.offset[0] + ox, item.offset[1] + oy, top + oz)


# -- loading ------------------------------------------------------------------------


def load_task(path: Path, scene: Scene) -> Task:
    """Load, validate and check a task file against ``scene``.

    Raises :class:`TaskError` listing every problem (file, line, key path, reason).
    """
    shown = str(path)
    try:
        text = read_file_text(Path(path), shown)
    except YamlProblem as exc:
        raise TaskError([exc.problem]) from None
    return parse_task_text(text, shown, scene)


def parse_task_text(text: str, source: str, scene: Scene) -> Task:
    """Validate task YAML text against ``scene``; ``source`` names it in messages (and gives the
    task its default name, the stem)."""
    try:
        data, lines = read_mapping(text, source, "task")
    except YamlProblem as exc:
        raise TaskError([exc.problem]) from None
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        errors = exc.errors()
        for error in errors:
            if _after_item_errors(error, errors):
                continue
            loc, reason = _task_reason(error)
            key = (format_path(loc), reason)
            if key not in seen:
                seen.add(key)
                problems.append(Problem(source, line_for(loc, lines), key[0], reason))
        raise TaskError(sorted_problems(problems)) from None
    if not task.name:
        task = task.model_copy(update={"name": Path(source).stem})
    problems = [
        Problem(source, line_for(loc, lines), format_path(loc), reason)
        for loc, reason in check_task(task, scene)
    ]
    if problems:
        raise TaskError(sorted_problems(problems))
    log.debug("loaded task %r for %s from %s", task.name, task.robot, source)
    return task


def _after_item_errors(error: Any, errors: Sequence[Any]) -> bool:
    """A "too short" list whose items failed: the items' own errors say it better."""
    if error["type"] != "too_short":
        return False
    loc = tuple(error["loc"])
    return any(len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors)


_UNION_MEMBERS = {"constrained-str": "a name", "str": "a name"}


def _task_reason(error: Any) -> tuple[KeyPath, str]:
    """A pydantic error as (key path, reason), with hints from the task schema."""
    raw = error["loc"]
    if raw and isinstance(raw[-1], str) and (raw[-1] in _UNION_MEMBERS or "[" in raw[-1]):
        loc: KeyPath = tuple(raw[:-1])
        value = error.get("input")
        if loc[-1:] == ("to",):
            return loc, f"expected a station id or a point [x, y], got {value!r}"
        return loc, f"expected a name or a list, got {type(value).__name__} {value!r}"
    loc = tuple(p for p in raw if isinstance(p, int) or "[" not in p)
    if error["type"] in ("too_short", "too_long"):
        return loc, f"{error['msg'].lower()}, got {len(error.get('input', ()))}"
    return reason_for(error, Task)


# -- whole-task rules ---------------------------------------------------------------


def check_task(task: Task, scene: Scene) -> list[Issue]:
    """Every problem of a task against a scene, as (key path, reason) pairs."""
    issues: list[Issue] = []
    robot_ids = [r.id for r in scene.robots]
    if task.robot not in robot_ids:
        issues.append((("robot",), _unknown("robot", task.robot, robot_ids)))
    issues.extend(_step_issues(task, scene))
    if task.crane is not None:
        issues.extend(_crane_issues(task, scene))
    return issues


def _unknown(what: str, name: str, known: Sequence[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    if hint:
        return f"unknown {what} {name!r} (did you mean {hint[0]!r}?)"
    return f"unknown {what} {name!r} (known: {', '.join(known) or 'none'})"


def _items(scene: Scene) -> dict[str, Item]:
    return {item.id: item for bench in scene.benches for item in bench.items}


def _target_issues(target: Target, path: KeyPath, scene: Scene) -> Iterator[Issue]:
    if target.bench is not None:
        benches = [b.id for b in scene.benches]
        if target.bench not in benches:
            yield (*path, "bench"), _unknown("bench", target.bench, benches)
    if target.item is not None:
        items = _items(scene)
        if target.item not in items:
            yield (*path, "item"), _unknown("item", target.item, list(items))
    if target.xyz is not None:
        yield from _point_issues(target.xyz, (*path, "xyz"), scene)


def _point_issues(xyz: Sequence[float], path: KeyPath, scene: Scene) -> Iterator[Issue]:
    sx, sy = scene.floor.size
    x, y = xyz[0], xyz[1]
    if not (0.0 <= x <= sx and 0.0 <= y <= sy):
        yield path, f"({x:g}, {y:g}) m is outside the floor (0..{sx:g}, 0..{sy:g} m)"
    if len(xyz) == 3 and not 0.0 <= xyz[2] <= scene.floor.ceiling:
        yield path, f"height {xyz[2]:g} m is outside 0..{scene.floor.ceiling:g} m"


def _step_issues(task: Task, scene: Scene) -> Iterator[Issue]:
    items = _items(scene)
    stations = [s.id for s in scene.stations]
    held: dict[str, str] = {}  # item -> hand
    for index, step in enumerate(task.steps):
        base: KeyPath = ("steps", index, step.kind)
        yield from _one_step(step, base, scene, items, stations, held)


def _one_step(
    step: Step,
    base: KeyPath,
    scene: Scene,
    items: dict[str, Item],
    stations: list[str],
    held: dict[str, str],
) -> Iterator[Issue]:
    if step.walk is not None:
        to = step.walk.to
        if isinstance(to, str):
            if to not in stations:
                yield (*base, "to"), _unknown("station", to, stations)
        else:
            yield from _point_issues(to, (*base, "to"), scene)
    elif step.reach is not None:
        yield from _target_issues(step.reach.target, (*base, "target"), scene)
    elif step.grasp is not None:
        grasp = step.grasp
        item = items.get(grasp.item)
        if item is None:
            yield (*base, "item"), _unknown("item", grasp.item, list(items))
        elif item.fixed:
            yield (
                (*base, "item"),
                f"item {grasp.item!r} is fixed to its bench; it cannot be grasped",
            )
        elif grasp.item in held:
            yield (*base, "item"), f"item {grasp.item!r} is already in the {held[grasp.item]} hand"
        elif grasp.hand in held.values():
            other = next(k for k, v in held.items() if v == grasp.hand)
            yield (*base, "hand"), f"the {grasp.hand} hand already holds {other!r}"
        else:
            held[grasp.item] = grasp.hand
    elif step.place is not None:
        place = step.place
        if place.item not in held:
            yield (*base, "item"), f"item {place.item!r} is not in hand here; grasp it first"
        else:
            del held[place.item]
        yield from _target_issues(place.at, (*base, "at"), scene)
    elif step.torque is not None:
        yield from _torque_issues(step, base, items, held, scene)
    elif step.calibrate is not None:
        array = items.get(step.calibrate.array)
        if array is None:
            yield (*base, "array"), _unknown("item", step.calibrate.array, list(items))
        elif array.kind != "sensor_array":
            yield (*base, "array"), f"item {array.id!r} is a {array.kind}, not a sensor_array"


def _torque_issues(
    step: Step, base: KeyPath, items: dict[str, Item], held: dict[str, str], scene: Scene
) -> Iterator[Issue]:
    torque = step.torque
    assert torque is not None
    wrench = items.get(torque.wrench)
    if wrench is None:
        yield (*base, "wrench"), _unknown("item", torque.wrench, list(items))
        return
    if wrench.kind != "torque_wrench":
        yield (*base, "wrench"), f"item {wrench.id!r} is a {wrench.kind}, not a torque_wrench"
        return
    if torque.wrench not in held:
        yield (*base, "wrench"), f"wrench {torque.wrench!r} is not in hand here; grasp it first"
    if wrench.rated_torque is None:
        yield (*base, "wrench"), f"wrench {wrench.id!r} has no rated_torque in the scene"
    elif torque.torque > wrench.rated_torque + 1e-9:
        yield (
            (*base, "torque"),
            (
                f"{torque.torque:g} N*m is above the rating of {wrench.id!r} "
                f"({wrench.rated_torque:g} N*m)"
            ),
        )
    if torque.at is not None:
        yield from _target_issues(torque.at, (*base, "at"), scene)


def _crane_issues(task: Task, scene: Scene) -> Iterator[Issue]:
    plan = task.crane
    assert plan is not None
    cranes = {c.id: c for c in scene.cranes}
    crane = cranes.get(plan.id)
    if crane is None:
        yield ("crane", "id"), _unknown("crane", plan.id, list(cranes))
        return
    home = crane.home
    previous = (0.0, home.bridge, home.trolley, home.hoist)
    previous_bad = False
    for index, point in enumerate(plan.path):
        path: KeyPath = ("crane", "path", index)
        values = {"bridge": point.bridge, "trolley": point.trolley, "hoist": point.hoist}
        bad_axis = False
        for axis, value in values.items():
            low, high = getattr(crane, axis).travel
            if not low <= value <= high:
                bad_axis = True
                yield (
                    (*path, axis),
                    (
                        f"{value:g} m is outside crane {crane.id}'s {axis} travel "
                        f"{low:g}..{high:g} m"
                    ),
                )
        if point.at < previous[0] or (index > 0 and point.at <= previous[0]):
            yield (
                (*path, "at"),
                (f"waypoint times must increase: {point.at:g} s after {previous[0]:g} s"),
            )
            previous = (point.at, point.bridge, point.trolley, point.hoist)
            previous_bad = True
            continue
        span = point.at - previous[0]
        if not bad_axis and not previous_bad:
            for k, axis in enumerate(("bridge", "trolley", "hoist"), start=1):
                distance = abs(values[axis] - previous[k])
                rated = getattr(crane, axis).speed
                if distance > 1e-9 and (span <= 0 or distance / span > rated + 1e-9):
                    needed = math.inf if span <= 0 else distance / span
                    yield (
                        (*path, axis),
                        (
                            f"reaching {values[axis]:g} m by {point.at:g} s needs "
                            f"{needed:.3g} m/s; "
                            f"crane {crane.id}'s {axis} is rated {rated:g} m/s"
                        ),
                    )
        previous = (point.at, point.bridge, point.trolley, point.hoist)
        previous_bad = bad_axis


def step_kinds() -> tuple[str, ...]:
    """The step kinds a task file may use."""
    return STEP_KINDS
