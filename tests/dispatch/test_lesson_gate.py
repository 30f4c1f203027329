"""The gate's ``lessons`` condition: a preview older than a lesson that concerns the task is
refused, naming the lesson; one made after it passes."""

from __future__ import annotations

from scenes import load_scene
from scenes.tasks import TASKS_DIR, load_task
from twin.dispatch.checks import lessons_refusal
from twin.lessons.store import Lesson, Sighting
from twin.preview.store import PreviewRecord

S = 1_000_000_000
BORN_NS = 1_796_000_000 * S  # 2026-11-30 00:53:20 UTC


def lesson(kind: str, task: str, created_ns: int) -> Lesson:
    seen = Sighting("T3-01", "tessel_t3", "Tessel Humanoids", created_ns, "r.mcap", "F0007")
    condition = {"kind": "grip_weakened", "grip_scale": 0.5}
    return Lesson("L0007", kind, "error", task, None, "s", condition, created_ns, (seen,))


def test_a_preview_older_than_a_lesson_about_the_task_is_refused() -> None:
    scene = load_scene()
    task = load_task(TASKS_DIR / "torque_wrench.yaml", scene)  # it grasps the wrench
    old = PreviewRecord("x", "t.yaml", task.robot, True, [], BORN_NS - 60 * S, scene.name)
    new = PreviewRecord("x", "t.yaml", task.robot, True, [], BORN_NS + 60 * S, scene.name)
    drop = lesson("grasp_dropped", "pick_and_place", BORN_NS)
    refusal = lessons_refusal(task, "t.yaml", old, scene, [drop])
    assert refusal is not None and refusal.condition == "lessons"
    assert refusal.detail == (
        "lesson L0007, grasp dropped by T3-01 during pick_and_place on 2026-11-30 00:53:20 UTC, "
        "came after this preview; run `twin preview t.yaml` again"
    )
    assert lessons_refusal(task, "t.yaml", new, scene, [drop]) is None
    # a lesson about another task's kind of step does not concern it
    calibration = load_task(TASKS_DIR / "sensor_calibration.yaml", scene)
    old_cal = PreviewRecord("x", "c.yaml", calibration.robot, True, [], 0, scene.name)
    assert lessons_refusal(calibration, "c.yaml", old_cal, scene, [drop]) is None
