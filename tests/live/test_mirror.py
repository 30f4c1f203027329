"""The live mirror on real sockets: decoding, gaps, epochs, bad frames, late joiners."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zmq

from robots import get_model
from sync.codecs import codec_for
from sync.fanout import CloneClient
from sync.gateway import Gateway
from sync.protocol import Kind, pack_header
from tests.helpers import ThreadedMirror, robot_row, status_of, wait_for
from twin.live.mirror import Mirror

Ctx = zmq.Context[zmq.Socket[bytes]]


def random_state(model_name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = get_model(model_name)
    rng = np.random.default_rng(seed)
    names = model.profile.joint_names
    lower = np.array([model.joint(j).lower for j in names])
    upper = np.array([model.joint(j).upper for j in names])
    n = len(names)
    return lower + rng.random(n) * (upper - lower), rng.normal(0, 0.5, n), rng.normal(0, 10, n)


def connected_gateway(context: Ctx, twin: Mirror) -> Gateway:
    gateway = Gateway(context, twin.endpoints.ingest)
    assert gateway.wait_for_subscriber(5.0), "the twin never subscribed"
    return gateway


def wait_received(context: Ctx, twin: Mirror, robot_id: str, count: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = status_of(context, twin)
        return status if robot_row(status, robot_id)["received"] >= count else None

    status = wait_for(done, timeout_s=5.0, what=f"{count} messages from {robot_id}")
    ticks = status["ticks"]
    wait_for(lambda: status_of(context, twin)["ticks"] >= ticks + 2, timeout_s=2.0, what="ticks")
    return status_of(context, twin)


def test_each_manufacturers_format_lands_in_the_world_in_canonical_si(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    sent: dict[str, tuple[str, np.ndarray]] = {}
    with connected_gateway(context, mirror) as gateway:
        for robot_id, model in (
            ("K1-01", "kestrel_k1"),
            ("H2-01", "orca_h2"),
            ("T3-01", "tessel_t3"),
        ):
            state = random_state(model, seed=len(sent))
            gateway.send(Kind.JOINT_STATE, robot_id, codec_for(get_model(model)).encode(*state))
            sent[robot_id] = (model, state[0])
        for robot_id in sent:
            wait_received(context, mirror, robot_id, 1)
    mirror.stop_thread()
    for robot_id, (model_name, positions) in sent.items():
        profile = get_model(model_name).profile
        in_world = mirror.world.joint_positions(robot_id)
        for vendor, value in zip(profile.joint_names, positions, strict=True):
            tolerance = 1e-6 if profile.encoding == "packed_f32" else 1e-9
            assert in_world[profile.canonical_name(vendor)] == pytest.approx(value, abs=tolerance)


def test_loss_is_counted_exactly(context: Ctx, mirror: ThreadedMirror) -> None:
    codec = codec_for(get_model("tessel_t3"))
    state = random_state("tessel_t3", 1)
    dropped = 0
    with connected_gateway(context, mirror) as gateway:
        for i in range(200):
            if i % 17 == 3:
                gateway.next_seq(Kind.JOINT_STATE, "T3-01")  # this one is "lost"
                dropped += 1
                continue
            gateway.send(Kind.JOINT_STATE, "T3-01", codec.encode(*state))
        status = wait_received(context, mirror, "T3-01", 200 - dropped)
    row = robot_row(status, "T3-01")
    assert row["gaps"] == dropped == 12
    assert status["totals"]["gaps"] == dropped


def test_restart_is_a_new_epoch_not_old_data(context: Ctx, mirror: ThreadedMirror) -> None:
    codec = codec_for(get_model("kestrel_k1"))
    before, after = random_state("kestrel_k1", 2), random_state("kestrel_k1", 3)
    with connected_gateway(context, mirror) as gateway:
        for _ in range(10):
            gateway.send(Kind.JOINT_STATE, "K1-03", codec.encode(*before))
        wait_received(context, mirror, "K1-03", 10)
        first_epoch = gateway.epoch
        gateway.restart()  # sequence numbers start at 0 again
        for _ in range(5):
            gateway.send(Kind.JOINT_STATE, "K1-03", codec.encode(*after))
        status = wait_received(context, mirror, "K1-03", 15)
    row = robot_row(status, "K1-03")
    assert row["epoch"] == gateway.epoch != first_epoch
    assert row["epoch_changes"] == 1 and row["stale_seq"] == 0 and row["gaps"] == 0
    assert any(e.kind == "epoch" and e.source_id == "K1-03" for e in mirror.events)
    mirror.stop_thread()
    knee = get_model("kestrel_k1").profile.joint_names.index("l_knee_joint")
    assert mirror.world.joint_positions("K1-03")["left_knee"] == pytest.approx(
        after[0][knee], abs=1e-6
    )


def test_bad_frames_are_counted_and_good_robots_keep_mirroring(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    codec = codec_for(get_model("kestrel_k1"))
    state = random_state("kestrel_k1", 4)
    good_payload = codec.encode(*state)
    with connected_gateway(context, mirror) as gateway:
        raw = gateway.socket
        header = pack_header(Kind.JOINT_STATE, 0, 1, gateway.epoch)
        bad = [
            [b"\x8f\x00garbage"],  # one frame
            [b"js/K1-01", header[:12], good_payload],  # truncated header
            [b"js/K1-01", b"HT\x07" + header[3:], good_payload],  # wrong version
            [b"js/K1-01", header, good_payload[:-3]],  # truncated payload
            [b"js/K1-01", header, b"\x00" * (64 * 1024 + 8)],  # oversized
            [b"js/NOPE-1", header, good_payload],  # unknown robot
            [b"zz/K1-01", header, good_payload],  # unknown topic kind
        ]
        for i in range(30):
            raw.send_multipart(bad[i % len(bad)])
            gateway.send(Kind.JOINT_STATE, "K1-01", good_payload)
        status = wait_received(context, mirror, "K1-01", 30)
        wait_for(
            lambda: sum(status_of(context, mirror)["totals"]["bad_frames"].values()) >= 30,
            timeout_s=5.0,
            what="all bad frames counted",
        )
        refused = status_of(context, mirror)["totals"]["bad_frames"]
    assert refused == {
        "bad_framing": 5,  # 30 frames cycling through 7 kinds: the first two kinds 5 times
        "bad_header": 5,
        "wrong_version": 4,
        "bad_payload": 4,
        "oversized": 4,
        "unknown_source": 4,
        "bad_topic": 4,
    }
    row = robot_row(status, "K1-01")
    assert row["accepted"] == 30 and row["gaps"] == 0
    assert row["liveness"] in ("LIVE", "LATE", "STALE")
    # K1-01's own row counts the refused frames its topic named, by reason: the rows add up
    mine = {"bad_header": 5, "wrong_version": 4, "bad_payload": 4, "oversized": 4}
    assert row["refused"] == mine and row["received"] == 30 + sum(mine.values())


def test_late_joiner_gets_the_full_state_then_only_newer_updates(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    codec = codec_for(get_model("orca_h2"))
    first, second = random_state("orca_h2", 5), random_state("orca_h2", 6)
    with connected_gateway(context, mirror) as gateway:
        gateway.send(Kind.JOINT_STATE, "H2-02", codec.encode(*first))
        wait_received(context, mirror, "H2-02", 1)
        client = CloneClient(context, mirror.endpoints.fanout, mirror.endpoints.snapshot)
        try:
            client.start(timeout_s=1.0)  # within 1 s, or RequestError
            view = client.robots["H2-02"]
            assert set(client.robots) == {r.id for r in mirror.scene.robots}
            assert view.positions == pytest.approx(list(first[0]), abs=1e-9)
            knee = codec.names.index("L_KNEE")  # Orca's wire order, canonical name in the view
            assert view.joint_names[knee] == "left_knee"
            assert view.positions[knee] == pytest.approx(first[0][knee], abs=1e-9)
            snapshot_seq = client.seq
            gateway.send(Kind.JOINT_STATE, "H2-02", codec.encode(*second))
            assert client.wait_until(
                lambda c: c.robots["H2-02"].positions == pytest.approx(list(second[0]), abs=1e-9),
                timeout_s=3.0,
            )
            assert client.seq > snapshot_seq and client.resyncs == 0
        finally:
            client.close()


def test_a_stalled_viewer_does_not_slow_ingest(context: Ctx, mirror: ThreadedMirror) -> None:
    stalled = context.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.connect(mirror.endpoints.fanout)  # connected, never reads
    codec = codec_for(get_model("tessel_t3"))
    n = 5000
    try:
        with connected_gateway(context, mirror) as gateway:
            for i in range(n):
                state = random_state("tessel_t3", i % 4)
                gateway.send(Kind.JOINT_STATE, "T3-02", codec.encode(*state))
            status = wait_received(context, mirror, "T3-02", n)
    finally:
        stalled.close(linger=0)
    row = robot_row(status, "T3-02")
    assert row["received"] == n and row["gaps"] == 0


def test_every_accepted_message_reaches_the_sinks(context: Ctx, mirror: ThreadedMirror) -> None:
    kept: list[object] = []
    mirror.sinks.append(kept.append)  # the recorder plugs in here
    codec = codec_for(get_model("kestrel_k1"))
    with connected_gateway(context, mirror) as gateway:
        for i in range(50):
            gateway.send(Kind.JOINT_STATE, "K1-05", codec.encode(*random_state("kestrel_k1", i)))
        gateway.socket.send_multipart([b"js/K1-05", b"short", b""])  # refused: not kept
        status = wait_received(context, mirror, "K1-05", 50)
    mirror.stop_thread()
    assert len(kept) == status["totals"]["accepted"] == 50
