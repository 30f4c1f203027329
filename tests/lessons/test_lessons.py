"""Lessons: made from real recordings' incidents, kept in SQLite, strengthened across robots and
manufacturers, surviving restarts; a database that cannot be used is one line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from twin.emulator.actors import FALL_SHOVE_G, FALL_SHOVE_S
from twin.lessons.store import (
    NOT_RECORDED,
    SCHEMA_VERSION,
    LessonStore,
    LessonStoreError,
    Sighting,
)


def twin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_lost_grip_becomes_a_lesson_another_maker_strengthens(
    fall_recording: Path, orca_drop_recording: Path, tmp_path: Path
) -> None:
    db = tmp_path / "lessons.sqlite3"
    first = twin("lessons", "learn", str(fall_recording), "--lessons", str(db), "--json")
    assert first.returncode == 0, first.stderr
    learnt = {(r["cause"], r["robot"]): r for r in json.loads(first.stdout)}
    drop = learnt[("grasp_dropped", "T3-01")]
    assert drop["new"] and ("fall", "T3-04") in learnt
    # learning the same recording again changes nothing
    again = twin("lessons", "learn", str(fall_recording), "--lessons", str(db), "--json")
    assert all(not r["new"] for r in json.loads(again.stdout))
    # the same cause on the same task, another robot of another manufacturer: strengthened
    second = twin("lessons", "learn", str(orca_drop_recording), "--json",
                  env={"HALL_TWIN_LESSONS": str(db)})  # fmt: skip
    assert second.returncode == 0, second.stderr
    (orca,) = [r for r in json.loads(second.stdout) if r["cause"] == "grasp_dropped"]
    assert orca["lesson"] == drop["lesson"] and not orca["new"]
    listing = twin("lessons", "--json", "--lessons", str(db))
    lessons = {x["id"]: x for x in json.loads(listing.stdout)}
    lesson = lessons[drop["lesson"]]
    assert lesson["task"] == "pick_and_place" and lesson["count"] == 2
    assert lesson["robots"] == ["H2-02", "T3-01"]
    assert lesson["manufacturers"] == ["Orca Mechatronics", "Tessel Humanoids"]
    assert lesson["condition"]["kind"] == "grip_weakened"
    assert lesson["condition"]["item"]  # what the gripper held, measured from the heartbeats
    measured = lesson["sightings"][0]["conditions"]
    assert measured["holding"] and "tilt_rad" in measured and "peak_effort_ratio" in measured
    fall = next(x for x in lessons.values() if x["kind"] == "fall")
    assert fall["condition"]["kind"] == "push"
    # the emulator's fall is a shove of FALL_SHOVE_G for FALL_SHOVE_S on a robot with its motors
    # cut (1.47 m/s of speed change): the push the lesson measured is of that size
    shove_m_s = FALL_SHOVE_G * 9.81 * FALL_SHOVE_S
    assert 0.5 * shove_m_s <= fall["condition"]["delta_v_m_s"] <= 2.0 * shove_m_s, fall
    assert fall["sightings"][0]["conditions"]["tilt_rad"] >= 0.0
    show = twin("lessons", "show", drop["lesson"], "--lessons", str(db))
    assert show.returncode == 0 and f"twin replay {fall_recording}" in show.stdout


def test_lessons_survive_a_restart_and_dedup_in_the_store(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite3"
    seen = Sighting("T3-01", "tessel_t3", "Tessel Humanoids", 5, "r.mcap", "F0001", {})
    with LessonStore(db) as store:
        lesson, new = store.learn(kind="grasp_dropped", severity="error", task="pick_and_place",
                                  step=None, summary="s", condition={"kind": "grip_weakened"},
                                  sighting=seen, now_ns=1)  # fmt: skip
        assert (lesson, new) == ("L0001", True)
    with LessonStore(db) as store:  # a new process would see the same
        assert store.learn(kind="grasp_dropped", severity="error", task="pick_and_place",
                           step=None, summary="s", condition={}, sighting=seen,
                           now_ns=2) == ("L0001", False)  # fmt: skip
        (only,) = store.lessons()
        assert only.count == 1 and only.condition == {"kind": "grip_weakened"}


def test_a_database_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = twin("lessons", "--lessons", str(junk))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a lessons database" in result.stderr
    newer = tmp_path / "newer.sqlite3"
    LessonStore(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(SCHEMA_VERSION + 1),))
    result = twin("lessons", "--lessons", str(newer))
    assert result.returncode == 2 and "is newer than this twin's" in result.stderr
    locked = tmp_path / "locked.sqlite3"
    LessonStore(locked).close()
    holder = sqlite3.connect(locked)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LessonStoreError, match="locked by another process"):
            LessonStore(locked)
    finally:
        holder.rollback()
        holder.close()
    missing = twin("lessons", "show", "L0042", "--lessons", str(tmp_path / "new.sqlite3"))
    assert missing.returncode == 2 and "no lesson 'L0042'" in missing.stderr


def test_reading_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "lessons.sqlite3"
    listing = twin("lessons", "--json", "--lessons", str(db))
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
    said = f"twin lessons: {db}: no lessons database there (none learnt yet)"
    assert listing.stderr.strip() == said
    table = twin("lessons", env={"HALL_TWIN_LESSONS": str(db)})
    assert table.returncode == 0 and "0 lessons" in table.stdout
    assert "no lessons database there" in table.stderr
    show = twin("lessons", "show", "L0001", "--lessons", str(db))
    assert show.returncode == 2 and show.stderr.count("\n") == 1
    assert "no lesson 'L0001'" in show.stderr and "no lessons database there" in show.stderr
    assert not db.exists() and not db.parent.exists()


def test_lessons_help_shows_the_default_database() -> None:
    shown = twin("lessons", "--help", env={"COLUMNS": "200"})
    assert shown.returncode == 0
    assert "[default: $HALL_TWIN_LESSONS or ~/.local/state/hall-twin]" in shown.stdout


def test_a_lesson_seen_only_by_a_twin_not_recording_has_no_replay(tmp_path: Path) -> None:
    db = tmp_path / "lessons.sqlite3"
    live = Sighting("T3-01", "tessel_t3", "Tessel Humanoids", 5, NOT_RECORDED, "F0003", {})
    with LessonStore(db) as store:
        lesson, _ = store.learn(kind="grasp_dropped", severity="error", task="pick_and_place",
                                step="carry", summary="s", condition={"kind": "grip_weakened"},
                                sighting=live, now_ns=1)  # fmt: skip
    show = twin("lessons", "show", lesson, "--lessons", str(db))
    assert show.returncode == 0 and "twin replay" not in show.stdout
    assert "replay: none (seen only by a twin that was not recording)" in show.stdout
    shown = json.loads(twin("lessons", "show", lesson, "--lessons", str(db), "--json").stdout)
    assert shown["replay"] is None
    # a later sighting that was recorded is what can be replayed
    recorded = Sighting("H2-02", "orca_h2", "Orca Mechatronics", 9, "/r/b.mcap", "F0011", {})
    with LessonStore(db) as store:
        store.learn(kind="grasp_dropped", severity="error", task="pick_and_place", step="carry",
                    summary="s", condition={}, sighting=recorded, now_ns=2)  # fmt: skip
    shown = json.loads(twin("lessons", "show", lesson, "--lessons", str(db), "--json").stdout)
    assert shown["replay"] == "twin replay /r/b.mcap --event F0011"
