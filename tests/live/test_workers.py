"""Sharded ingest (``twin live --workers N``): worker processes sharing the ingest port, on
real sockets. The gateways' connections spread over the workers; the twin's counters,
states and frame sinks see exactly what a one-process twin would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from benchmarks.sync_phases import build_scene
from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import Kind, pack_header, topic
from tests.helpers import ROOT, STARTUP_S, Proc, ThreadedMirror, robot_row, status_of, wait_for
from tests.live.test_mirror import random_state

Ctx = zmq.Context[zmq.Socket[bytes]]
ANY = "tcp://127.0.0.1:*"
MODEL = "kestrel_k1"
ROBOTS = 16  # one gateway each: all 16 connections on one of 2 workers has odds 2**-15


@pytest.fixture
def sharded(context: Ctx) -> Iterator[ThreadedMirror]:
    twin = ThreadedMirror(
        build_scene(ROBOTS, MODEL), Endpoints(ANY, ANY, ANY), context=context, workers=2
    )
    twin.start_thread()
    yield twin
    twin.stop_thread()
    twin.close()


def _gateways(context: Ctx, twin: ThreadedMirror, count: int) -> list[Gateway]:
    gateways = [Gateway(context, twin.endpoints.ingest) for _ in range(count)]
    for gateway in gateways:
        assert gateway.wait_for_subscriber(10.0), "no worker subscribed"
    return gateways


def _until(context: Ctx, twin: ThreadedMirror, done: Any, what: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (s := status_of(context, twin)) and done(s) and s, timeout_s=20.0, what=what
    )
    return found


def test_connections_spread_over_the_workers_and_every_message_is_counted_once(
    context: Ctx, sharded: ThreadedMirror
) -> None:
    codec = codec_for(get_model(MODEL))
    robots = [r.id for r in sharded.scene.robots]
    gateways = _gateways(context, sharded, len(robots))
    per_robot = 300
    last: dict[str, tuple[np.ndarray, ...]] = {}
    try:
        for seq in range(per_robot):
            for i, (gateway, robot_id) in enumerate(zip(gateways, robots, strict=True)):
                state = random_state(MODEL, 1000 * i + seq)
                gateway.send(Kind.JOINT_STATE, robot_id, codec.encode(*state))
                last[robot_id] = state
        total = per_robot * len(robots)
        status = _until(
            context,
            sharded,
            lambda s: s["totals"]["accepted"] == total,
            f"{total} messages accepted",
        )
    finally:
        for gateway in gateways:
            gateway.close()
    totals = status["totals"]
    workers = totals["ingest_workers"]
    assert workers["workers"] == 2 and workers["alive"] == 2
    shares = workers["accepted_by_worker"]
    assert sum(shares) == total
    assert min(shares) >= per_robot, f"every connection landed on one worker: {shares}"
    assert totals["received"] == total and totals["gaps"] == 0 and totals["bad_frames"] == {}
    for robot_id in robots:
        row = robot_row(status, robot_id)
        assert (row["received"], row["accepted"], row["gaps"]) == (per_robot, per_robot, 0)
    sharded.stop_thread()  # the twin's state of each robot is the newest sent
    for robot_id in robots:
        joints = sharded.robots[robot_id].joints
        assert joints is not None
        expected = codec.to_sample(codec.view(codec.encode(*last[robot_id])))
        np.testing.assert_array_equal(joints.positions, expected.positions)
    sharded.start_thread()


def test_a_bad_frame_through_a_worker_is_counted_by_reason_and_robot(
    context: Ctx, sharded: ThreadedMirror
) -> None:
    codec = codec_for(get_model(MODEL))
    robot_id = sharded.scene.robots[0].id
    (gateway,) = _gateways(context, sharded, 1)
    try:
        good = codec.encode(*random_state(MODEL, 1))
        gateway.socket.send_multipart(
            (topic(Kind.JOINT_STATE, robot_id), b"\x00" * 32, good)  # no magic: bad header
        )
        gateway.socket.send_multipart(
            (topic(Kind.JOINT_STATE, robot_id), pack_header(Kind.JOINT_STATE, 0, 1, 7), b"x")
        )
        gateway.send(Kind.JOINT_STATE, "NOBODY", good)
        status = _until(
            context,
            sharded,
            lambda s: s["totals"]["received"] == 3,
            "three refused frames counted",
        )
    finally:
        gateway.close()
    totals = status["totals"]
    assert totals["accepted"] == 0
    assert sum(totals["bad_frames"].values()) == 3
    assert totals["unknown_sources"] == {"NOBODY": 1} and totals["unattributed"] == 1
    row = robot_row(status, robot_id)
    assert row["received"] == 2 and sum(row["refused"].values()) == 2


def test_a_frame_over_1_mib_is_counted_as_a_dropped_connection_by_its_worker(
    context: Ctx, sharded: ThreadedMirror
) -> None:
    robot_id = sharded.scene.robots[0].id
    (gateway,) = _gateways(context, sharded, 1)
    try:
        header = pack_header(Kind.JOINT_STATE, 0, 1, gateway.epoch)
        gateway.socket.send_multipart([topic(Kind.JOINT_STATE, robot_id), header, bytes(2 << 20)])
        status = _until(
            context,
            sharded,
            lambda s: s["totals"]["ingest_connections"].get("disconnected", 0) >= 1,
            "the dropped connection counted",
        )
    finally:
        gateway.close()
    assert status["totals"]["received"] == 0  # it never reached ingest: ZeroMQ dropped it


def test_a_second_sender_takes_over_and_the_old_epoch_is_never_applied_again(
    context: Ctx, sharded: ThreadedMirror
) -> None:
    """Two gateways for one robot, wherever the kernel put their connections (one worker
    or two): the newer epoch takes over, and the retired one's states are not applied."""
    codec = codec_for(get_model(MODEL))
    robot_id = sharded.scene.robots[0].id
    first, second = _gateways(context, sharded, 2)
    second.restart()  # a new epoch
    old = codec.encode(*random_state(MODEL, 1))
    new = codec.encode(*random_state(MODEL, 2))
    try:
        for _ in range(50):
            first.send(Kind.JOINT_STATE, robot_id, old)
        _until(context, sharded, lambda s: robot_row(s, robot_id)["accepted"] == 50, "50 old")
        second.send(Kind.JOINT_STATE, robot_id, new)
        _until(
            context,
            sharded,
            lambda s: robot_row(s, robot_id)["epoch"] == second.epoch,
            "the second sender's epoch",
        )
        for _ in range(50):
            first.send(Kind.JOINT_STATE, robot_id, old)
        status = _until(
            context,
            sharded,
            lambda s: (
                robot_row(s, robot_id)["received"] == 101
                and robot_row(s, robot_id)["epochs_interleaved"] > 0
            ),
            "the old sender's later frames",
        )
    finally:
        first.close()
        second.close()
    row = robot_row(status, robot_id)
    assert row["epoch"] == second.epoch
    kinds = {(e.kind, e.source_id) for e in list(sharded.events)}
    assert ("takeover", robot_id) in kinds
    sharded.stop_thread()
    joints = sharded.robots[robot_id].joints
    assert joints is not None
    expected = codec.to_sample(codec.view(new))
    np.testing.assert_array_equal(joints.positions, expected.positions)
    sharded.start_thread()


def test_the_workers_events_reach_the_ingest_event_hook(
    context: Ctx, sharded: ThreadedMirror
) -> None:
    """``twin live --record`` records the ingest's events by wrapping its hook: a gateway
    restarted behind a worker raises its epoch event there, as without workers."""
    seen: list[tuple[str, str]] = []
    forward = sharded.ingest.on_event

    def hook(kind: str, source: str, detail: str) -> None:
        seen.append((kind, source))
        forward(kind, source, detail)

    sharded.ingest.on_event = hook
    codec = codec_for(get_model(MODEL))
    robot_id = sharded.scene.robots[0].id
    (gateway,) = _gateways(context, sharded, 1)
    payload = codec.encode(*random_state(MODEL, 3))
    try:
        for _ in range(5):
            gateway.send(Kind.JOINT_STATE, robot_id, payload)
        _until(context, sharded, lambda s: robot_row(s, robot_id)["accepted"] == 5, "five")
        gateway.restart()  # a new epoch on the same connection: the worker's own event
        gateway.send(Kind.JOINT_STATE, robot_id, payload)
        wait_for(lambda: ("epoch", robot_id) in seen, timeout_s=10.0, what="the epoch event")
    finally:
        gateway.close()
    assert any(e.kind == "epoch" and e.source_id == robot_id for e in list(sharded.events))


def test_a_killed_worker_is_said_and_its_gateways_reconnect_to_the_other(
    context: Ctx, sharded: ThreadedMirror, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL one worker: the twin says so once and goes on; the gateways it served
    reconnect (ZeroMQ does, by itself) and the kernel hands them to the living worker."""
    codec = codec_for(get_model(MODEL))
    robots = [r.id for r in sharded.scene.robots]
    gateways = _gateways(context, sharded, len(robots))
    shards = sharded.shards
    assert shards is not None
    payload = codec.encode(*random_state(MODEL, 4))

    def send_all() -> None:
        for gateway, robot_id in zip(gateways, robots, strict=True):
            gateway.send(Kind.JOINT_STATE, robot_id, payload)

    try:
        send_all()
        _until(context, sharded, lambda s: s["totals"]["accepted"] == len(robots), "first")
        victim = shards.processes[0]
        assert victim.process is not None
        victim.process.kill()
        victim.process.wait(timeout=10.0)
        status = _until(
            context,
            sharded,
            lambda s: s["totals"]["ingest_workers"]["alive"] == 1,
            "the dead worker seen",
        )

        def every_robot_heard_again(s: dict[str, Any]) -> bool:
            send_all()
            return all(robot_row(s, r)["accepted"] >= 2 for r in robots)

        status = _until(context, sharded, every_robot_heard_again, "every robot again")
    finally:
        for gateway in gateways:
            gateway.close()
    assert status["totals"]["ingest_workers"]["alive"] == 1
    said = [r.getMessage() for r in caplog.records if "ingest worker 0 exited" in r.getMessage()]
    assert len(said) == 1


def test_frame_sinks_get_every_accepted_message_from_the_workers(context: Ctx) -> None:
    """The recorder's feed: every accepted message's frames, in order per connection."""
    twin = ThreadedMirror(
        build_scene(4, MODEL), Endpoints(ANY, ANY, ANY), context=context, workers=2
    )
    got: list[list[bytes]] = []

    class Probe:
        def frames(self, received_ns: int, frames: list[bytes]) -> None:
            got.append(frames)

        def ship(self, now_mono_ns: int) -> None:
            return None

    twin.frame_sinks.append(Probe())
    twin.start_thread()
    codec = codec_for(get_model(MODEL))
    robots = [r.id for r in twin.scene.robots]
    try:
        gateways = _gateways(context, twin, len(robots))
        for seq in range(100):
            for gateway, robot_id in zip(gateways, robots, strict=True):
                gateway.send(Kind.JOINT_STATE, robot_id, codec.encode(*random_state(MODEL, seq)))
        wait_for(lambda: len(got) == 400, timeout_s=20.0, what="400 messages in the sink")
    finally:
        for gateway in gateways:
            gateway.close()
        twin.stop_thread()
        twin.close()
    for robot_id in robots:
        seqs = [
            int.from_bytes(f[1][8:16], "little")
            for f in got
            if f[0] == topic(Kind.JOINT_STATE, robot_id)
        ]
        assert seqs == list(range(100))


def test_workers_need_a_tcp_endpoint(context: Ctx) -> None:
    from twin.live.shards import ShardError

    with pytest.raises(ShardError, match="tcp"):
        ThreadedMirror(
            load_scene(), Endpoints("ipc:///tmp/nowhere", ANY, ANY), context=context, workers=2
        )


def test_twin_live_with_workers_keeps_the_emulated_hall_live(context: Ctx) -> None:
    twin = Proc("live", "--workers", "2", "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY)
    hall = None
    try:
        line = twin.wait_line(r"ingest (\S+) \(2 ingest workers\) fan-out \S+ snapshot (\S+)", 60)
        ingest, snapshot = line.group(1), line.group(2)
        hall = Proc("emulate", "--ingest", ingest, "--no-noise", "--seconds", "120")
        robots = [r.id for r in load_scene().robots]

        def all_live() -> dict[str, Any] | None:
            from sync.fanout import RequestError, request_status

            try:
                status = request_status(context, snapshot, timeout_s=2.0)
            except RequestError:
                return None
            rows = {r["robot"]: r for r in status["robots"]}
            ok = all(rows[r]["liveness"] == "LIVE" and rows[r]["accepted"] > 200 for r in robots)
            return status if ok else None

        status = wait_for(all_live, timeout_s=60.0, what="every robot LIVE through the workers")
        assert status["totals"]["ingest_workers"]["alive"] == 2
        assert status["totals"]["gaps"] == 0
    finally:
        if hall is not None:
            hall.stop()
        twin.stop()


def test_twin_live_workers_with_an_ipc_ingest_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twin", "live", "--workers", "2", "--ingest",
         "ipc:///tmp/hall-twin-nowhere", "--fanout", ANY, "--snapshot", ANY, "--seconds", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=STARTUP_S * 2, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a tcp:// endpoint" in lines[0], result.stderr
