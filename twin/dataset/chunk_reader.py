"""Reading the export's channels out of one decompressed chunk into a :class:`Part`.

For each robot the export keeps ``/joints/<robot>``, ``/base/<robot>`` and
``/heartbeat/<robot>``, and ``/events``. Joint states and base poses are decoded in bulk
from the raw vendor frames beside the canonical JSON (:mod:`twin.dataset.bulk`), and each
chunk's result is held against the JSON: the same number of messages, the same receive
times, stamps and values for the first and the last. Where they differ (a frame the bulk
decoder cannot read, a codec that changed since the recording, a robot whose model is not
known) that chunk's JSON is decoded message by message, so the values are always the
canonical ones. Heartbeats and events are few and are decoded from their JSON.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np

from sync.codecs import VendorCodec
from twin.dataset import bulk
from twin.dataset.bulk import BoolArray
from twin.dataset.series import (
    BASE,
    BEAT,
    BEATS,
    EVENT,
    JOINTS,
    NAMES,
    FloatArray,
    IntArray,
    Part,
    RobotSeries,
)
from twin.record.chunks import ChunkRef

log = logging.getLogger(__name__)

ROBOT_KINDS = ("joints", "base", "heartbeat")
_RAW_KINDS = {"js": "raw_joints", "base": "raw_base"}
_STAMP_KEY = b'"stamp_ns":'


@dataclass
class Prepared:
    """One chunk's messages found (channel id -> where they lie) and its raw frames decoded
    (robot -> which frames are kept, their values)."""

    found: dict[int, bulk.Located]
    joints: dict[str, tuple[BoolArray, FloatArray]] = field(default_factory=dict)
    base: dict[str, tuple[BoolArray, FloatArray]] = field(default_factory=dict)


class _Pending:
    """Decoded raw frames not yet matched with their canonical JSON."""

    def __init__(self, width: tuple[int, ...]) -> None:
        self.log_ns: IntArray = np.zeros(0, dtype=np.int64)
        self.publish_ns: IntArray = np.zeros(0, dtype=np.int64)
        self.values: FloatArray = np.zeros((0, *width))

    def __len__(self) -> int:
        return len(self.log_ns)

    def add(self, log_ns: IntArray, publish_ns: IntArray, values: FloatArray) -> None:
        if len(self.log_ns):
            log_ns = np.concatenate([self.log_ns, log_ns])
            publish_ns = np.concatenate([self.publish_ns, publish_ns])
            values = np.concatenate([self.values, values])
        self.log_ns, self.publish_ns, self.values = log_ns, publish_ns, values

    def drop(self, count: int) -> None:
        """Forget the first ``count`` (matched, or read from their JSON instead)."""
        self.log_ns = self.log_ns[count:]
        self.publish_ns = self.publish_ns[count:]
        self.values = self.values[count:]


def _joint_row(body: bytes) -> tuple[int | None, FloatArray] | None:
    try:
        state = JOINTS.decode(body)
        return state.stamp_ns, np.array([state.position, state.velocity, state.effort])
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):  # ValueError: ragged
        return None


def _base_row(body: bytes) -> tuple[int | None, FloatArray] | None:
    try:
        return None, np.array(BASE.decode(body).values())
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass
class _Robot:
    """A robot's channel ids (0: none) and decoders."""

    channels: dict[str, int] = field(default_factory=dict)
    joints: bulk.JointDecoder | None = None
    base: bulk.BaseDecoder = field(default_factory=bulk.BaseDecoder)
    raw_ok: bool | None = None  # its joint names agree with the codec (None: not seen yet)
    pending_joints: _Pending = field(default_factory=lambda: _Pending((0,)))
    pending_base: _Pending = field(default_factory=lambda: _Pending((7,)))


def route(topic: str, robots: set[str] | None) -> tuple[str, str] | None:
    """(kind, robot) of a topic the export reads: ``events``, a ROBOT_KINDS kind, or
    ``raw_joints``/``raw_base`` (None: a topic it does not read)."""
    if topic == "/events":
        return ("events", "")
    parts = topic.split("/")
    if len(parts) == 3 and parts[1] in ROBOT_KINDS:
        kind, robot_id = parts[1], parts[2]
    elif len(parts) == 4 and parts[1] == "raw" and parts[2] in _RAW_KINDS:
        kind, robot_id = _RAW_KINDS[parts[2]], parts[3]
    else:
        return None
    if robot_id and (robots is None or robot_id in robots):
        return (kind, robot_id)
    return None


class ChunkReader:
    """Reads chunk after chunk of one recording into ``part``."""

    def __init__(
        self, topics: Mapping[int, str], part: Part, codecs: Mapping[str, VendorCodec]
    ) -> None:
        self.part = part
        self.codecs = codecs
        self.robots: dict[str, _Robot] = {}
        self.events: set[int] = set()
        for channel_id, topic in topics.items():
            self.add_channel(channel_id, topic)

    def add_channel(self, channel_id: int, topic: str) -> None:
        found = route(topic, self.part.wanted)
        if found is None:
            return
        kind, robot_id = found
        if kind == "events":
            self.events.add(channel_id)
            return
        robot = self.robots.get(robot_id)
        if robot is None:
            robot = self.robots[robot_id] = _Robot()
            codec = self.codecs.get(robot_id)
            robot.joints = bulk.JointDecoder(codec) if codec is not None else None
            if codec is not None:
                robot.pending_joints = _Pending((3, len(codec.names)))
        robot.channels[kind] = channel_id

    def wanted(self) -> set[int]:
        robots = list(self.robots.values())  # a snapshot: a walk may add channels meanwhile
        return set(self.events) | {c for r in robots for c in list(r.channels.values())}

    def chunk(self, records: bytes, index: bytes | None) -> None:
        """Read one chunk's records (``index``: its message index records, if known)."""
        self.take(records, self.prepare(records, index))

    def prepare(self, records: bytes, index: bytes | None) -> Prepared | None:
        """The chunk's messages found through its index and its raw frames decoded (None:
        no usable index). This holds no state between chunks, so decompression threads run
        it while :meth:`take` reads the chunks before."""
        if not index:
            return None
        offsets = bulk.index_offsets(index, self.wanted())
        if offsets is None:
            return None
        buf = np.frombuffer(records, dtype=np.uint8)
        found = bulk.locate_all(buf, offsets)
        if found is None:  # an index that does not fit the records: walk them
            return None
        prepared = Prepared(found)
        return prepared if self.part.peek else self._decode(prepared, buf, records)

    def take(self, records: bytes, prepared: Prepared | None) -> None:
        """Read one chunk into the part, from what :meth:`prepare` made of it (None: walk
        its records and decode here)."""
        if prepared is None:
            prepared = self._walk(records)
        for robot_id, robot in self.robots.items():
            self._robot(robot_id, robot, records, prepared)
        for channel_id in self.events:
            self._events(records, prepared.found.get(channel_id, bulk.EMPTY))

    def _walk(self, records: bytes) -> Prepared:
        walked, channels = bulk.walk_offsets(records, self.wanted())
        for channel_id, topic in channels:
            self.add_channel(channel_id, topic)
        if channels:
            walked, _ = bulk.walk_offsets(records, self.wanted())
        buf = np.frombuffer(records, dtype=np.uint8)
        prepared = Prepared({})
        for channel_id, at in walked.items():
            located = bulk.locate(buf, at, channel_id)
            if located is not None:
                prepared.found[channel_id] = located
        return prepared if self.part.peek else self._decode(prepared, buf, records)

    def _decode(self, prepared: Prepared, buf: bulk.U8Array, records: bytes) -> Prepared:
        """Decode the chunk's raw frames of every robot that has them."""
        found = prepared.found
        for robot_id, robot in list(self.robots.items()):
            raw = found.get(robot.channels.get("raw_joints", -1))
            if raw is not None and robot.joints is not None:
                prepared.joints[robot_id] = robot.joints.decode(buf, records, raw)
            raw = found.get(robot.channels.get("raw_base", -1))
            if raw is not None:
                prepared.base[robot_id] = robot.base.decode(buf, records, raw)
        return prepared

    def _series(self, robot_id: str) -> RobotSeries:
        series = self.part.robots.get(robot_id)
        if series is None:
            series = self.part.robots[robot_id] = RobotSeries(robot_id)
        return series

    def _robot(self, robot_id: str, robot: _Robot, records: bytes, prepared: Prepared) -> None:
        found = prepared.found

        def get(kind: str) -> bulk.Located:
            channel_id = robot.channels.get(kind)
            return found.get(channel_id, bulk.EMPTY) if channel_id is not None else bulk.EMPTY

        joints, beats, base = get("joints"), get("heartbeat"), get("base")
        if self.part.peek:
            if len(joints):
                self._peek(self._series(robot_id), records, joints)
            return
        if len(joints):
            series = self._series(robot_id)
            if not series.names:
                self._names(series, records, joints)
            if robot.raw_ok is None and series.names:
                codec = robot.joints.codec if robot.joints is not None else None
                robot.raw_ok = codec is not None and list(codec.canonical_names) == series.names
                if not robot.raw_ok:
                    log.info("%s: joint states read from their JSON (no codec fits)", robot_id)
        raw = get("raw_joints")
        decoded = prepared.joints.get(robot_id)
        if robot.raw_ok and decoded is not None and (len(joints) or len(raw)):
            keep, values = decoded
            matched = self._match(
                robot.pending_joints, raw, keep, values, joints, records, _joint_row
            )
            if matched is not None:
                if len(joints):
                    series = self._series(robot_id)
                    series.joint_log_ns.append(matched[0])
                    series.joint_stamp_ns.append(matched[1])
                    series.joint_values.append(matched[2])
                joints = bulk.EMPTY
        if len(joints):
            self._json_joints(self._series(robot_id), records, joints)
        raw = get("raw_base")
        decoded = prepared.base.get(robot_id)
        if decoded is not None and (len(base) or len(raw)):
            keep, values = decoded
            matched = self._match(robot.pending_base, raw, keep, values, base, records, _base_row)
            if matched is not None:
                if len(base):
                    series = self._series(robot_id)
                    series.base_log_ns.append(matched[0])
                    series.base_poses.append(matched[2])
                base = bulk.EMPTY
        if len(base):
            self._json_base(self._series(robot_id), records, base)
        if len(beats):
            self._beats(self._series(robot_id), records, beats)

    def _match(
        self,
        pending: _Pending,
        raw: bulk.Located,
        keep: BoolArray,
        values: FloatArray,
        canonical: bulk.Located,
        records: bytes,
        row: Callable[[bytes], tuple[int | None, FloatArray] | None],
    ) -> tuple[IntArray, IntArray, FloatArray] | None:
        """The frames that stand for this chunk's canonical messages (receive times, stamps,
        values), or None where they differ (the caller reads the JSON). The frames decoded
        so far (one held from the chunk before, then this chunk's kept ones) must begin with
        the same receive times, and the first and last hold the same stamps and values. A
        frame whose JSON lies in the next chunk stays pending (a pair of messages may
        straddle a chunk boundary); frames before it never had JSON written (the recorder
        refused them) and are dropped."""
        if keep.all():  # the usual case: every frame kept, taken without a copy
            pending.add(raw.log_ns, raw.publish_ns, values)
        else:
            rows = np.flatnonzero(keep)
            pending.add(raw.log_ns[rows], raw.publish_ns[rows], values[rows])
        count = len(canonical)
        same = len(pending) >= count and np.array_equal(pending.log_ns[:count], canonical.log_ns)
        for at in (0, count - 1) if same and count else ():
            decoded = row(canonical.body(records, at))
            if decoded is None:
                same = False
                break
            stamp, value = decoded
            same_stamp = stamp is None or stamp == pending.publish_ns[at]
            if not (same_stamp and np.array_equal(value, pending.values[at])):
                same = False
                break
        matched = pending.log_ns[:count], pending.publish_ns[:count], pending.values[:count]
        pending.drop(max(count, len(pending) - 1))
        if not same:
            return None
        if count:
            self.part.bulk += 1
        return matched

    def _names(self, series: RobotSeries, records: bytes, joints: bulk.Located) -> None:
        try:
            series.names = NAMES.decode(joints.body(records, 0)).name
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.part.problems.append(f"joints/{series.robot_id}: no joint names ({exc})")

    def _peek(self, series: RobotSeries, records: bytes, joints: bulk.Located) -> None:
        """The first joint states' names and stamps (for the rate), nothing else."""
        if not series.names:
            self._names(series, records, joints)
        room = min(self.part.peek - series.joint_count(), len(joints))
        stamps, logs = [], []
        for i in range(max(room, 0)):
            try:
                stamps.append(_stamp_ns(joints.body(records, i)))
                logs.append(int(joints.log_ns[i]))
            except msgspec.ValidationError:
                continue
        series.joint_stamp_ns.append(np.asarray(stamps, dtype=np.int64))
        series.joint_log_ns.append(np.asarray(logs, dtype=np.int64))

    def _json_joints(self, series: RobotSeries, records: bytes, joints: bulk.Located) -> None:
        """The chunk's joint states from their JSON, one by one (a state whose values do
        not decode is kept as NaN, which the previous state replaces)."""
        width = len(series.names)
        stamps: list[int] = []
        logs: list[int] = []
        values = np.full((len(joints), 3, width), np.nan)
        for i in range(len(joints)):
            body = joints.body(records, i)
            log_ns = int(joints.log_ns[i])
            try:
                state = JOINTS.decode(body)
                stamp = state.stamp_ns
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                try:
                    stamp = _stamp_ns(body)
                except msgspec.ValidationError as why:
                    self.part.problems.append(f"joints/{series.robot_id} at {log_ns} ns: {why}")
                    continue
                self.part.problems.append(
                    f"{series.robot_id}: joint state at {log_ns} ns does not decode ({exc}); "
                    "the previous state held"
                )
            else:
                if len(state.position) == len(state.velocity) == len(state.effort) == width:
                    values[len(stamps)] = (state.position, state.velocity, state.effort)
                else:
                    self.part.problems.append(
                        f"{series.robot_id}: joint state at {log_ns} ns has "
                        f"{len(state.position)} values for {width} names; the previous state held"
                    )
            stamps.append(stamp)
            logs.append(log_ns)
        series.joint_log_ns.append(np.asarray(logs, dtype=np.int64))
        series.joint_stamp_ns.append(np.asarray(stamps, dtype=np.int64))
        series.joint_values.append(values[: len(stamps)])
        self.part.canonical += 1

    def _json_base(self, series: RobotSeries, records: bytes, base: bulk.Located) -> None:
        poses: FloatArray = np.full((len(base), 7), np.nan)
        for i in range(len(base)):
            try:
                poses[i] = BASE.decode(base.body(records, i)).values()
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log_ns = int(base.log_ns[i])
                self.part.problems.append(f"{series.robot_id}: base pose at {log_ns} ns: {exc}")
        series.base_log_ns.append(base.log_ns.copy())
        series.base_poses.append(poses)
        self.part.canonical += 1

    def _beats(self, series: RobotSeries, records: bytes, beats: bulk.Located) -> None:
        bodies = [beats.body(records, i) for i in range(len(beats))]
        logs = beats.log_ns.tolist()
        try:
            series.beats += BEATS.decode(b"[" + b",".join(bodies) + b"]")
            series.beat_log_ns += logs
            return
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        for log_ns, body in zip(logs, bodies, strict=True):
            try:
                series.beats.append(BEAT.decode(body))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.part.problems.append(f"heartbeat/{series.robot_id} at {log_ns} ns: {exc}")
                continue
            series.beat_log_ns.append(log_ns)

    def _events(self, records: bytes, events: bulk.Located) -> None:
        for i in range(len(events)):
            log_ns = int(events.log_ns[i])
            try:
                self.part.events.append((log_ns, EVENT.decode(events.body(records, i))))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.part.problems.append(f"events at {log_ns} ns: {exc}")


def _stamp_ns(body: bytes) -> int:
    """A joint state's ``stamp_ns``, read without parsing the rest of the JSON."""
    at = body.find(_STAMP_KEY)
    if at < 0:
        raise msgspec.ValidationError("joint state without stamp_ns")
    at += len(_STAMP_KEY)
    end = at
    while end < len(body) and body[end] not in b",}":
        end += 1
    try:
        return int(body[at:end])
    except ValueError:
        raise msgspec.ValidationError("joint state with a malformed stamp_ns") from None


def index_region(data: bytes | mmap.mmap, ref: ChunkRef) -> bytes | None:
    """A chunk's message index records as bytes (None: not known)."""
    if not ref.index_offset or not ref.index_length:
        return None
    return bytes(data[ref.index_offset : ref.index_offset + ref.index_length])
