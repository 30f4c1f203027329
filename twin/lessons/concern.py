"""Which lessons concern a task, and the preview variation that reproduces each.

A lesson concerns a task when the task's robot has the lesson's station task in the scene, or
the task has the kind of step the lesson is about on any model: a dropped grasp concerns every
task with a ``grasp`` step, a fall every task with ``walk`` or ``squat`` steps. The variation
(:func:`variation_fields`) is the lesson's reproducible condition in the preview's terms:
``grip_weakened`` -> ``grip_scale``, ``push`` -> ``push_delta_v_m_s``, ``payload`` ->
``payload_scale`` (loose items heavier by the measured effort over rating), ``limit_margin`` ->
``limit_range_scale`` (the joints' allowed range narrowed); ``obstacle`` (a collision's other
body) has no preview form yet and is reported as such.

Live, a lesson is shared with the robots it concerns (:func:`concerned_robots`): every robot on
the same station task, and every robot whose station task uses the skill the lesson is about
(a dropped grasp reaches every robot whose loop grips, of any manufacturer). Each gets advice
on how to act on it (:func:`advice_for`): a slower pace, and for a dropped grasp a firmer grip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from scenes.model import Scene
from scenes.tasks import Task
from twin.lessons.store import Lesson

_STEPS_OF: Final[dict[str, frozenset[str]]] = {
    "grasp_dropped": frozenset({"grasp"}),
    "fall": frozenset({"walk", "squat"}),
}
_STATION_SKILLS: Final[dict[str, frozenset[str]]] = {
    "walking": frozenset({"walk"}),
    "squats": frozenset({"squat"}),
    "pick_and_place": frozenset({"grasp"}),
    "precision_assembly": frozenset({"grasp"}),
    "torque_wrench": frozenset({"grasp"}),
}
"""The skills (kinds of task step) each station task's loop uses."""
LIMIT_RANGE_SCALE: Final = 0.9
"""A ``limit_margin`` lesson without its own ``range_scale``: a tenth of the range given up."""

_ADVICE: Final[dict[str, tuple[float, float]]] = {
    "grasp_dropped": (0.8, 1.5),
    "fall": (0.7, 1.0),
    "collision": (0.7, 1.0),
    "effort": (0.8, 1.0),
    "joint_limit": (0.9, 1.0),
}
"""Lesson kind -> (pace, grip force scale) a receiving robot is advised to take."""


def concerned_robots(kind: str, task: str, scene: Scene) -> list[str]:
    """The robots a lesson of ``kind`` learnt on station task ``task`` concerns (sorted)."""
    skills = _STEPS_OF.get(kind, frozenset())
    return sorted(
        r.id
        for r in scene.robots
        if r.task == task or skills & _STATION_SKILLS.get(r.task, frozenset())
    )


def advice_for(kind: str) -> tuple[float, float]:
    """(pace, grip force scale) advised for a lesson of ``kind``: (1, 1) is no change."""
    return _ADVICE.get(kind, (1.0, 1.0))


def step_kinds(task: Task) -> set[str]:
    """The kinds of step a task has (``walk``, ``grasp``, ...)."""
    kinds = set()
    for step in task.steps:
        kinds |= {k for k, v in step.model_dump().items() if v is not None}
    return kinds


def concerning(lessons: Iterable[Lesson], task: Task, scene: Scene) -> list[Lesson]:
    """The lessons that concern ``task`` (see the module docstring)."""
    try:
        station_task = scene.robot(task.robot).task
    except KeyError:
        station_task = None
    kinds = step_kinds(task)
    return [
        lesson
        for lesson in lessons
        if lesson.task == station_task or kinds & _STEPS_OF.get(lesson.kind, frozenset())
    ]


def variation_fields(lesson: Lesson) -> dict[str, Any] | None:
    """Keyword arguments of the preview variation reproducing ``lesson``, or None."""
    condition = lesson.condition
    kind = condition.get("kind")
    if kind == "grip_weakened":
        return {"grip_scale": float(condition.get("grip_scale", 0.5)), "lesson": lesson.id}
    if kind == "push":
        return {"push_delta_v_m_s": float(condition.get("delta_v_m_s", 0.3)), "lesson": lesson.id}
    if kind == "payload":
        return {"payload_scale": float(condition.get("scale", 1.0)), "lesson": lesson.id}
    if kind == "limit_margin":
        scale = float(condition.get("range_scale", LIMIT_RANGE_SCALE))
        return {"limit_range_scale": scale, "lesson": lesson.id}
    return None
