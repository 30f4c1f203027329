"""Lessons survive a twin restart, on real processes: ``twin live --lessons DB`` learns a lesson
from ``twin emulate``'s injected lost grip and is stopped; a new ``twin live`` on the same
database sees another manufacturer's robot on the same task lose its grip in the same step and
strengthens that lesson (same id, count 2) instead of making a new one; ``twin lessons --json``
lists it so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import zmq

from sync.fanout import RequestError, request_status
from tests.helpers import STARTUP_S, Proc, wait_for

ANY = "tcp://127.0.0.1:*"
CONCERNED = "H2-01, H2-02, K1-01, T3-01"


def _lessons(db: Path) -> list[dict[str, Any]]:
    shown = subprocess.run(
        [sys.executable, "-m", "twin", "lessons", "--lessons", str(db), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    listed: list[dict[str, Any]] = json.loads(shown.stdout)
    return listed


def _lose_grip(db: Path, fault: str) -> tuple[Proc, Proc, str]:
    """A ``twin live`` on ``db`` and an emulated hall with ``fault``; (twin, hall, snapshot)."""
    twin = Proc("live", "--lessons", str(db), "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY)
    try:
        match = twin.wait_line(r"ingest (\S+) fan-out \S+ snapshot (\S+)", STARTUP_S)
        # lessons on, in this database (said before or after the endpoints)
        assert twin.wait_for(rf"^lessons: {re.escape(str(db))}$", 10.0) is not None
    except BaseException:
        twin.stop()
        raise
    hall = Proc("emulate", "--ingest", match.group(1), "--no-noise", "--seconds", "60",
                "--fault", fault)  # fmt: skip
    return twin, hall, match.group(2)


def _stop(twin: Proc, hall: Proc) -> None:
    hall.stop()
    twin.stop()


def test_a_lesson_outlives_the_twin_and_is_strengthened_after_a_restart(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    db = tmp_path / "lessons.sqlite3"
    twin, hall, _ = _lose_grip(db, "T3-01:lose_grip@1s")  # Tessel, pick_and_place
    try:
        first = twin.wait_line(
            rf"lesson (L\d+) \(new\): grasp_dropped by T3-01 during pick_and_place, "
            rf"shared with {CONCERNED}$",
            STARTUP_S,
        )
    finally:
        _stop(twin, hall)
    assert twin.popen.returncode is not None  # the first twin is gone
    lesson_id = first.group(1)
    (kept,) = [x for x in _lessons(db) if x["id"] == lesson_id]
    assert (kept["count"], kept["robots"], kept["step"]) == (1, ["T3-01"], "carry")

    # a new twin on the same database; Orca's H2-02, also on pick_and_place, slips carrying
    twin, hall, snapshot = _lose_grip(db, "H2-02:lose_grip@6s")
    try:
        again = twin.wait_line(r"lesson (L\d+) \((new|strengthened)\): grasp_dropped by H2-02",
                               STARTUP_S)  # fmt: skip
        assert (again.group(1), again.group(2)) == (lesson_id, "strengthened")

        def status() -> dict[str, Any] | None:
            try:
                return request_status(context, snapshot, timeout_s=2.0)
            except RequestError:
                return None

        lessons = wait_for(status, timeout_s=30.0, what="the restarted twin's status")["lessons"]
        assert lessons["enabled"] and lessons["made"] == 1  # this twin made it stronger, once
        # listed so while the twin runs on
        (listed,) = [x for x in _lessons(db) if x["kind"] == "grasp_dropped"]
    finally:
        _stop(twin, hall)
    assert listed["id"] == lesson_id and listed["count"] == 2
    assert listed["created_ns"] == kept["created_ns"]  # the same lesson, not made again
    assert listed["robots"] == ["H2-02", "T3-01"] and listed["step"] == "carry"
    assert listed["manufacturers"] == ["Orca Mechatronics", "Tessel Humanoids"]
    assert [s["robot"] for s in listed["sightings"]] == ["T3-01", "H2-02"]
    assert not [line for line in twin.stderr if "(new): grasp_dropped" in line]
