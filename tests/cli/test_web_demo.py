"""``twin demo`` as a newcomer runs it: the page's URL first, every robot LIVE, and a lesson
born from an injected lost grip and shared with the gateways of every robot it concerns."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import zmq

from sync.fanout import RequestError, request_status
from tests.helpers import wait_for
from twin.record.recording import open_recording

CONCERNED = ["H2-01", "H2-02", "K1-01", "T3-01"]  # pick-and-place and the loops that grasp


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def test_the_demo_serves_its_page_first_keeps_every_robot_live_and_shares_a_lesson(
    tmp_path: Path,
) -> None:
    out, err, record = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "r.mcap"
    lessons = tmp_path / "lessons.sqlite3"
    with out.open("w") as stdout, err.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "twin", "demo", "--seconds", "40", "--port", "0",
             "--record", str(record), "--fault", "T3-01:lose_grip@8s"],
            stdout=stdout, stderr=stderr, cwd=tmp_path,
            env={**os.environ, "HALL_TWIN_LESSONS": str(lessons)},
        )  # fmt: skip
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        url = wait_for(
            lambda: re.search(r"Open (http://\S+/) in a browser", _read(out)),
            timeout_s=60.0,
            what="the page's URL",
        ).group(1)
        assert _read(out).startswith(f"Open {url}")  # the first thing a newcomer reads
        with urllib.request.urlopen(url, timeout=10.0) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        snapshot = wait_for(
            lambda: re.search(r"twin status --snapshot (\S+)", _read(err)),
            timeout_s=120.0,
            what="the demo's twin and emulator",
        ).group(1)

        def status() -> dict[str, Any] | None:
            try:
                return request_status(context, snapshot, timeout_s=2.0)
            except RequestError:
                return None

        def acked() -> dict[str, Any] | None:
            s = status()
            return s if s is not None and s["dispatch"]["lessons"]["acked"] >= 4 else None

        late = wait_for(acked, timeout_s=60.0, interval_s=0.5, what="the lesson's four acks")
        rows = {r["robot"]: r for r in late["robots"]}
        # the whole demo fits a 2-core machine: no robot ever went stale, all LIVE now
        assert {r: (row["liveness"], row["went_stale"]) for r, row in rows.items()} == {
            r: ("LIVE", 0) for r in rows
        }
        assert sorted(late["dispatch"]["lessons"]["by_robot"]) == CONCERNED
        assert demo.wait(timeout=120.0) == 0, _read(err)[-3000:]
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                demo.kill()
        context.destroy(linger=0)
    text = _read(err)
    born = re.search(r"lesson (L\d+) \(new\): grasp_dropped by T3-01 during pick_and_place", text)
    assert born, text[-3000:]
    assert f"lesson {born.group(1)} sent to the gateways of {', '.join(CONCERNED)}" in text
    with sqlite3.connect(lessons) as db:
        acks = {row[0] for row in db.execute("SELECT robot FROM acks")}
    assert sorted(acks) == CONCERNED
    kinds = [json.loads(m.data)["kind"] for m in open_recording(record).iter_messages(["/events"])]
    assert kinds.count("lesson") == 1 and kinds.count("lesson_ack") == len(CONCERNED)
