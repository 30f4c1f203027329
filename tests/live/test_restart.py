"""A twin restarted while the hall's gateways keep sending, on real processes: ``twin emulate``
(which never reopens its socket by itself) keeps running while ``twin live`` is stopped and a
new one binds the same ingest port. The new twin hears each stream mid-epoch: that is a
baseline (``joined_mid_epoch``), not losses, and it must count no gaps at all."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from scenes import load_scene
from sync.fanout import RequestError, request_status
from tests.helpers import STARTUP_S, Proc, wait_for

ANY = "tcp://127.0.0.1:*"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _twin(ingest: str) -> tuple[Proc, str]:
    twin = Proc("live", "--ingest", ingest, "--fanout", ANY, "--snapshot", ANY)
    snapshot = twin.wait_line(r"ingest \S+ fan-out \S+ snapshot (\S+)", STARTUP_S).group(1)
    return twin, snapshot


def _status(context: zmq.Context[zmq.Socket[bytes]], snapshot: str) -> dict[str, Any] | None:
    try:
        return request_status(context, snapshot, timeout_s=2.0)
    except RequestError:
        return None


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def test_a_twin_restarted_under_running_gateways_counts_no_losses(
    context: zmq.Context[zmq.Socket[bytes]], procs: list[Proc]
) -> None:
    robots = [robot.id for robot in load_scene().robots]
    ingest = f"tcp://127.0.0.1:{_free_port()}"
    first, snapshot = _twin(ingest)
    procs.append(first)
    procs.append(Proc("emulate", "--ingest", ingest, "--no-noise", "--seconds", "300"))

    def all_live(snapshot: str, accepted_over: int) -> dict[str, Any] | None:
        status = _status(context, snapshot)
        if status is None:
            return None
        rows = {row["robot"]: row for row in status["robots"]}
        ok = all(
            rows[r]["liveness"] == "LIVE" and rows[r]["accepted"] > accepted_over for r in robots
        )
        return status if ok else None

    wait_for(lambda: all_live(snapshot, 500), timeout_s=60.0, what="every robot LIVE")
    first.stop()  # SIGTERM, then waits: the gateways send on into the void
    second, snapshot = _twin(ingest)  # the same ingest port
    procs.append(second)
    # some seconds of the hall after the restart: thousands of messages a robot
    wait_for(lambda: all_live(snapshot, 2000), timeout_s=60.0, what="every robot LIVE again")
    status = _status(context, snapshot)
    assert status is not None
    rows = {row["robot"]: row for row in status["robots"]}
    for robot_id in robots:
        row = rows[robot_id]
        assert row["gaps"] == 0, (robot_id, row)
        # each stream is heard first mid-epoch, once: a baseline, not losses
        assert row["joined_mid_epoch"] >= 1 and row["epoch_changes"] == 0, (robot_id, row)
    assert status["totals"]["gaps"] == 0
