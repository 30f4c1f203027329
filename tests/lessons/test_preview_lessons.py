"""``twin preview`` runs the task again under every lesson that concerns it and reports each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip


def test_a_preview_lists_the_lessons_that_concern_it(fall_recording: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "lessons.sqlite3")
    learnt = twin("lessons", "learn", str(fall_recording), "--lessons", db, "--json")
    assert learnt.returncode == 0, learnt.stderr
    by_cause = {r["cause"]: r["lesson"] for r in json.loads(learnt.stdout)}
    result = twin("preview", "scenes/tasks/torque_wrench.yaml", "--json", "--lessons", db,
                  "--trials", "3", "--jobs", "2")  # fmt: skip
    report = json.loads(result.stdout)
    runs = {r["lesson"]: r for r in report["lessons"]["runs"]}
    # the dropped grasp (T3-01, pick_and_place) concerns every task with a grasp step; the fall
    # (T3-04, squats) every task that walks
    grip, push = runs[by_cause["grasp_dropped"]], runs[by_cause["fall"]]
    assert grip["condition"]["kind"] == "grip_weakened" and push["condition"]["kind"] == "push"
    assert isinstance(grip["survived"], bool) and isinstance(push["survived"], bool)
    assert report["passed_with_lessons"] == (
        report["passed"] and grip["survived"] and push["survived"]
    )
    assert result.returncode == (0 if report["passed_with_lessons"] else 1)
    # the trials take the lessons' conditions among their variations
    spread = [o["lesson"] for o in report["robustness"]["outcomes"]]
    assert spread == [None, *[r["lesson"] for r in report["lessons"]["runs"]]]
    assert set(report["robustness"]["lessons"]) == {grip["lesson"], push["lesson"]}
    # the preview record says which lessons it ran, and in which database: what the gate reads
    kept = json.loads(Path(report["record"]).read_text(encoding="utf-8"))
    assert kept["lessons_checked"] == {
        "database": str(Path(db).resolve()),
        "ids": [r["lesson"] for r in report["lessons"]["runs"]],
    }
    assert set(kept["lessons_checked"]["ids"]) == {grip["lesson"], push["lesson"]}
    without = twin("preview", "scenes/tasks/torque_wrench.yaml", "--json", "--no-lessons")
    plain = json.loads(without.stdout)
    assert "lessons" not in plain
    # the same bytes' record now says it checked none: the gate refuses it while a lesson
    # concerns the task
    kept = json.loads(Path(plain["record"]).read_text(encoding="utf-8"))
    assert kept["lessons_checked"] is None


def test_effort_and_joint_limit_lessons_have_a_preview_form(tmp_path: Path) -> None:
    from twin.lessons.store import LessonStore, Sighting

    db = tmp_path / "lessons.sqlite3"
    seen = Sighting("K1-01", "kestrel_k1", "Kestrel Robotics", 1, "r.mcap", "F0001", {})
    with LessonStore(db) as store:
        heavy, _ = store.learn(
            kind="effort", severity="error", task="torque_wrench", step=None, summary="effort",
            condition={"kind": "payload", "scale": 10.0}, sighting=seen, now_ns=1,
        )  # fmt: skip
        narrow, _ = store.learn(
            kind="joint_limit", severity="warning", task="torque_wrench", step=None,
            summary="limit", condition={"kind": "limit_margin", "range_scale": 0.5},
            sighting=seen, now_ns=1,
        )  # fmt: skip
    result = twin("preview", "scenes/tasks/torque_wrench.yaml", "--json", "--lessons", str(db))
    report = json.loads(result.stdout)
    runs = {r["lesson"]: r for r in report["lessons"]["runs"]}
    assert report["passed"] and not report["passed_with_lessons"] and result.returncode == 1
    # ten times the wrench's mass: the arm's effort goes over its rating
    assert runs[heavy]["survived"] is False and "rated effort" in runs[heavy]["why"]
    # half the allowed range: the elbows' 0.76 of their half range no longer fits
    assert runs[narrow]["survived"] is False and "half range" in runs[narrow]["why"]


def test_a_preview_against_a_missing_database_checks_none_and_creates_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state" / "lessons.sqlite3"
    result = twin("preview", "scenes/tasks/torque_wrench.yaml", "--json", "--lessons", str(db))
    report = json.loads(result.stdout)
    assert report["lessons"] == {"database": str(db), "runs": []}
    kept = json.loads(Path(report["record"]).read_text(encoding="utf-8"))
    assert kept["lessons_checked"] == {"database": str(db.resolve()), "ids": []}
    assert not db.parent.exists()  # a preview only reads the lessons
