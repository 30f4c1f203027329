"""What an ingest worker tells the twin: a digest of the frames it took since the last one.

With ``twin live --workers N`` (:mod:`twin.live.shards`) each worker process runs the
twin's own :class:`~twin.live.ingest.Ingest` over its share of the gateways' connections
(screening, headers, sequences, epochs, counters, exactly as the one-process twin does),
and instead of every message it sends the twin, every few milliseconds, a **digest**: per
robot or crane that changed, the counters' increments, the newest state (joint state,
heartbeat, base pose, crane state) and its arrival time; the totals' increments; the events
it raised; and, when the twin records, the accepted frames as they came. The twin applies a
digest to its own links (:meth:`twin.live.intake.Intake.take_digests`), so status, the
fan-out, liveness, the detectors and the recorder read the same fields as ever, and the
twin's thread does a few operations per robot per digest instead of a few per message.

This module holds both ends of the format: :class:`Digester` (the worker's side) and the
records it sends (:class:`RobotDigest`, :class:`CraneDigest`, :class:`Digest`).
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from sync.protocol import BaseState, CraneState, Heartbeat, Kind
from sync.streams import StreamTracker
from twin.live.ingest import Ingest
from twin.live.links import CraneLink, RobotLink

_TRACKED = (
    "received",
    "gaps",
    "stale",
    "stale_epoch",
    "joined_mid_epoch",
    "epoch_changes",
    "resyncs",
)
"""The counters of a :class:`~sync.streams.StreamTracker` a digest carries increments of."""

Counts = tuple[int, ...]


class RobotDigest(msgspec.Struct, array_like=True):
    """One robot's changes in a digest (counters are increments since the last digest)."""

    robot_id: str
    frames_in: int
    joint_messages: int
    rate_msgs: int  # accepted messages (the rate meter's count) and their bytes
    bytes_in: int
    refused: dict[str, int]
    streams: dict[int, Counts]  # Kind -> increments of _TRACKED
    epochs_interleaved: int
    epoch: int
    last_rx_ns: int  # monotonic (one clock for every process of the machine)
    last_any_ns: int
    main_messages: int
    shutdown: bool
    # the newest joint state, if a new one came: its packed payload, or (``joints_dtype``
    # set) its checked wire values, shape (3, joints), as bytes
    joints: bytes | None = None
    joints_dtype: str = ""
    joints_seq: int = -1
    joints_stamp_ns: int = 0
    joints_received_ns: int = 0
    heartbeat: Heartbeat | None = None
    base: BaseState | None = None


class CraneDigest(msgspec.Struct, array_like=True):
    """One crane's changes in a digest."""

    crane_id: str
    frames_in: int
    rate_msgs: int
    bytes_in: int
    refused: dict[str, int]
    stream: Counts
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
    # accepted frames as they came, when the twin records: (receive time, messages)
    frames: list[tuple[int, list[list[bytes]]]] = msgspec.field(default_factory=list)
    frames_dropped: int = 0  # for the recorder, while the twin did not take digests

    def dumps(self) -> bytes:
        """Encoded for the channel (MessagePack, positional)."""
        return _ENCODE(self)


_ENCODE: Final = msgspec.msgpack.Encoder().encode
_DECODE: Final = msgspec.msgpack.Decoder(Digest).decode


def _counts(t: StreamTracker) -> Counts:
    """A tracker's counters, in the order of ``_TRACKED``."""
    return (t.received, t.gaps, t.stale, t.stale_epoch, t.joined_mid_epoch, t.epoch_changes,
            t.resyncs)  # fmt: skip


def _minus(now: Counts, before: Counts | None) -> Counts:
    if before is None:
        return now
    return tuple(map(operator.sub, now, before))


def _counter_minus(now: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


@dataclass
class _RobotMark:
    """What the last digest told of a robot (cumulative), to send increments."""

    frames_in: int = 0
    joint_messages: int = 0
    rate_msgs: int = 0
    bytes_in: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    streams: dict[int, Counts] = field(default_factory=dict)
    epochs_interleaved: int = 0
    main_messages: int = 0
    heartbeat: Heartbeat | None = None


@dataclass
class _CraneMark:
    frames_in: int = 0
    rate_msgs: int = 0
    bytes_in: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    stream: Counts | None = None
    state: CraneState | None = None


class Digester:
    """The worker's side: its links and ingest, told as increments since the last digest.

    The worker calls :meth:`joint_received` for each accepted joint state (its receive
    time), :meth:`event` from its ingest's event hook, :meth:`frames` for each accepted
    message when the twin records, then :meth:`digest` every few milliseconds."""

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
        self._robot_marks = {rid: _RobotMark() for rid in robots}
        self._crane_marks = {cid: _CraneMark() for cid in cranes}
        self._totals = (0, 0, 0, 0, 0)
        self._bad: Counter[str] = Counter()
        self._unknown: Counter[str] = Counter()
        self._connections: Counter[str] = Counter()
        self._connections_total = 0
        self._received_ns: dict[str, int] = {}
        self._events: list[tuple[str, str, str]] = []
        self._frames: list[tuple[int, list[list[bytes]]]] = []
        self._group_ns = -1
        self._group: list[list[bytes]] = []

    def event(self, kind: str, source_id: str, detail: str) -> None:
        """The ingest's event hook."""
        self._events.append((kind, source_id, detail))

    def joint_received(self, robot_id: str, received_ns: int) -> None:
        """An accepted joint state of ``robot_id`` received at ``received_ns`` (wall)."""
        self._received_ns[robot_id] = received_ns

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """An accepted message's frames, for the twin's recorder."""
        if received_ns != self._group_ns:
            self._group = []
            self._group_ns = received_ns
            self._frames.append((received_ns, self._group))
        self._group.append(frames)

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
            mark = self._robot_marks[robot_id]
            if link.frames_in != mark.frames_in:
                found.robots.append(self._robot(link, mark))
        for crane_id, crane in self.cranes.items():
            crane_mark = self._crane_marks[crane_id]
            if crane.frames_in != crane_mark.frames_in:
                found.cranes.append(self._crane(crane, crane_mark))
        found.events, self._events = self._events, []
        found.frames, self._frames, self._group_ns = self._frames, [], -1
        return found

    def _robot(self, link: RobotLink, mark: _RobotMark) -> RobotDigest:
        streams: dict[int, Counts] = {}
        accepted = 0
        for kind, tracker in link.streams.items():
            now = _counts(tracker)
            increments = streams[int(kind)] = _minus(now, mark.streams.get(int(kind)))
            accepted += increments[0]
            mark.streams[int(kind)] = now
        frames_in = link.frames_in - mark.frames_in
        refused: dict[str, int] = {}
        if frames_in != accepted:  # some of its frames were refused: by reason
            refused = _counter_minus(link.refused, mark.refused)
            mark.refused = Counter(link.refused)
        liveness = link.liveness
        total_bytes = link.rate_in.total_bytes
        found = RobotDigest(
            robot_id=link.robot_id,
            frames_in=frames_in,
            joint_messages=link.joint_messages - mark.joint_messages,
            rate_msgs=link.rate_in.total_msgs - mark.rate_msgs,
            bytes_in=total_bytes - mark.bytes_in,
            refused=refused,
            streams=streams,
            epochs_interleaved=link.epochs_interleaved - mark.epochs_interleaved,
            epoch=link.epoch,
            last_rx_ns=liveness.last_rx_ns,
            last_any_ns=liveness.last_any_ns,
            main_messages=liveness.main_messages - mark.main_messages,
            shutdown=liveness.shutdown,
        )
        mark.frames_in, mark.joint_messages, mark.bytes_in = (
            link.frames_in,
            link.joint_messages,
            total_bytes,
        )
        mark.rate_msgs = link.rate_in.total_msgs
        mark.epochs_interleaved = link.epochs_interleaved
        mark.main_messages = liveness.main_messages
        if link.joints_dirty:
            if link.raw_payload is not None:
                found.joints = link.raw_payload
            elif link.raw_joints is not None:
                found.joints = np.ascontiguousarray(link.raw_joints).tobytes()
                found.joints_dtype = link.raw_joints.dtype.str
            joint_stream = link.streams.get(Kind.JOINT_STATE)
            found.joints_seq = joint_stream.last_seq if joint_stream is not None else -1
            found.joints_stamp_ns = link.joints_stamp_ns
            found.joints_received_ns = self._received_ns.get(link.robot_id, 0)
            link.joints_dirty = False
        if link.heartbeat is not mark.heartbeat:
            found.heartbeat = mark.heartbeat = link.heartbeat
        if link.base_dirty:
            found.base = link.base
            link.base_dirty = False
        return found

    def _crane(self, crane: CraneLink, mark: _CraneMark) -> CraneDigest:
        now = _counts(crane.stream)
        total_bytes = crane.rate_in.total_bytes
        found = CraneDigest(
            crane_id=crane.crane_id,
            frames_in=crane.frames_in - mark.frames_in,
            rate_msgs=crane.rate_in.total_msgs - mark.rate_msgs,
            bytes_in=total_bytes - mark.bytes_in,
            refused=_counter_minus(crane.refused, mark.refused),
            stream=_minus(now, mark.stream),
            last_rx_ns=crane.liveness.last_rx_ns,
        )
        mark.frames_in, mark.bytes_in, mark.stream = crane.frames_in, total_bytes, now
        mark.rate_msgs = crane.rate_in.total_msgs
        mark.refused = Counter(crane.refused)
        if crane.dirty:
            found.state = crane.state
            found.stamp_ns = crane.stamp_ns
            found.seq = crane.stream.last_seq
            found.epoch = crane.stream.epoch
            crane.dirty = False
        return found


MAX_HELD_FRAMES: Final = 200_000
"""Messages a worker holds for the recorder while the twin takes no digests; the oldest
beyond are dropped (counted: ``frames_dropped``)."""
MAX_HELD_EVENTS: Final = 1000


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def merge(older: Digest, newer: Digest) -> Digest:
    """Two digests the twin has not taken, as one: increments added, the newest states and
    liveness kept, events and frames in order (bounded: see MAX_HELD_FRAMES)."""
    for name in ("received", "accepted", "unattributed", "bytes_in", "log_suppressed"):
        setattr(older, name, getattr(older, name) + getattr(newer, name))
    for name in ("bad_frames", "unknown_sources", "connections"):
        _add(getattr(older, name), getattr(newer, name))
    robots = {r.robot_id: r for r in older.robots}
    for new in newer.robots:
        old = robots.get(new.robot_id)
        if old is None:
            robots[new.robot_id] = new
            continue
        for name in ("frames_in", "joint_messages", "rate_msgs", "bytes_in", "epochs_interleaved",
                     "main_messages"):  # fmt: skip
            setattr(new, name, getattr(old, name) + getattr(new, name))
        _add(new.refused, {k: v for k, v in old.refused.items()})
        for kind, counts in old.streams.items():
            later = new.streams.get(kind)
            new.streams[kind] = (
                counts
                if later is None
                else tuple(a + b for a, b in zip(counts, later, strict=True))
            )
        if new.joints is None:
            new.joints, new.joints_seq = old.joints, old.joints_seq
            new.joints_dtype = old.joints_dtype
            new.joints_stamp_ns = old.joints_stamp_ns
            new.joints_received_ns = old.joints_received_ns
        new.heartbeat = new.heartbeat or old.heartbeat
        new.base = new.base or old.base
        robots[new.robot_id] = new
    older.robots = list(robots.values())
    cranes = {c.crane_id: c for c in older.cranes}
    for new_crane in newer.cranes:
        old_crane = cranes.get(new_crane.crane_id)
        if old_crane is not None:
            for name in ("frames_in", "rate_msgs", "bytes_in"):
                setattr(new_crane, name, getattr(old_crane, name) + getattr(new_crane, name))
            _add(new_crane.refused, old_crane.refused)
            new_crane.stream = tuple(
                a + b for a, b in zip(old_crane.stream, new_crane.stream, strict=True)
            )
            if new_crane.state is None:
                new_crane.state, new_crane.stamp_ns = old_crane.state, old_crane.stamp_ns
                new_crane.seq, new_crane.epoch = old_crane.seq, old_crane.epoch
        cranes[new_crane.crane_id] = new_crane
    older.cranes = list(cranes.values())
    older.events = (older.events + newer.events)[-MAX_HELD_EVENTS:]
    older.frames.extend(newer.frames)
    older.frames_dropped += newer.frames_dropped
    held = sum(len(group) for _, group in older.frames)
    while held > MAX_HELD_FRAMES and older.frames:
        _, group = older.frames.pop(0)
        held -= len(group)
        older.frames_dropped += len(group)
    return older


def add_counts(tracker: StreamTracker, increments: Counts) -> None:
    """Add a digest's increments (in the order of ``_TRACKED``) to one of the twin's
    stream trackers."""
    received, gaps, stale, stale_epoch, joined, changes, resyncs = increments
    tracker.received += received
    tracker.gaps += gaps
    if stale or stale_epoch or joined or changes or resyncs:
        tracker.stale += stale
        tracker.stale_epoch += stale_epoch
        tracker.joined_mid_epoch += joined
        tracker.epoch_changes += changes
        tracker.resyncs += resyncs


def joint_values(found: RobotDigest) -> NDArray[Any] | None:
    """A digest's checked wire values (3, joints), when it carried them as such."""
    if found.joints is None or not found.joints_dtype:
        return None
    return np.frombuffer(found.joints, dtype=np.dtype(found.joints_dtype)).reshape(3, -1)


def load(body: bytes) -> Digest:
    """A digest as a worker encoded it (the channel is the twin's own)."""
    return _DECODE(body)
