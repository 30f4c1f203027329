"""Lessons reach the gateways: ``twin live --keys`` sends a new lesson over the command channel
to every robot it concerns, across manufacturers; the emulated gateways act on it (slower task
loop, firmer grip), acknowledge it, and list it in their heartbeats; the acknowledgements are
counted per robot in ``twin status``, kept with the lesson in the database, and recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from scenes import load_scene
from sync.fanout import RequestError, request_status
from sync.keys import init_keys
from tests.helpers import STARTUP_S, Proc, wait_for
from twin.emulator.physics import EmulatedHall
from twin.lessons.store import LessonStore
from twin.record.recording import open_recording

ANY = "tcp://127.0.0.1:*"
CONCERNED = ["H2-01", "H2-02", "K1-01", "T3-01"]
"""Who a dropped grasp during pick_and_place concerns: the robots on that task and those whose
loop grips (Orca, Kestrel and Tessel robots)."""


def _status(context: zmq.Context[zmq.Socket[bytes]], snapshot: str) -> dict[str, Any] | None:
    try:
        return request_status(context, snapshot, timeout_s=2.0)
    except RequestError:
        return None


def test_a_lesson_reaches_every_concerned_gateway_which_acts_on_it_and_acknowledges(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    keys, db, record = tmp_path / "keys", tmp_path / "lessons.sqlite3", tmp_path / "r.mcap"
    init_keys(keys)
    twin = Proc("live", "--lessons", str(db), "--keys", str(keys), "--record", str(record),
                "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY, "--command", ANY,
                "--control", ANY)  # fmt: skip
    hall = None
    try:
        match = twin.wait_line(
            r"ingest (\S+) fan-out (\S+) snapshot (\S+) command (\S+)", STARTUP_S
        )
        ingest, snapshot, command = match.group(1), match.group(3), match.group(4)
        hall = Proc("emulate", "--ingest", ingest, "--keys", str(keys), "--command", command,
                    "--no-noise", "--seconds", "40", "--fault", "T3-01:lose_grip@1s")  # fmt: skip
        made = twin.wait_line(r"lesson (L\d+) \(new\): grasp_dropped by T3-01", 30.0)
        lesson_id = made.group(1)
        sent = twin.wait_line(rf"lesson {lesson_id} sent to the gateways of (.*)$", 5.0)
        assert sent.group(1).split(", ") == CONCERNED

        def acked() -> dict[str, Any] | None:
            status = _status(context, snapshot)
            if status is None:
                return None
            out = status["dispatch"]["lessons"]
            return status if out["acked"] >= len(CONCERNED) else None

        status = wait_for(acked, timeout_s=10.0, what="every concerned gateway's ack")
        lessons = status["dispatch"]["lessons"]
        assert lessons["sent"] == len(CONCERNED) and lessons["unexpected_acks"] == 0
        assert {r: (v["sent"], v["acked"]) for r, v in lessons["by_robot"].items()} == {
            r: (1, 1) for r in CONCERNED
        }
        assert set(lessons["by_manufacturer"]) == {
            "Kestrel Robotics",
            "Orca Mechatronics",
            "Tessel Humanoids",
        }
        assert status["lessons"]["enabled"] and status["lessons"]["made"] == 1

        def heartbeats_list_it() -> dict[str, Any] | None:
            now = _status(context, snapshot)
            if now is None:
                return None
            rows = {r["robot"]: r for r in now["robots"]}
            return now if all(rows[r]["lessons"] == [lesson_id] for r in CONCERNED) else None

        status = wait_for(heartbeats_list_it, timeout_s=5.0, what="heartbeats with the lesson")
        others = [r for r in status["robots"] if r["robot"] not in CONCERNED]
        assert others and all(r["lessons"] == [] for r in others)  # the walkers etc. got none
    finally:
        if hall is not None:
            hall.stop()
        twin.stop()

    with LessonStore(db) as store:  # the acknowledgements outlive the twin
        (lesson,) = store.lessons()
    row = lesson.as_dict()
    assert row["acknowledged"]["robots"] == CONCERNED
    assert row["acknowledged"]["by_manufacturer"] == {
        "Kestrel Robotics": 1,
        "Orca Mechatronics": 2,
        "Tessel Humanoids": 1,
    }
    applied = {a.robot: a.applied for a in lesson.acks}
    assert applied["K1-01"] == "task loop at 80% speed"  # Kestrel has no gripper fingers
    assert applied["H2-02"] == "task loop at 80% speed, grip force x1.5"  # Orca's gripper

    # `twin lessons --json` says the same
    shown = subprocess.run(
        [sys.executable, "-m", "twin", "lessons", "--lessons", str(db), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (listed,) = json.loads(shown.stdout)
    assert listed["acknowledged"]["robots"] == CONCERNED

    # the recording holds the lesson, where it was sent, and each acknowledgement
    kinds: dict[str, list[dict[str, Any]]] = {}
    for message in open_recording(record).iter_messages(["/events"]):
        event = json.loads(message.data)
        if event["kind"].startswith("lesson"):
            kinds.setdefault(event["kind"], []).append(json.loads(event["detail"]))
    assert [e["lesson"] for e in kinds["lesson"]] == [lesson_id]
    assert kinds["lesson_sent"] == [{"lesson": lesson_id, "not_connected": [], "to": CONCERNED}]
    assert sorted(e["lesson"] for e in kinds["lesson_ack"]) == [lesson_id] * len(CONCERNED)


@pytest.fixture(scope="module")
def emulated_hall() -> EmulatedHall:
    return EmulatedHall(load_scene())


def test_a_lesson_slows_the_task_loop_from_then_on_without_a_jump(
    emulated_hall: EmulatedHall,
) -> None:
    hall = emulated_hall
    robot = "H2-02"
    motion = hall._robot(robot).motion
    hall.step(240)  # 1 s
    t0 = hall.sim_time_s
    applied = hall.take_lesson(robot, "L0042", 0.8, 1.5)
    assert applied == "task loop at 80% speed, grip force x1.5"
    assert hall.take_lesson(robot, "L0042", 0.5, 2.0) == "already applied"
    assert hall.lessons(robot) == ("L0042",)
    hall.step(1)  # the first command after the lesson, at t0: where the loop was (no jump)
    np.testing.assert_allclose(
        hall.motion_target(robot).joint_targets, motion.at(t0).joint_targets, atol=1e-12
    )
    hall.step(239)  # 1 s on: the newest command was at t1, the loop has moved on 0.8 (t1 - t0)
    t1 = hall.sim_time_s - hall._divisor * hall.time_step_s
    got = hall.motion_target(robot).joint_targets
    np.testing.assert_allclose(got, motion.at(t0 + 0.8 * (t1 - t0)).joint_targets, atol=1e-12)
    # a pace that changed nothing would fail here
    assert np.abs(got - motion.at(t1).joint_targets).max() > 1e-3
    gripper = motion.gripper_mask
    forces = np.array(hall._robot(robot).forces)
    nominal_forces = np.array([j.effort_limit for j in motion.joints])
    np.testing.assert_allclose(forces[gripper], 1.5 * nominal_forces[gripper])
    np.testing.assert_allclose(forces[~gripper], nominal_forces[~gripper])
