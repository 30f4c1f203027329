"""Hostile and lying input through the twin's ingest path: refused, counted, never fatal."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np
import pytest

from scenes import load_scene
from sync.addresses import Endpoints
from sync.codecs import codec_for
from sync.protocol import (
    BaseState,
    CraneState,
    Heartbeat,
    Kind,
    encode_payload,
    pack_header,
    topic,
)
from sync.streams import Liveness
from twin.live.mirror import Mirror

MS = 1_000_000
ANY = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def twin() -> Iterator[Mirror]:
    mirror = Mirror(load_scene(), Endpoints(ANY, ANY, ANY))
    yield mirror
    mirror.close()


def frames(kind: Kind, source: str, seq: int, payload: bytes, epoch: int = 7) -> list[bytes]:
    return [topic(kind, source), pack_header(kind, seq, 1, epoch), payload]


def beat() -> bytes:
    return encode_payload(
        Heartbeat(mode="running", estop=False, protective_stop=False, manufacturer="m", model="m")
    )


def test_deeply_nested_payloads_are_refused_not_fatal(twin: Mirror) -> None:
    before = twin.ingest.bad_frames["bad_payload"]
    fields = msgspec.structs.asdict(msgspec.msgpack.decode(beat(), type=Heartbeat))
    assert len(fields) < 15  # a msgpack fixmap, whose first byte is 0x80 + its length
    bomb = b"\x91" * 5000 + b"\xc0"  # [[[[...nil...]]]], 5000 deep
    # a valid heartbeat plus one unknown key whose value is the bomb
    fixmap = bytes([0x80 + len(fields) + 1])
    payload = fixmap + msgspec.msgpack.encode(fields)[1:] + msgspec.msgpack.encode("x") + bomb
    twin.handle(frames(Kind.HEARTBEAT, "T3-01", 0, payload), 1, 1)
    twin.handle(frames(Kind.JOINT_STATE, "T3-02", 0, b"\x81\xa8LeftKnee" + bomb), 1, 1)
    assert twin.ingest.bad_frames["bad_payload"] == before + 2
    assert twin.ingest.bad_frames["internal_error"] == 0


def test_a_crane_outside_its_travel_is_refused_before_it_counts(twin: Mirror) -> None:
    crane = twin.cranes["C1"]
    received = crane.stream.received
    lying = encode_payload(CraneState(bridge_m=-5.0, trolley_m=10.0, hoist_m=5.0, moving=True))
    twin.handle(frames(Kind.CRANE, "C1", 0, lying), 1, 1)
    assert twin.ingest.bad_frames["out_of_travel"] == 1
    assert crane.stream.received == received and crane.state is None
    honest = encode_payload(CraneState(bridge_m=10.0, trolley_m=10.0, hoist_m=5.0, moving=True))
    twin.handle(frames(Kind.CRANE, "C1", 0, honest), 1, 1)  # seq 0 was not used up
    assert crane.stream.received == received + 1 and crane.stream.gaps == 0


def test_a_base_pose_must_be_a_unit_quaternion_in_the_hall(twin: Mirror) -> None:
    def base(position: tuple[float, float, float], quat: tuple[float, ...]) -> bytes:
        return encode_payload(BaseState(position, quat, (0, 0, 0), (0, 0, 0), (0, 0, 9.81)))  # type: ignore[arg-type]

    before = twin.ingest.bad_frames["bad_payload"]
    twin.handle(frames(Kind.BASE, "K1-03", 0, base((8.0, 16.0, 0.9), (0, 0, 0, 0))), 1, 1)
    twin.handle(frames(Kind.BASE, "K1-03", 0, base((1e308, 16.0, 0.9), (0, 0, 0, 1))), 1, 1)
    assert twin.ingest.bad_frames["bad_payload"] == before + 2
    assert twin.robots["K1-03"].base is None
    twin.handle(frames(Kind.BASE, "K1-03", 0, base((8.0, 16.0, 0.9), (0, 0, 0, 1))), 1, 1)
    assert twin.robots["K1-03"].base is not None


def test_old_epochs_and_absurd_sequence_jumps(twin: Mirror) -> None:
    codec = codec_for(twin.robots["H2-01"].model)
    n = len(codec.names)
    payload = codec.encode(np.zeros(n), np.zeros(n), np.zeros(n))
    for seq in range(3):
        twin.handle(frames(Kind.JOINT_STATE, "H2-01", 5000 + seq, payload, epoch=1), 1, 1)
    tracker = twin.robots["H2-01"].tracker(Kind.JOINT_STATE)
    gaps = tracker.gaps
    twin.handle(frames(Kind.JOINT_STATE, "H2-01", 0, payload, epoch=2), 1, 1)  # restart
    # the old connection's backlog arrives late: dropped, not another "restart"
    twin.handle(frames(Kind.JOINT_STATE, "H2-01", 5003, payload, epoch=1), 1, 1)
    assert tracker.epoch == 2 and tracker.epoch_changes == 1 and tracker.gaps == gaps
    assert twin.ingest.bad_frames["stale_epoch"] == 1
    # a lying sequence number is a resync, not 2**64 lost messages, and does not freeze it
    twin.handle(frames(Kind.JOINT_STATE, "H2-01", 2**63, payload, epoch=2), 1, 1)
    assert tracker.gaps == gaps and tracker.resyncs == 1


def test_heartbeats_alone_do_not_make_a_robot_live(twin: Mirror) -> None:
    link = twin.robots["T3-04"]
    for i in range(5):
        twin.handle(frames(Kind.HEARTBEAT, "T3-04", i, beat()), 1, 1000 * MS + i * 10 * MS)
    assert link.liveness.state(1050 * MS) is Liveness.STALE  # heard of, but no joint states
    assert link.liveness.state(12_000 * MS) is Liveness.GONE
