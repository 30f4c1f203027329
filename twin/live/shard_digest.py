"""What an ingest worker tells the twin: a digest of the frames it took since the last one.

With ``twin live --workers N`` (:mod:`twin.live.shards`) each worker process runs the
twin's own :class:`~twin.live.ingest.Ingest` over its share of the gateways' connections
(framing, topics, headers, payloads, keys, and sequences as that worker sees them) and,
instead of every message, sends the twin a **digest** every few milliseconds:

- per stream of each robot or crane, the **runs** of messages it accepted: ``(epoch, first
  seq, last seq, count)``, a new run at each epoch change or resync. The twin replays the
  runs through its own :class:`~sync.streams.StreamTracker` of the stream
  (:mod:`twin.live.shard_merge`), so sequences, gaps, epochs, takeovers and joins are judged
  once, across all workers, exactly by the one-process rules: a gateway whose connection
  moves from one worker to another and back counts no phantom losses, and a second sender on
  another worker's connection is a takeover like any other;
- what the worker refused itself (counted by reason, per robot and in all), the rates, the
  newest states (joint state, heartbeat, base pose, crane state) with the seq and epoch they
  came with, the last arrival times, and its ingest's ``takeover`` events (the twin
  re-derives ``epoch`` and ``resync`` from the runs);
- when the twin records, the accepted frames as they came.

This module holds the worker's side (:class:`Digester`) and the records it sends
(:class:`Digest` and its parts, MessagePack through msgspec).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from sync.protocol import MAX_SEQ_JUMP, BaseState, CraneState, Heartbeat, Kind
from twin.live.ingest import Ingest
from twin.live.links import CraneLink, RobotLink

Run = tuple[int, int, int, int]
"""(epoch, first seq, last seq, messages): accepted messages of one stream, in order."""

MAX_HELD_FRAME_BYTES: Final = 64 << 20
"""Frames a worker holds for the recorder while the twin takes no digests; the oldest
beyond are dropped (counted: ``frames_dropped``)."""
MAX_HELD_EVENTS: Final = 1000
MAX_HELD_RUNS: Final = 64
"""Runs of one stream held while the twin takes no digests (a flood of epoch changes beyond
it is merged into the last run: its figures then count as one run's)."""


class StreamDigest(msgspec.Struct, array_like=True):
    """One stream's part of a digest."""

    kind: int
    runs: list[Run]
    stale: int = 0  # refused by the worker as not newer (its own ``stale_seq``)
    stale_epoch: int = 0  # refused by the worker as of a retired epoch


class RobotDigest(msgspec.Struct, array_like=True):
    """One robot's changes in a digest (counters are increments since the last digest)."""

    robot_id: str
    frames_in: int
    rate_msgs: int  # accepted messages (the rate meter's count) and their bytes
    bytes_in: int
    refused: dict[str, int]
    streams: list[StreamDigest]
    epochs_interleaved: int
    last_rx_ns: int  # monotonic (one clock for every process of the machine)
    last_any_ns: int
    shutdown: bool
    # the newest joint state, if a new one came: its packed payload, or (``joints_dtype``
    # set) its checked wire values, shape (3, joints), as bytes; with its seq and epoch
    joints: bytes | None = None
    joints_dtype: str = ""
    joints_seq: int = -1
    joints_epoch: int = 0
    joints_stamp_ns: int = 0
    joints_received_ns: int = 0
    heartbeat: Heartbeat | None = None
    heartbeat_seq: int = -1
    heartbeat_epoch: int = 0
    base: BaseState | None = None
    base_seq: int = -1
    base_epoch: int = 0


class CraneDigest(msgspec.Struct, array_like=True):
    """One crane's changes in a digest."""

    crane_id: str
    frames_in: int
    rate_msgs: int
    bytes_in: int
    refused: dict[str, int]
    stream: StreamDigest
    last_rx_ns: int
    state: CraneState | None = None
    stamp_ns: int = 0
    seq: int = -1
    epoch: int = 0


class Digest(msgspec.Struct, array_like=True):
    """Everything one worker took since its last digest."""

    worker: int
    robots: list[RobotDigest] = msgspec.field(default_factory=list)
    cranes: list[CraneDigest] = msgspec.field(default_factory=list)
    received: int = 0
    accepted: int = 0
    unattributed: int = 0
    bytes_in: int = 0
    bad_frames: dict[str, int] = msgspec.field(default_factory=dict)
    unknown_sources: dict[str, int] = msgspec.field(default_factory=dict)
    log_suppressed: int = 0
    connections: dict[str, int] = msgspec.field(default_factory=dict)  # the socket monitor's
    events: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
    events_dropped: int = 0
    # accepted frames as they came, when the twin records: (receive time, messages)
    frames: list[tuple[int, list[list[bytes]]]] = msgspec.field(default_factory=list)
    frames_bytes: int = 0  # what ``frames`` holds
    frames_dropped: int = 0  # for the recorder, while the twin did not take digests

    def dumps(self) -> bytes:
        """Encoded for the channel (MessagePack, positional)."""
        return _ENCODE(self)


_ENCODE: Final = msgspec.msgpack.Encoder().encode
_DECODE: Final = msgspec.msgpack.Decoder(Digest).decode


def _counter_minus(now: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


@dataclass
class _Mark:
    """What the last digest told of a robot or crane (cumulative), to send increments."""

    frames_in: int = 0
    rate_msgs: int = 0
    bytes_in: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    refused_total: int = 0
    stale: dict[int, tuple[int, int]] = field(default_factory=dict)  # kind -> (stale, epoch)
    epochs_interleaved: int = 0
    heartbeat: Heartbeat | None = None


class Digester:
    """The worker's side: its links and ingest, told as increments since the last digest.

    The worker calls :meth:`accepted` for each message its ingest accepted, :meth:`event`
    from its ingest's event hook, :meth:`frames` for each accepted message when the twin
    records, then :meth:`digest` every few milliseconds."""

    def __init__(
        self,
        worker: int,
        ingest: Ingest,
        robots: dict[str, RobotLink],
        cranes: dict[str, CraneLink],
    ) -> None:
        self.worker = worker
        self.ingest = ingest
        self.robots = robots
        self.cranes = cranes
        self._marks = {source: _Mark() for source in (*robots, *cranes)}
        self._totals = (0, 0, 0, 0, 0)
        self._bad: Counter[str] = Counter()
        self._unknown: Counter[str] = Counter()
        self._connections: Counter[str] = Counter()
        self._connections_total = 0
        self._runs: dict[tuple[str, int], list[list[int]]] = {}
        self._newest: dict[tuple[str, int], tuple[int, int, int]] = {}  # seq, epoch, rx ns
        self._events: list[tuple[str, str, str]] = []
        self._frames: list[tuple[int, list[list[bytes]]]] = []
        self._group_ns = -1
        self._group: list[list[bytes]] = []
        self._frames_bytes = 0

    def event(self, kind: str, source_id: str, detail: str) -> None:
        """The ingest's event hook: takeovers seen inside this worker go to the twin (epoch
        changes and resyncs it re-derives from the runs)."""
        if kind == "takeover":
            self._events.append((kind, source_id, detail))

    def accepted(self, source_id: str, kind: int, seq: int, epoch: int, received_ns: int) -> None:
        """A message the worker's ingest accepted (received at ``received_ns``, wall)."""
        key = (source_id, kind)
        runs = self._runs.get(key)
        if runs is None:
            self._runs[key] = [[epoch, seq, seq, 1]]
        else:
            run = runs[-1]
            if run[0] != epoch or seq - run[2] - 1 > MAX_SEQ_JUMP:
                runs.append([epoch, seq, seq, 1])
            else:
                run[2] = seq
                run[3] += 1
        self._newest[key] = (seq, epoch, received_ns)

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """An accepted message's frames, for the twin's recorder."""
        if received_ns != self._group_ns:
            self._group = []
            self._group_ns = received_ns
            self._frames.append((received_ns, self._group))
        self._group.append(frames)
        self._frames_bytes += len(frames[0]) + len(frames[1]) + len(frames[2])

    def digest(self, connections: Counter[str] | None = None) -> Digest | None:
        """What changed since the last digest (None: nothing did)."""
        ingest = self.ingest
        totals = (
            ingest.received,
            ingest.accepted,
            ingest.unattributed,
            ingest.bytes_in,
            ingest.log_suppressed,
        )
        changed_connections: dict[str, int] = {}
        if connections is not None:
            connections_total = sum(connections.values())
            if connections_total != self._connections_total:
                changed_connections = _counter_minus(connections, self._connections)
                self._connections = Counter(connections)
                self._connections_total = connections_total
        if totals == self._totals and not self._events and not changed_connections:
            return None
        found = Digest(self.worker)
        before = self._totals
        found.received, found.accepted, found.unattributed, found.bytes_in = (
            totals[0] - before[0],
            totals[1] - before[1],
            totals[2] - before[2],
            totals[3] - before[3],
        )
        found.log_suppressed = totals[4] - before[4]
        found.connections = changed_connections
        self._totals = totals
        if found.received != found.accepted:  # some were refused: by reason
            found.bad_frames = _counter_minus(ingest.bad_frames, self._bad)
            self._bad = Counter(ingest.bad_frames)
            found.unknown_sources = _counter_minus(ingest.unknown_sources, self._unknown)
            self._unknown = Counter(ingest.unknown_sources)
        for robot_id, link in self.robots.items():
            if link.frames_in != self._marks[robot_id].frames_in:
                found.robots.append(self._robot(link, self._marks[robot_id]))
        for crane_id, crane in self.cranes.items():
            if crane.frames_in != self._marks[crane_id].frames_in:
                found.cranes.append(self._crane(crane, self._marks[crane_id]))
        found.events, self._events = self._events, []
        found.frames, self._frames, self._group_ns = self._frames, [], -1
        found.frames_bytes, self._frames_bytes = self._frames_bytes, 0
        self._runs.clear()
        return found

    def _refused(self, source: Any, mark: _Mark) -> dict[str, int]:
        total = sum(source.refused.values())
        if total == mark.refused_total:
            return {}
        found = _counter_minus(source.refused, mark.refused)
        mark.refused, mark.refused_total = Counter(source.refused), total
        return found

    def _stream(self, source_id: str, kind: int, tracker: Any, mark: _Mark) -> StreamDigest:
        stale, stale_epoch = tracker.stale, tracker.stale_epoch
        before = mark.stale.get(kind, (0, 0))
        mark.stale[kind] = (stale, stale_epoch)
        runs = [(r[0], r[1], r[2], r[3]) for r in self._runs.get((source_id, kind), ())]
        return StreamDigest(kind, runs, stale - before[0], stale_epoch - before[1])

    def _robot(self, link: RobotLink, mark: _Mark) -> RobotDigest:
        rid = link.robot_id
        streams = [self._stream(rid, int(k), t, mark) for k, t in link.streams.items()]
        rate = link.rate_in
        found = RobotDigest(
            robot_id=rid,
            frames_in=link.frames_in - mark.frames_in,
            rate_msgs=rate.total_msgs - mark.rate_msgs,
            bytes_in=rate.total_bytes - mark.bytes_in,
            refused=self._refused(link, mark),
            streams=streams,
            epochs_interleaved=link.epochs_interleaved - mark.epochs_interleaved,
            last_rx_ns=link.liveness.last_rx_ns,
            last_any_ns=link.liveness.last_any_ns,
            shutdown=link.liveness.shutdown,
        )
        mark.frames_in, mark.rate_msgs, mark.bytes_in = (
            link.frames_in,
            rate.total_msgs,
            rate.total_bytes,
        )
        mark.epochs_interleaved = link.epochs_interleaved
        if link.joints_dirty:
            if link.raw_payload is not None:
                found.joints = link.raw_payload
            elif link.raw_joints is not None:
                found.joints = np.ascontiguousarray(link.raw_joints).tobytes()
                found.joints_dtype = link.raw_joints.dtype.str
            found.joints_seq, found.joints_epoch, found.joints_received_ns = self._newest.get(
                (rid, int(Kind.JOINT_STATE)), (-1, 0, 0)
            )
            found.joints_stamp_ns = link.joints_stamp_ns
            link.joints_dirty = False
        if link.heartbeat is not mark.heartbeat:
            found.heartbeat = mark.heartbeat = link.heartbeat
            found.heartbeat_seq, found.heartbeat_epoch, _ = self._newest.get(
                (rid, int(Kind.HEARTBEAT)), (-1, 0, 0)
            )
        if link.base_dirty:
            found.base = link.base
            found.base_seq, found.base_epoch, _ = self._newest.get(
                (rid, int(Kind.BASE)), (-1, 0, 0)
            )
            link.base_dirty = False
        return found

    def _crane(self, crane: CraneLink, mark: _Mark) -> CraneDigest:
        rate = crane.rate_in
        found = CraneDigest(
            crane_id=crane.crane_id,
            frames_in=crane.frames_in - mark.frames_in,
            rate_msgs=rate.total_msgs - mark.rate_msgs,
            bytes_in=rate.total_bytes - mark.bytes_in,
            refused=self._refused(crane, mark),
            stream=self._stream(crane.crane_id, int(Kind.CRANE), crane.stream, mark),
            last_rx_ns=crane.liveness.last_rx_ns,
        )
        mark.frames_in, mark.rate_msgs, mark.bytes_in = (
            crane.frames_in,
            rate.total_msgs,
            rate.total_bytes,
        )
        if crane.dirty:
            found.state = crane.state
            found.stamp_ns = crane.stamp_ns
            found.seq, found.epoch, _ = self._newest.get(
                (crane.crane_id, int(Kind.CRANE)), (-1, 0, 0)
            )
            crane.dirty = False
        return found


def _merge_streams(older: list[StreamDigest], newer: list[StreamDigest]) -> list[StreamDigest]:
    by_kind = {s.kind: s for s in older}
    for stream in newer:
        old = by_kind.get(stream.kind)
        if old is None:
            by_kind[stream.kind] = stream
            continue
        old.stale += stream.stale
        old.stale_epoch += stream.stale_epoch
        old.runs.extend(stream.runs)
        if len(old.runs) > MAX_HELD_RUNS:  # bounded: the middle runs fold into one
            first, last = old.runs[0], old.runs[-1]
            count = sum(r[3] for r in old.runs[1:-1])
            middle = old.runs[-2]
            old.runs = [first, (middle[0], middle[1], middle[2], count), last]
    return list(by_kind.values())


def merge(older: Digest, newer: Digest) -> Digest:
    """Two digests the twin has not taken, as one: increments added, runs in order, the
    newest states and liveness kept, events and frames in order (bounded: see
    MAX_HELD_FRAME_BYTES, MAX_HELD_EVENTS; what is dropped is counted)."""
    for name in ("received", "accepted", "unattributed", "bytes_in", "log_suppressed"):
        setattr(older, name, getattr(older, name) + getattr(newer, name))
    for name in ("bad_frames", "unknown_sources", "connections"):
        into = getattr(older, name)
        for key, value in getattr(newer, name).items():
            into[key] = into.get(key, 0) + value
    robots = {r.robot_id: r for r in older.robots}
    for new in newer.robots:
        old = robots.get(new.robot_id)
        if old is not None:
            for name in ("frames_in", "rate_msgs", "bytes_in", "epochs_interleaved"):
                setattr(new, name, getattr(old, name) + getattr(new, name))
            for key, value in old.refused.items():
                new.refused[key] = new.refused.get(key, 0) + value
            new.streams = _merge_streams(old.streams, new.streams)
            if new.joints is None:
                new.joints, new.joints_dtype = old.joints, old.joints_dtype
                new.joints_seq, new.joints_epoch = old.joints_seq, old.joints_epoch
                new.joints_stamp_ns = old.joints_stamp_ns
                new.joints_received_ns = old.joints_received_ns
            if new.heartbeat is None:
                new.heartbeat = old.heartbeat
                new.heartbeat_seq, new.heartbeat_epoch = old.heartbeat_seq, old.heartbeat_epoch
            if new.base is None:
                new.base, new.base_seq, new.base_epoch = old.base, old.base_seq, old.base_epoch
        robots[new.robot_id] = new
    older.robots = list(robots.values())
    cranes = {c.crane_id: c for c in older.cranes}
    for new_crane in newer.cranes:
        old_crane = cranes.get(new_crane.crane_id)
        if old_crane is not None:
            for name in ("frames_in", "rate_msgs", "bytes_in"):
                setattr(new_crane, name, getattr(old_crane, name) + getattr(new_crane, name))
            for key, value in old_crane.refused.items():
                new_crane.refused[key] = new_crane.refused.get(key, 0) + value
            new_crane.stream = _merge_streams([old_crane.stream], [new_crane.stream])[0]
            if new_crane.state is None:
                new_crane.state, new_crane.stamp_ns = old_crane.state, old_crane.stamp_ns
                new_crane.seq, new_crane.epoch = old_crane.seq, old_crane.epoch
        cranes[new_crane.crane_id] = new_crane
    older.cranes = list(cranes.values())
    events = older.events + newer.events
    older.events_dropped += newer.events_dropped + max(0, len(events) - MAX_HELD_EVENTS)
    older.events = events[-MAX_HELD_EVENTS:]
    older.frames.extend(newer.frames)
    older.frames_bytes += newer.frames_bytes
    older.frames_dropped += newer.frames_dropped
    if older.frames_bytes > MAX_HELD_FRAME_BYTES:  # the oldest go, counted
        keep = deque(older.frames)
        while older.frames_bytes > MAX_HELD_FRAME_BYTES and keep:
            _, group = keep.popleft()
            older.frames_bytes -= sum(len(f) for frames in group for f in frames)
            older.frames_dropped += len(group)
        older.frames = list(keep)
    return older


def joint_values(found: RobotDigest) -> NDArray[Any] | None:
    """A digest's checked wire values (3, joints), when it carried them as such."""
    if found.joints is None or not found.joints_dtype:
        return None
    return np.frombuffer(found.joints, dtype=np.dtype(found.joints_dtype)).reshape(3, -1)


def load(body: bytes) -> Digest:
    """A digest as a worker encoded it (the channel is the twin's own)."""
    return _DECODE(body)
