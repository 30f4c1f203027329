"""Lessons made live: ``twin live`` and ``twin emulate`` as real processes; a lost grip on one
robot is one lesson, shared on the fan-out with the robots on that task, and the same cause
on another manufacturer's robot strengthens it; the lessons outlive the twin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import zmq

from sync.addresses import Endpoints
from sync.fanout import CloneClient
from tests.helpers import STARTUP_S, Proc, wait_for
from twin.lessons.store import LessonStore

ANY = "tcp://127.0.0.1:*"


def test_a_lost_grip_is_a_lesson_shared_live_and_strengthened_across_makers(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    db = tmp_path / "lessons.sqlite3"
    twin = Proc("live", "--lessons", str(db), "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY)
    hall = None
    try:
        match = twin.wait_line(r"ingest (\S+) fan-out (\S+) snapshot (\S+)", STARTUP_S)
        endpoints = Endpoints(match.group(1), match.group(2), match.group(3))
        clone = CloneClient(context, endpoints.fanout, endpoints.snapshot)
        clone.start(timeout_s=5.0)
        hall = Proc("emulate", "--ingest", endpoints.ingest, "--no-noise", "--seconds", "14",
                    "--fault", "T3-01:lose_grip@1s", "--fault", "H2-02:lose_grip@6s")  # fmt: skip

        # the robots on pick_and_place, and those whose loop grips (precision assembly, the
        # torque wrench): three manufacturers
        def line(pattern: str, timeout_s: float) -> re.Match[str]:
            # the clone is read meanwhile: a fan-out subscriber left unread drops at its HWM
            found = wait_for(
                lambda: (clone.poll(timeout_s=0.05), twin.wait_for(pattern, 0.0))[1],
                timeout_s=timeout_s,
                what=pattern,
            )
            match: re.Match[str] = found[0]
            return match

        first = line(
            r"lesson (L\d+) \(new\): grasp_dropped by T3-01 during "
            r"pick_and_place, shared with H2-01, H2-02, K1-01, T3-01",
            STARTUP_S,
        )
        second = line(r"lesson (L\d+) \(strengthened\): grasp_dropped by H2-02", 20.0)
        assert first.group(1) == second.group(1)

        def lesson_events() -> list[dict[str, object]]:
            clone.poll(timeout_s=0.05)
            return [json.loads(e.detail) for e in clone.events if e.kind == "lesson"]

        wait_for(lambda: len(lesson_events()) >= 2, timeout_s=10.0, what="2 lessons")
        events = lesson_events()
        assert {e["manufacturer"] for e in events} == {"Tessel Humanoids", "Orca Mechatronics"}
        assert all(e["concerns"] == ["H2-01", "H2-02", "K1-01", "T3-01"] for e in events)
        clone.close()
    finally:
        if hall is not None:
            hall.stop()
        twin.stop()
    with LessonStore(db) as store:  # after the twin is gone
        (lesson,) = [x for x in store.lessons() if x.kind == "grasp_dropped"]
    assert lesson.robots == ["H2-02", "T3-01"] and lesson.count == 2
    assert lesson.step == "carry"  # both slipped while carrying: the same step, one lesson
    assert lesson.condition["kind"] == "grip_weakened"
    assert str(lesson.condition["item"]).startswith("part-")  # the item that slipped
    assert "tilt_rad" in lesson.sightings[0].conditions
