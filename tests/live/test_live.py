"""The hall emulator and the twin as real processes over real sockets.

Each test starts ``twin live`` (bound to free ports) and ``twin emulate`` as separate
processes, exactly as a user would in two terminals, and asks the twin's status
endpoint what it sees.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.fanout import CloneClient, request_status
from tests.helpers import STARTUP_S, Proc, wait_for

DETECTION_MARGIN_S = 0.050


@pytest.fixture
def twin() -> Iterator[tuple[Proc, Endpoints]]:
    any_port = "tcp://127.0.0.1:*"
    proc = Proc("live", "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port)
    try:
        match = proc.wait_line(r"ingest (\S+) fan-out (\S+) snapshot (\S+)", STARTUP_S)
        yield proc, Endpoints(match.group(1), match.group(2), match.group(3))
    finally:
        proc.stop()


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def rows(context: zmq.Context[zmq.Socket[bytes]], endpoints: Endpoints) -> dict[str, Any]:
    status = request_status(context, endpoints.snapshot, timeout_s=5.0)
    return {row["robot"]: row for row in status["robots"]}


def all_live(context: zmq.Context[zmq.Socket[bytes]], endpoints: Endpoints) -> bool:
    return all(r["liveness"] == "LIVE" for r in rows(context, endpoints).values())


def emulator(endpoints: Endpoints, *args: str) -> Proc:
    return Proc("emulate", "--ingest", endpoints.ingest, "--no-noise", *args)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_dead_or_frozen_emulator_turns_every_robot_stale_in_time(
    twin: tuple[Proc, Endpoints], context: zmq.Context[zmq.Socket[bytes]], how: str
) -> None:
    _, endpoints = twin
    hall = emulator(endpoints, "--seconds", "120")
    try:
        wait_for(lambda: all_live(context, endpoints), timeout_s=STARTUP_S, what="all robots LIVE")
        periods = {r.id: 1.0 / get_model(r.model).profile.rate_hz for r in load_scene().robots}
        hall.popen.send_signal(getattr(signal, how))
        killed = time.monotonic()
        # the twin's own view: how long after a robot's last message it called it STALE
        # (independent of how quickly this test gets to ask)
        noticed: dict[str, float] = {}
        while len(noticed) < len(periods) and time.monotonic() - killed < 5.0:
            for robot_id, row in rows(context, endpoints).items():
                if robot_id not in noticed and row["liveness"] == "STALE":
                    # silence before the twin said STALE = since last message - in STALE for
                    noticed[robot_id] = row["last_seen_s_ago"] - row["liveness_for_s"]
        assert set(noticed) == set(periods)
        for robot_id, silent_s in noticed.items():
            assert silent_s <= 3 * periods[robot_id] + DETECTION_MARGIN_S, (robot_id, silent_s)
        if how == "SIGSTOP":
            hall.popen.send_signal(signal.SIGCONT)
            wait_for(lambda: all_live(context, endpoints), timeout_s=5.0, what="LIVE again")
    finally:
        hall.stop()


def test_injected_faults_are_seen_exactly_as_injected(
    twin: tuple[Proc, Endpoints], context: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    _, endpoints = twin
    stats_path = tmp_path / "stats.json"
    hall = emulator(
        endpoints,
        "--seconds", "6",
        "--stats", str(stats_path),
        "--fault", "T3-01:drop=0.05",
        "--fault", "K1-03:garbage=0.02",
        "--fault", "H2-02:restart@2s",
        "--fault", "T3-04:freeze@3s",
        "--fault", "K1-05:fall@1s",
        "--fault", "T3-02:delay=50ms",
    )  # fmt: skip
    try:
        hall.popen.wait(timeout=STARTUP_S + 6.0)
    finally:
        hall.stop()
    assert hall.popen.returncode == 0, "".join(hall.stderr)
    stats = json.loads(stats_path.read_text(encoding="utf-8"))["robots"]
    seen = rows(context, endpoints)
    status = request_status(context, endpoints.snapshot, timeout_s=5.0)
    # the fallen robot really fell in physics: its gateway reports a fault, its pelvis is low
    snapshot = CloneClient(context, endpoints.fanout, endpoints.snapshot)
    try:
        snapshot.start(timeout_s=5.0)
    finally:
        snapshot.close()
    fallen = snapshot.robots["K1-05"]
    assert fallen.protective_stop and fallen.base_position_m[2] < 0.5
    assert snapshot.robots["K1-03"].base_position_m[2] > 0.8
    # a delayed gateway: one host, one clock, so the stamp-to-applied delay shows it (the
    # offset-corrected latency cannot: one-way data cannot tell a constant delay from skew)
    assert seen["T3-02"]["delay_ms_p50"] >= 50.0 > seen["T3-01"]["delay_ms_p50"]
    # every message dropped by the emulator is a counted gap: no more, no fewer
    assert stats["T3-01"]["dropped"] > 10
    assert seen["T3-01"]["gaps"] == stats["T3-01"]["dropped"]
    # and nothing else went missing anywhere
    assert {r: row["gaps"] for r, row in seen.items() if r != "T3-01"} == dict.fromkeys(
        [r for r in seen if r != "T3-01"], 0
    )
    # malformed frames were refused and counted, and K1-03 kept being mirrored
    refused = sum(status["totals"]["bad_frames"].values())
    assert refused == stats["K1-03"]["garbage"] > 0
    assert seen["K1-03"]["accepted"] == stats["K1-03"]["sent"]
    # its row counts the refused frames that named it too, and they add up
    k1 = seen["K1-03"]
    assert k1["received"] == k1["accepted"] + sum(k1["refused"].values())
    # the restarted gateway is a new epoch, accepted
    assert seen["H2-02"]["epoch_changes"] == 1
    assert seen["H2-02"]["epoch"] == stats["H2-02"]["epoch"]
    # frozen at 3 s of 6: silent since (STALE), while the others said goodbye (GONE)
    assert seen["T3-04"]["last_seen_s_ago"] > 2.5
    assert seen["T3-04"]["received"] < seen["T3-02"]["received"]
    assert seen.pop("T3-04")["liveness"] == "STALE"
    assert {row["liveness"] for row in seen.values()} == {"GONE"}


def test_bad_fault_spec_is_refused_with_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twin", "emulate", "--fault", "NOPE-9:drop=0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "no robot 'NOPE-9' in the scene" in result.stderr
    assert "Traceback" not in result.stderr


def test_incidents_make_robots_fall_and_get_up_again(
    twin: tuple[Proc, Endpoints], context: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    _, endpoints = twin
    stats_path = tmp_path / "stats.json"
    hall = emulator(
        endpoints, "--seconds", "6", "--incidents-every", "2", "--stats", str(stats_path)
    )
    try:
        hall.popen.wait(timeout=STARTUP_S + 6.0)
    finally:
        hall.stop()
    assert hall.popen.returncode == 0, "".join(hall.stderr)
    incidents = json.loads(stats_path.read_text(encoding="utf-8"))["incidents"]
    assert [round(i["t_s"]) for i in incidents] == [2, 4]  # every 2 s, each a different robot
    assert len({i["robot"] for i in incidents}) == 2
    # the robots that fell are down at the end (helped up only after 15 s)
    snapshot = CloneClient(context, endpoints.fanout, endpoints.snapshot)
    try:
        snapshot.start(timeout_s=5.0)
    finally:
        snapshot.close()
    for incident in incidents:
        assert snapshot.robots[incident["robot"]].protective_stop
