"""The twin's side of sharded ingest, digest by digest (no sockets): the runs of accepted
messages that workers report are judged once, across workers, by the one-process rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from robots import get_model
from scenes import load_scene
from sync.codecs import codec_for
from sync.monitor import SocketMonitor
from sync.protocol import CraneState, Heartbeat, Kind
from sync.streams import DelayMeter
from tests.live.test_mirror import random_state
from twin.live.ingest import Ingest
from twin.live.links import bare_robot_links, crane_links
from twin.live.shard_digest import CraneDigest, Digest, RobotDigest, StreamDigest, load
from twin.live.shard_merge import DigestMerger

ROBOT = "K1-01"
E1, E2 = 0x11, 0x22


class Twin:
    """A twin's links, ingest and merger, as the mirror holds them."""

    def __init__(self) -> None:
        scene = load_scene()
        self.robots = bare_robot_links(scene)
        self.cranes = crane_links(scene)
        self.events: list[tuple[str, str, str]] = []
        self.ingest = Ingest(scene.name, self.robots, self.cranes, self._event)
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        socket = self.context.socket(zmq.SUB)
        self.monitor = SocketMonitor(socket)
        self.socket = socket
        self.merger = DigestMerger(self.robots, self.cranes, self.ingest, self.monitor)
        self.applied: list[str] = []
        self.mono_ns = 1_000_000_000

    def _event(self, kind: str, source: str, detail: str) -> None:
        self.events.append((kind, source, detail))

    def apply(self, digest: Digest) -> set[bytes]:
        self.mono_ns += 1_000_000
        touched, refused = self.merger.apply(load(digest.dumps()), self.mono_ns, [])
        for link in touched:
            link.take_joints()
            self.applied.append(link.robot_id)
        return refused

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(linger=0)
        self.context.destroy(linger=0)


@pytest.fixture
def twin() -> Iterator[Twin]:
    made = Twin()
    yield made
    made.close()


def _payload(seed: int) -> bytes:
    return codec_for(get_model("kestrel_k1")).encode(*random_state("kestrel_k1", seed))


def _joints(worker: int, *runs: tuple[int, int, int, int], seed: int = 0) -> Digest:
    """A worker's digest of joint states of ROBOT: these runs, the last message's state."""
    count = sum(r[3] for r in runs)
    epoch, _, last, _ = runs[-1]
    found = RobotDigest(
        robot_id=ROBOT, frames_in=count, rate_msgs=count, bytes_in=count * 364, refused={},
        streams=[StreamDigest(int(Kind.JOINT_STATE), list(runs))], epochs_interleaved=0,
        last_rx_ns=1, last_any_ns=1, shutdown=False, joints=_payload(seed), joints_seq=last,
        joints_epoch=epoch, joints_stamp_ns=last,
    )  # fmt: skip
    return Digest(worker, robots=[found], received=count, accepted=count)


def _row(twin: Twin) -> dict[str, object]:
    return twin.robots[ROBOT].status(2_000_000_000)


def test_a_connection_that_moves_between_workers_and_back_counts_no_losses(twin: Twin) -> None:
    twin.apply(_joints(0, (E1, 100, 109, 10)))  # joined mid-epoch: a baseline
    twin.apply(_joints(1, (E1, 110, 119, 10)))  # reconnected, another worker
    twin.apply(_joints(0, (E1, 120, 129, 10), seed=3))  # and back
    row = _row(twin)
    assert (row["accepted"], row["gaps"], row["joined_mid_epoch"]) == (30, 0, 1)
    assert row["epoch_changes"] == 0 and row["refused"] == {}
    assert twin.events == []
    assert twin.robots[ROBOT].joints_stamp_ns == 129
    assert twin.ingest.accepted == 30


def test_real_losses_are_still_gaps(twin: Twin) -> None:
    twin.apply(_joints(0, (E1, 0, 9, 10)))
    twin.apply(_joints(1, (E1, 15, 24, 8)))  # 10..14 never came; 2 of 15..24 lost too
    row = _row(twin)
    assert (row["accepted"], row["gaps"]) == (18, 7)


def test_a_takeover_on_another_worker_then_the_old_sender_is_refused_and_told_once(
    twin: Twin,
) -> None:
    twin.apply(_joints(0, (E1, 0, 9, 10), seed=1))
    twin.apply(_joints(1, (E2, 0, 0, 1), seed=2))  # a second sender, another connection
    refused = twin.apply(_joints(0, (E1, 10, 14, 5), seed=3))  # the first carries on
    twin.apply(_joints(0, (E1, 15, 16, 2), seed=4))
    row = _row(twin)
    assert row["epoch"] == E2 and row["epoch_changes"] == 1
    assert row["accepted"] == 11 and row["stale_epoch"] == 7
    assert row["refused"] == {"stale_epoch": 7}
    assert twin.robots[ROBOT].epochs_interleaved == 7
    assert twin.ingest.accepted == 11 and twin.ingest.bad_frames == Counter(stale_epoch=7)
    kinds = [e[0] for e in twin.events]
    assert kinds == ["epoch", "takeover"]  # the takeover told once, counted every time
    assert refused == {b"js/" + ROBOT.encode()}  # its frames are not recorded
    # the robot's state is the second sender's, never the retired epoch's
    codec = codec_for(get_model("kestrel_k1"))
    expected = codec.to_sample(codec.view(_payload(2)))
    joints = twin.robots[ROBOT].joints
    assert joints is not None
    np.testing.assert_array_equal(joints.positions, expected.positions)


def test_streams_of_one_gateway_on_different_epochs_are_not_a_takeover(twin: Twin) -> None:
    """The protocol lets a gateway restart one stream alone: joint states on one epoch,
    heartbeats on another, one connection."""
    heartbeat = Heartbeat("running", False, False, "Kestrel", "K1")
    for i in range(5):
        found = _joints(0, (E1, 10 * i, 10 * i + 9, 10), seed=i)
        robot = found.robots[0]
        robot.streams.append(StreamDigest(int(Kind.HEARTBEAT), [(E2, i, i, 1)]))
        robot.heartbeat, robot.heartbeat_seq, robot.heartbeat_epoch = heartbeat, i, E2
        found.received = found.accepted = 11
        twin.apply(found)
    row = _row(twin)
    assert row["accepted"] == 55 and row["stale_epoch"] == 0
    assert twin.robots[ROBOT].epochs_interleaved == 0
    assert not [e for e in twin.events if e[0] == "takeover"]
    assert twin.applied == [ROBOT] * 5  # every joint state applied
    assert twin.robots[ROBOT].heartbeat == heartbeat


def test_an_older_state_from_another_worker_is_not_applied(twin: Twin) -> None:
    twin.apply(_joints(0, (E1, 0, 20, 21), seed=1))
    twin.apply(_joints(1, (E1, 15, 18, 4), seed=2))  # an old connection's backlog
    row = _row(twin)
    assert row["accepted"] == 21 and row["stale_seq"] == 4
    assert row["refused"] == {"stale_seq": 4}
    assert twin.applied == [ROBOT]
    assert twin.robots[ROBOT].joints_stamp_ns == 20


def test_a_crane_follows_sequence_numbers_not_stamps(twin: Twin) -> None:
    crane_id = next(iter(twin.cranes))
    crane = twin.cranes[crane_id]
    low, high = crane.travel_m["bridge"]

    def state(seq: int, stamp_ns: int, bridge_m: float) -> Digest:
        found = CraneDigest(
            crane_id=crane_id, frames_in=1, rate_msgs=1, bytes_in=60, refused={},
            stream=StreamDigest(int(Kind.CRANE), [(E1, seq, seq, 1)]), last_rx_ns=seq + 1,
            state=CraneState(bridge_m, crane.travel_m["trolley"][0], 3.0, False),
            stamp_ns=stamp_ns, seq=seq, epoch=E1,
        )  # fmt: skip
        return Digest(0, cranes=[found], received=1, accepted=1)

    twin.apply(state(0, 2**63 - 1, low))  # a clock far ahead
    twin.apply(state(1, 5, high))  # newer by its sequence number
    assert crane.state is not None and crane.state.bridge_m == high


def test_a_cached_empty_percentile_is_not_kept_once_samples_come() -> None:
    delay = DelayMeter()
    assert delay.percentiles_ms(now_ns=10) is None
    delay.on_applied(0, 2_000_000)
    assert delay.percentiles_ms(now_ns=11) == (2.0, 2.0)


def test_held_digests_merge_with_bounded_frames_and_events_and_count_what_they_drop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A twin that takes no digests: the worker merges them; increments and runs add up,
    and the frames and events it holds are bounded, the oldest dropped and counted."""
    from twin.live import shard_digest

    monkeypatch.setattr(shard_digest, "MAX_HELD_FRAME_BYTES", 1000)
    monkeypatch.setattr(shard_digest, "MAX_HELD_EVENTS", 3)
    held = _joints(0, (E1, 0, 9, 10))
    frame = [b"js/K1-01", bytes(32), bytes(68)]  # 108 bytes a message
    for i in range(20):
        more = _joints(0, (E1, 10 * i + 10, 10 * i + 19, 10), seed=i)
        more.frames = [(i, [frame])]
        more.frames_bytes = 108
        more.events = [("takeover", ROBOT, str(i))]
        held = shard_digest.merge(held, more)
    assert held.received == held.accepted == 210
    runs = held.robots[0].streams[0].runs
    assert sum(r[3] for r in runs) == 210 and held.robots[0].joints_seq == 209
    assert held.frames_bytes <= 1000 and len(held.frames) == 9
    assert held.frames_dropped == 11 and [t for t, _ in held.frames] == list(range(11, 20))
    assert [e[2] for e in held.events] == ["17", "18", "19"] and held.events_dropped == 17
