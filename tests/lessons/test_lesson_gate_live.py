"""The gate's ``lessons`` condition on real processes: ``twin preview`` of a task, then a lesson
that concerns it born live in ``twin live --keys`` from ``twin emulate``'s injected lost grip,
then ``twin dispatch`` of the previewed task: refused on ``lessons``, the lesson and its step
named, and no plan reaches the robot's gateway (read from the emulator's ``--stats``); previewed
again, the task lists the lesson with its outcome and, having survived it, goes through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from sync.fanout import RequestError, request_status
from sync.keys import init_keys
from tests.helpers import STARTUP_S, Proc, wait_for

ANY = "tcp://127.0.0.1:*"
HOLD_TASK = """\
# H2-02 holds still for a second: a task for a robot on pick_and_place, so a lesson learnt on
# that station task concerns it (the preview is quick: no step walks or grasps)
name: hold
robot: H2-02
steps:
  - wait: 1 s
"""


def _status(context: zmq.Context[zmq.Socket[bytes]], snapshot: str) -> dict[str, Any] | None:
    try:
        return request_status(context, snapshot, timeout_s=2.0)
    except RequestError:
        return None


def _twin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_a_preview_older_than_a_lesson_born_live_is_refused_with_the_lesson_named(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    keys, db, previews = tmp_path / "keys", tmp_path / "lessons.sqlite3", tmp_path / "previews"
    stats, task = tmp_path / "stats.json", tmp_path / "hold.yaml"
    init_keys(keys)
    task.write_text(HOLD_TASK)
    env = {**os.environ, "HALL_TWIN_PREVIEWS": str(previews)}
    twin = Proc("live", "--lessons", str(db), "--keys", str(keys), "--ingest", ANY,
                "--fanout", ANY, "--snapshot", ANY, "--command", ANY, "--control", ANY,
                env={"HALL_TWIN_PREVIEWS": str(previews)})  # fmt: skip
    hall = None
    try:
        # the preview, in the twin's lessons database before any lesson: it passes, none checked
        previewed = _twin("preview", str(task), "--lessons", str(db), "--json", env=env)
        assert previewed.returncode == 0, previewed.stdout + previewed.stderr
        report = json.loads(previewed.stdout)
        assert report["passed_with_lessons"] and report["lessons"]["runs"] == []
        record = json.loads(Path(report["record"]).read_text(encoding="utf-8"))
        assert Path(record["lessons_checked"]["database"]) == db.resolve()
        assert record["lessons_checked"]["ids"] == [] and record["passed"]

        match = twin.wait_line(
            r"ingest (\S+) fan-out \S+ snapshot (\S+) command (\S+) control (\S+)", STARTUP_S
        )
        ingest, snapshot, command, control = match.groups()
        hall = Proc("emulate", "--ingest", ingest, "--keys", str(keys), "--command", command,
                    "--no-noise", "--stats", str(stats), "--seconds", "120",
                    "--fault", "T3-01:lose_grip@1s")  # fmt: skip
        made = twin.wait_line(
            r"lesson (L\d+) \(new\): grasp_dropped by T3-01 during pick_and_place, "
            r"shared with (.*)$",
            STARTUP_S,
        )
        lesson_id = made.group(1)
        assert "H2-02" in made.group(2).split(", ")  # the lesson concerns the previewed robot
        twin.wait_line(rf"lesson {lesson_id} sent to the gateways of .*H2-02", 10.0)

        def gateway_counts() -> dict[str, int]:
            """What reached H2-02's gateway but lessons, from a --stats written after now."""
            asked = time.time()
            wait_for(
                lambda: stats.exists() and stats.stat().st_mtime > asked + 0.5,
                timeout_s=15.0,
                interval_s=0.05,
                what="a fresh --stats from the emulator",
            )
            counts: dict[str, int] = json.loads(stats.read_text())["commands"]["H2-02"]
            return {k: v for k, v in counts.items() if k != "lessons"}

        def connected() -> dict[str, Any] | None:
            status = _status(context, snapshot)
            return status if status and "H2-02" in status["dispatch"]["gateways"] else None

        status = wait_for(connected, timeout_s=30.0, what="H2-02's gateway on the channel")
        sent_before = status["dispatch"]["sent"]
        before = gateway_counts()

        shown = _twin("lessons", "--lessons", str(db), "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        (lesson,) = [x for x in json.loads(shown.stdout) if x["id"] == lesson_id]
        assert lesson["created_ns"] > record["created_ns"]
        assert lesson["step"] == "carry" and lesson["robots"] == ["T3-01"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(lesson["created_ns"] / 1e9))

        dispatched = _twin("dispatch", str(task), "--robot", "H2-02", "--keys", str(keys),
                           "--control", control, "--json", env=env)  # fmt: skip
        assert dispatched.returncode == 1, dispatched.stdout + dispatched.stderr
        outcome = json.loads(dispatched.stdout)
        assert (outcome["outcome"], outcome["condition"]) == ("refused", "lessons"), outcome
        assert outcome["detail"] == (
            f"lesson {lesson_id}, grasp dropped by T3-01 at step carry on {when} UTC, came after "
            f"this preview; run `twin preview {task}` again"
        )
        assert gateway_counts() == before  # no plan reached the gateway
        after = _status(context, snapshot)
        assert after is not None and after["dispatch"]["sent"] == sent_before
        assert after["dispatch"]["refused_by"] == {"lessons": 1}

        # previewed again: the preview runs the task under the lesson's condition and lists
        # it with its outcome; the gate then lets the task through to the gateway
        again = _twin("preview", str(task), "--lessons", str(db), "--json", env=env)
        report = json.loads(again.stdout)
        (run,) = [r for r in report["lessons"]["runs"] if r["lesson"] == lesson_id]
        # holding still, H2-02 holds nothing a weakened grip could drop: it survives
        assert run["condition"]["kind"] == "grip_weakened" and run["survived"] is True
        assert again.returncode == 0 and report["passed_with_lessons"], again.stderr
        accepted = _twin("dispatch", str(task), "--robot", "H2-02", "--keys", str(keys),
                         "--control", control, "--json", env=env)  # fmt: skip
        outcome = json.loads(accepted.stdout)
        assert accepted.returncode == 0 and outcome["outcome"] != "refused", outcome
        wait_for(lambda: gateway_counts() != before, timeout_s=30.0, what="the plan at H2-02")
    finally:
        if hall is not None:
            hall.stop()
        twin.stop()
