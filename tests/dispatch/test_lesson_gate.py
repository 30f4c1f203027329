"""The gate's ``lessons`` condition: a passing preview that did not run the task under a lesson
that concerns it (older than the lesson, or not checking it in the twin's lessons database) is
refused, naming the lesson and its step; one that checked it passes."""

from __future__ import annotations

from pathlib import Path

from scenes import load_scene
from scenes.tasks import TASKS_DIR, load_task
from twin.dispatch.checks import lessons_refusal
from twin.lessons.store import Lesson, Sighting
from twin.preview.store import LessonsChecked, PreviewRecord

S = 1_000_000_000
BORN_NS = 1_796_000_000 * S  # 2026-11-30 00:53:20 UTC
AGAIN = "run `twin preview t.yaml` again"


def lesson(kind: str, task: str, created_ns: int, step: str | None = None) -> Lesson:
    seen = Sighting("T3-01", "tessel_t3", "Tessel Humanoids", created_ns, "r.mcap", "F0007")
    condition = {"kind": "grip_weakened", "grip_scale": 0.5}
    return Lesson("L0007", kind, "error", task, step, "s", condition, created_ns, (seen,))


def record(
    robot: str, created_ns: int, checked: LessonsChecked | None, path: str = "t.yaml"
) -> PreviewRecord:
    scene_name = load_scene().name
    return PreviewRecord(
        "x", path, robot, True, [], created_ns, scene_name, lessons_checked=checked
    )


def test_a_preview_older_than_a_lesson_about_the_task_is_refused(tmp_path: Path) -> None:
    scene = load_scene()
    db = tmp_path / "lessons.sqlite3"
    task = load_task(TASKS_DIR / "torque_wrench.yaml", scene)  # it grasps the wrench
    old = record(task.robot, BORN_NS - 60 * S, LessonsChecked(str(db), []))
    new = record(task.robot, BORN_NS + 60 * S, LessonsChecked(str(db), ["L0007"]))
    drop = lesson("grasp_dropped", "pick_and_place", BORN_NS)
    refusal = lessons_refusal(task, "t.yaml", old, scene, [drop], db)
    assert refusal is not None and refusal.condition == "lessons"
    assert refusal.detail == (
        "lesson L0007, grasp dropped by T3-01 during pick_and_place on 2026-11-30 00:53:20 UTC, "
        f"came after this preview; {AGAIN}"
    )
    assert lessons_refusal(task, "t.yaml", new, scene, [drop], db) is None
    # the lesson's step, when it is known, says where in the task it happened
    at_carry = lesson("grasp_dropped", "pick_and_place", BORN_NS, step="carry")
    refusal = lessons_refusal(task, "t.yaml", old, scene, [at_carry], db)
    assert refusal is not None and refusal.detail == (
        "lesson L0007, grasp dropped by T3-01 at step carry on 2026-11-30 00:53:20 UTC, "
        f"came after this preview; {AGAIN}"
    )
    # a lesson about another task's kind of step does not concern it, checked or not
    calibration = load_task(TASKS_DIR / "sensor_calibration.yaml", scene)
    old_cal = record(calibration.robot, 0, None, "c.yaml")
    assert lessons_refusal(calibration, "c.yaml", old_cal, scene, [drop], db) is None


def test_a_passing_preview_that_did_not_check_a_concerning_lesson_is_refused(
    tmp_path: Path,
) -> None:
    scene = load_scene()
    db = tmp_path / "lessons.sqlite3"
    db.write_bytes(b"")
    task = load_task(TASKS_DIR / "torque_wrench.yaml", scene)
    drop = lesson("grasp_dropped", "pick_and_place", BORN_NS, step="carry")
    after_ns = BORN_NS + 60 * S  # every preview below came after the lesson
    named = "lesson L0007, grasp dropped by T3-01 at step carry on 2026-11-30 00:53:20 UTC"

    def refused(checked: LessonsChecked | None) -> str | None:
        refusal = lessons_refusal(
            task, "t.yaml", record(task.robot, after_ns, checked), scene, [drop], db
        )
        assert refusal is None or refusal.condition == "lessons"
        return None if refusal is None else refusal.detail

    # `twin preview --no-lessons`, or a preview whose lessons database failed
    assert refused(None) == (
        f"{named}, was not checked by this preview (it ran without lessons); {AGAIN}"
    )
    # a preview against another lessons database: its ids are another database's
    other = str(tmp_path / "elsewhere" / "lessons.sqlite3")
    assert refused(LessonsChecked(other, ["L0007"])) == (
        f"{named}, was not checked by this preview (it checked the lessons in {other}); {AGAIN}"
    )
    # the same database, without this lesson among those it checked
    assert refused(LessonsChecked(str(db), ["L0003"])) == (
        f"{named}, was not checked by this preview; {AGAIN}"
    )
    # the same database by another name, the lesson checked: it passes
    (tmp_path / "link.sqlite3").symlink_to(db)
    assert refused(LessonsChecked(str(tmp_path / "link.sqlite3"), ["L0007"])) is None
    assert refused(LessonsChecked(str(db), ["L0003", "L0007"])) is None
