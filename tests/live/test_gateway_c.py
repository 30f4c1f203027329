"""The reference C gateway (``examples/gateway_c``) against a real ``twin live`` process.

The test builds ``gateway.c`` with the system C compiler and libzmq (``pkg-config libzmq``;
``scripts/system-deps.sh`` installs both), starts ``twin live`` on free ports and runs the
gateway for one Kestrel K1 of the default hall. The twin must call the robot LIVE, accept
exactly what the gateway says it sent (no refusals, no gaps) and mirror the joint positions
of the last joint state it sent. Skipped only where no C compiler or libzmq is installed.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.fanout import request_snapshot, request_status
from tests.helpers import ROOT, STARTUP_S, Proc, robot_row, wait_for

logger = logging.getLogger(__name__)

SOURCE = ROOT / "examples" / "gateway_c" / "gateway.c"
ROBOT = "K1-01"  # a Kestrel K1 of scenes/training_hall.yaml
SECONDS = 8.0
STANDING_BASE_HEIGHT_M = 0.94875  # robots/kestrel_k1/robot.yaml standing.base_height_m

Ctx = zmq.Context[zmq.Socket[bytes]]


def _libzmq_flags() -> list[str] | None:
    """The compiler and linker flags for libzmq, or None when pkg-config does not know it."""
    if shutil.which("pkg-config") is None:
        return None
    result = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libzmq"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return shlex.split(result.stdout) if result.returncode == 0 else None


@pytest.fixture(scope="module")
def gateway_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gateway.c`` built with the README's command (warnings are errors here)."""
    compiler = shutil.which("cc")
    flags = _libzmq_flags()
    if compiler is None or flags is None:
        pytest.skip("no C compiler (cc) or libzmq (pkg-config libzmq): run scripts/system-deps.sh")
    binary = tmp_path_factory.mktemp("gateway_c") / "gateway"
    command = [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-o", str(binary)]
    command += [str(SOURCE), *flags, "-lm"]
    built = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture
def twin() -> Iterator[Endpoints]:
    any_port = "tcp://127.0.0.1:*"
    proc = Proc("live", "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port)
    try:
        match = proc.wait_line(r"ingest (\S+) fan-out (\S+) snapshot (\S+)", STARTUP_S)
        yield Endpoints(match.group(1), match.group(2), match.group(3))
    finally:
        proc.stop()


@pytest.fixture
def context() -> Iterator[Ctx]:
    ctx: Ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _row(context: Ctx, endpoints: Endpoints) -> dict[str, Any]:
    return robot_row(request_status(context, endpoints.snapshot, timeout_s=5.0), ROBOT)


def _status_cli(endpoints: Endpoints) -> dict[str, Any]:
    """What ``twin status --json`` prints, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "twin", "status", "--json", "--snapshot", endpoints.snapshot,
         "--timeout", "5"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_the_c_gateway_makes_its_robot_live_and_mirrored(
    gateway_binary: Path, twin: Endpoints, context: Ctx
) -> None:
    endpoints = twin
    station = load_scene().station(load_scene().robot(ROBOT).station)
    x, y, _ = station.pose.xyz
    yaw_deg = math.degrees(station.pose.yaw or 0.0)
    before = _row(context, endpoints)
    assert before["accepted"] == 0 and before["liveness"] != "LIVE"
    gateway = subprocess.Popen(
        [str(gateway_binary), endpoints.ingest, ROBOT, f"{SECONDS:g}", f"{x:g}", f"{y:g}",
         f"{yaw_deg:g}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        live = wait_for(
            lambda: (row := _row(context, endpoints))["liveness"] == "LIVE" and row,
            timeout_s=SECONDS / 2,
            interval_s=0.05,
            what=f"{ROBOT} LIVE from the C gateway",
        )
        wait_for(
            lambda: (
                (row := _row(context, endpoints))["liveness"] == "LIVE"
                and row["accepted"] > live["accepted"] + 100
            ),
            timeout_s=SECONDS / 2,
            interval_s=0.05,
            what=f"{ROBOT} still LIVE, its accepted count growing",
        )
        out, err = gateway.communicate(timeout=SECONDS + 30.0)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.communicate(timeout=10.0)
    assert gateway.returncode == 0, err
    report = json.loads(out)
    sent = report["sent"]
    logger.info("C gateway sent %s", sent)
    assert sent["js"] == int(SECONDS * 500) and sent["base"] > 0 and sent["hb"] > 1
    total_sent = sent["js"] + sent["base"] + sent["hb"]

    # every message accepted, none refused or missing; the shutdown heartbeat: GONE at once
    row = wait_for(
        lambda: (r := _row(context, endpoints))["accepted"] == total_sent and r,
        timeout_s=10.0,
        interval_s=0.05,
        what=f"the twin to accept all {total_sent} messages",
    )
    status = _status_cli(endpoints)
    row = robot_row(status, ROBOT)
    assert row["accepted"] == row["received"] == total_sent
    assert row["refused"] == {} and status["totals"]["bad_frames"] == {}
    assert row["gaps"] == 0 and row["stale_seq"] == 0 and row["stale_epoch"] == 0
    assert row["joined_mid_epoch"] == 0 and row["epochs_interleaved"] == 0
    assert row["epoch"] == report["epoch"] and row["epoch_changes"] == 0
    assert row["liveness"] == "GONE"

    # the mirror holds the positions of the last joint state sent, in the canonical skeleton
    snapshot = request_snapshot(context, endpoints.snapshot, timeout_s=5.0)
    view = next(r for r in snapshot.robots if r.robot_id == ROBOT)
    profile = get_model("kestrel_k1").profile
    assert report["wire_order"] == list(profile.joint_names)
    mirrored = dict(zip(view.joint_names, view.positions, strict=True))
    expected = {
        profile.canonical_name(name): value
        for name, value in zip(report["wire_order"], report["last_positions"], strict=True)
    }
    assert set(mirrored) == set(expected)
    for joint, value in expected.items():
        assert mirrored[joint] == pytest.approx(value, abs=1e-6), joint
    assert view.base_position_m == pytest.approx((x, y, STANDING_BASE_HEIGHT_M), abs=1e-9)
