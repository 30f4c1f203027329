"""Honest counters: no phantom losses, every refusal counted once, rows that add up."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import pytest
import zmq

from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import HEADER, MAGIC, CraneState, Kind, encode_payload, pack_header, topic
from tests.helpers import ThreadedMirror, robot_row, status_of, wait_for
from tests.live.test_mirror import connected_gateway, random_state
from twin.live.ingest import LOG_LINES_PER_S
from twin.live.mirror import Mirror

Ctx = zmq.Context[zmq.Socket[bytes]]
ANY = "tcp://127.0.0.1:*"


def _accepted(context: Ctx, twin: Mirror, robot_id: str, count: int) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (
            (s := status_of(context, twin)) and robot_row(s, robot_id)["accepted"] >= count and s
        ),
        timeout_s=10.0,
        what=f"{count} messages from {robot_id}",
    )
    return status


def test_a_twin_restarted_mid_stream_counts_no_losses(context: Ctx) -> None:
    codec = codec_for(get_model("kestrel_k1"))
    payload = codec.encode(*random_state("kestrel_k1", 1))
    first = ThreadedMirror(load_scene(), Endpoints(ANY, ANY, ANY), context=context)
    port_endpoint = first.endpoints.ingest  # the second twin binds the same port
    first.start_thread()
    gateway = Gateway(context, port_endpoint)
    second: ThreadedMirror | None = None
    try:
        assert gateway.wait_for_subscriber(10.0)
        for _ in range(500):
            gateway.send(Kind.JOINT_STATE, "K1-03", payload)
        _accepted(context, first, "K1-03", 500)
        first.stop_thread()
        first.close()
        # the gateway notices and reopens its socket (same epoch, sequence numbers carry on):
        # reopening before the new twin is up, so that no message queued on the old socket can
        # reach the new twin half-delivered (that would be a real loss, rightly counted)
        gateway.reconnect()
        for _ in range(300):
            gateway.send(Kind.JOINT_STATE, "K1-03", payload)  # nobody hears these
        second = ThreadedMirror(load_scene(), Endpoints(port_endpoint, ANY, ANY), context=context)
        second.start_thread()
        assert gateway.wait_for_subscriber(10.0), "the gateway never reconnected"
        for _ in range(200):
            gateway.send(Kind.JOINT_STATE, "K1-03", payload)
        status = _accepted(context, second, "K1-03", 200)
    finally:
        gateway.close()
        if second is not None:
            second.stop_thread()
            second.close()
    row = robot_row(status, "K1-03")
    # what was sent before the twin was there is not a loss it could have seen
    assert row["gaps"] == 0 and status["totals"]["gaps"] == 0
    assert row["joined_mid_epoch"] == 1 and row["accepted"] == 200
    assert row["epoch"] == gateway.epoch and row["epoch_changes"] == 0


def test_a_frame_over_1_mib_is_counted_and_the_twin_mirrors_on(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    codec = codec_for(get_model("tessel_t3"))
    payload = codec.encode(*random_state("tessel_t3", 2))
    before = status_of(context, mirror)["totals"]["ingest_connections"].get("disconnected", 0)
    with connected_gateway(context, mirror) as gateway:
        gateway.send(Kind.JOINT_STATE, "T3-02", payload)
        _accepted(context, mirror, "T3-02", 1)
        header = pack_header(Kind.JOINT_STATE, 1, 1, gateway.epoch)
        gateway.socket.send_multipart([b"js/T3-02", header, b"\x00" * (2 << 20)])
        # ZeroMQ drops the connection at ZMQ_MAXMSGSIZE; the twin counts the dropped connection
        wait_for(
            lambda: (
                status_of(context, mirror)["totals"]["ingest_connections"].get("disconnected", 0)
                > before
            ),
            timeout_s=10.0,
            what="the dropped connection to be counted",
        )
        # ZeroMQ does not reconnect after a protocol error: the gateway reconnects itself,
        # and its next messages are mirrored
        gateway.reconnect()
        assert gateway.wait_for_subscriber(10.0)
        gateway.send(Kind.JOINT_STATE, "T3-02", payload)
        status = _accepted(context, mirror, "T3-02", 2)
    assert robot_row(status, "T3-02")["refused"] == {}  # it never reached ingest itself


def test_every_refusal_is_counted_once_and_the_rows_add_up_to_the_totals(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    codec = codec_for(get_model("kestrel_k1"))
    good = codec.encode(*random_state("kestrel_k1", 3))
    crane = encode_payload(CraneState(bridge_m=5.0, trolley_m=3.0, hoist_m=4.0, moving=False))
    crane_id = mirror.scene.cranes[0].id
    with connected_gateway(context, mirror) as gateway:
        raw = gateway.socket
        epoch = gateway.epoch
        for _ in range(10):
            gateway.send(Kind.JOINT_STATE, "K1-05", good)
        gateway.send(Kind.CRANE, crane_id, crane)
        reserved = HEADER.pack(MAGIC, 1, int(Kind.JOINT_STATE), 7, 10, 1, epoch)
        refused = [
            ([b"js/K1-05", reserved, good], "K1-05", "bad_header"),  # reserved field not 0
            ([b"js/K1-05", pack_header(Kind.JOINT_STATE, 3, 1, epoch), good], "K1-05", "stale_seq"),
            ([b"js/K1-05", pack_header(Kind.JOINT_STATE, 11, 1, epoch), b"\0" * 70_000],
             "K1-05", "oversized"),
            ([topic(Kind.CRANE, crane_id), pack_header(Kind.CRANE, 0, 1, epoch), b"\xc1"],
             crane_id, "bad_payload"),
            ([b"js/" + b"K" * 200, pack_header(Kind.JOINT_STATE, 0, 1, epoch), good],
             None, "topic_too_long"),
            ([b"js/NOPE-9", pack_header(Kind.JOINT_STATE, 0, 1, epoch), good],
             None, "unknown_source"),
            ([b"js"], None, "bad_framing"),
        ]  # fmt: skip
        for frames, _, _ in refused:
            raw.send_multipart(frames)
        # a restart, then the old epoch's straggler: stale_epoch, not stale_seq
        gateway.restart()
        gateway.send(Kind.JOINT_STATE, "K1-05", good)
        raw.send_multipart([b"js/K1-05", pack_header(Kind.JOINT_STATE, 12, 1, epoch), good])
        status = wait_for(
            lambda: (
                (s := status_of(context, mirror))
                and sum(s["totals"]["bad_frames"].values()) >= len(refused) + 1
                and s
            ),
            timeout_s=10.0,
            what="every refusal counted",
        )
    totals = status["totals"]
    expected = Counter(reason for _, _, reason in refused) + Counter(stale_epoch=1)
    assert totals["bad_frames"] == dict(expected)
    row = robot_row(status, "K1-05")
    assert row["refused"] == {"bad_header": 1, "stale_seq": 1, "oversized": 1, "stale_epoch": 1}
    assert row["stale_seq"] == 1 and row["stale_epoch"] == 1
    assert row["accepted"] == 11 and row["received"] == 15  # every frame that named it
    cranes = {c["crane"]: c for c in status["cranes"]}
    assert cranes[crane_id]["refused"] == {"bad_payload": 1} and cranes[crane_id]["received"] == 2
    # the rows add up to the totals, frame by frame and reason by reason
    rows = status["robots"] + status["cranes"]
    assert sum(r["received"] for r in rows) + totals["unattributed"] == totals["received"]
    by_reason: Counter[str] = Counter()
    for r in rows:
        by_reason.update(r["refused"])
    assert totals["unattributed"] == 3
    assert dict(by_reason + Counter(topic_too_long=1, unknown_source=1, bad_framing=1)) == dict(
        expected
    )
    # a robot never seen has been GONE since the twin started, not since the host booted
    never = robot_row(status, "H2-01")
    assert never["liveness"] == "GONE" and never["liveness_for_s"] <= status["uptime_s"] + 1.0


def test_warnings_are_rate_limited_in_all_not_only_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    twin = Mirror(load_scene(), Endpoints(ANY, ANY, ANY))
    try:
        header = pack_header(Kind.JOINT_STATE, 0, 1, 5)
        kinds = [
            [b"x"],
            [b"js/K1-01", b"short", b""],
            [b"zz/K1-01", header, b""],
            [b"js/NOPE-1", header, b""],
            [b"js/" + b"K" * 200, header, b""],
            [b"js/K1-01", b"HT\x07" + header[3:], b""],
            [b"js/K1-01", header, b"\0" * 70_000],
            [b"js/K1-01", header, b"\0" * 5],
        ]
        with caplog.at_level(logging.WARNING, logger="twin.live.ingest"):
            for i in range(400):  # well within one second
                twin.handle(kinds[i % len(kinds)], 1, 1)
        lines = [r for r in caplog.records if r.name == "twin.live.ingest"]
        assert len(kinds) > LOG_LINES_PER_S
        assert len(lines) == LOG_LINES_PER_S
        assert sum(twin.ingest.bad_frames.values()) == 400  # every one still counted
        assert twin.ingest.log_suppressed == len(kinds) - LOG_LINES_PER_S
    finally:
        twin.close()


def test_liveness_of_a_joint_state_stream_is_unchanged_by_refused_frames() -> None:
    """A refused frame never advances a stream (and so never keeps a robot LIVE)."""
    twin = Mirror(load_scene(), Endpoints(ANY, ANY, ANY))
    try:
        n = len(get_model("kestrel_k1").profile.joint_names)
        good = codec_for(get_model("kestrel_k1")).encode(np.zeros(n), np.zeros(n), np.zeros(n))
        twin.handle([b"js/K1-01", pack_header(Kind.JOINT_STATE, 0, 1, 5), good], 1, 1_000)
        twin.handle([b"js/K1-01", pack_header(Kind.JOINT_STATE, 1, 1, 5), b"bad"], 1, 2_000)
        link = twin.robots["K1-01"]
        assert link.liveness.last_rx_ns == 1_000 and link.tracker(Kind.JOINT_STATE).last_seq == 0
    finally:
        twin.close()
