"""Reading the export's channels out of one decompressed chunk into a :class:`Part`.

For each robot the export keeps ``/joints/<robot>``, ``/base/<robot>`` and
``/heartbeat/<robot>``, and ``/events``. Which way a robot's joint states are read depends
on its ``/joints`` channel (its schema name and message encoding,
:func:`twin.record.joint_blocks.is_block`):

* **blocks** (the recorder's joint-state blocks): each message is decoded in bulk with
  :func:`twin.record.joint_blocks.decode_block` (:mod:`twin.dataset.canonical`); they are
  the canonical values, so any raw joint frames beside them (``twin live --record --raw``)
  are not read. A block that does not decode is skipped with a problem naming it.
* **JSON**, a message per state (recordings made before the blocks): the states are
  decoded in bulk from the raw vendor frames beside them (``/raw/js/<robot>``,
  :mod:`twin.dataset.bulk`), and each chunk's result is held against the JSON: the same
  number of messages, the same receive times, stamps and values for the first and the
  last. Where they differ (a frame the bulk decoder cannot read, a codec that changed since
  the recording, a robot whose model is not known) that chunk's JSON is decoded message by
  message, so the values are always the canonical ones.

Base poses are read the second way (``/raw/base/<robot>`` beside the JSON ``/base``).
Heartbeats and events are few and are decoded from their JSON.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np
from mcap.records import Channel, Schema

from sync.codecs import VendorCodec
from twin.dataset import bulk, canonical
from twin.dataset.bulk import BoolArray
from twin.dataset.series import BASE, JOINTS, FloatArray, IntArray, Part, RobotSeries
from twin.record.chunks import ChunkRef
from twin.record.joint_blocks import is_block

log = logging.getLogger(__name__)

ROBOT_KINDS = ("joints", "base", "heartbeat")
_RAW_KINDS = {"js": "raw_joints", "base": "raw_base"}


@dataclass
class Prepared:
    """One chunk's messages found (channel id -> where they lie), its joint-state blocks
    decoded (robot -> each block's log time and rows, or why not) and its raw frames
    decoded (robot -> which frames are kept, their values)."""

    found: dict[int, bulk.Located]
    blocks: dict[str, list[canonical.Decoded]] = field(default_factory=dict)
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
    blocks: bool = False  # its /joints channel holds blocks (its raw joint frames are not read)
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
    """Reads chunk after chunk of one recording into ``part`` (``channels`` and ``schemas``:
    those the recording's summary or scan found; more may come in the chunks)."""

    def __init__(
        self,
        channels: Mapping[int, Channel],
        schemas: Mapping[int, Schema],
        part: Part,
        codecs: Mapping[str, VendorCodec],
    ) -> None:
        self.part = part
        self.codecs = codecs
        self.schema_names = {i: s.name for i, s in schemas.items()}
        self.robots: dict[str, _Robot] = {}
        self.events: set[int] = set()
        for channel in channels.values():
            self.add_channel(channel)

    def add_channel(self, channel: Channel) -> None:
        found = route(channel.topic, self.part.wanted)
        if found is None:
            return
        kind, robot_id = found
        if kind == "events":
            self.events.add(channel.id)
            return
        robot = self.robots.get(robot_id)
        if robot is None:
            robot = self.robots[robot_id] = _Robot()
            codec = self.codecs.get(robot_id)
            robot.joints = bulk.JointDecoder(codec) if codec is not None else None
            if codec is not None:
                robot.pending_joints = _Pending((3, len(codec.names)))
        if kind == "joints":
            schema = self.schema_names.get(channel.schema_id, "")
            robot.blocks = is_block(schema, channel.message_encoding)
        robot.channels[kind] = channel.id

    def wanted(self) -> set[int]:
        robots = list(self.robots.values())  # a snapshot: a walk may add channels meanwhile
        return set(self.events) | {
            c
            for r in robots
            for kind, c in list(r.channels.items())
            if not (r.blocks and kind == "raw_joints")
        }

    def chunk(self, records: bytes, index: bytes | None) -> None:
        """Read one chunk's records (``index``: its message index records, if known)."""
        self.take(records, self.prepare(records, index))

    def prepare(self, records: bytes, index: bytes | None) -> Prepared | None:
        """The chunk's messages found through its index and its blocks and raw frames
        decoded (None: no usable index). This holds no state between chunks, so
        decompression threads run it while :meth:`take` reads the chunks before."""
        if not index:
            return None
        offsets = bulk.index_offsets(index, self.wanted())
        if offsets is None:
            return None
        buf = np.frombuffer(records, dtype=np.uint8)
        found = bulk.locate_all(buf, offsets)
        if found is None:  # an index that does not fit the records: walk them
            return None
        return self._decode(Prepared(found), buf, records)

    def take(self, records: bytes, prepared: Prepared | None) -> None:
        """Read one chunk into the part, from what :meth:`prepare` made of it (None: walk
        its records and decode here)."""
        if prepared is None:
            prepared = self._walk(records)
        for robot_id, robot in self.robots.items():
            self._robot(robot_id, robot, records, prepared)
        for channel_id in self.events:
            canonical.events(self.part, records, prepared.found.get(channel_id, bulk.EMPTY))

    def _walk(self, records: bytes) -> Prepared:
        walked, defined = bulk.walk_offsets(records, self.wanted())
        for record in defined:
            if isinstance(record, Schema):
                self.schema_names[record.id] = record.name
            else:
                self.add_channel(record)
        if defined:
            walked, _ = bulk.walk_offsets(records, self.wanted())
        buf = np.frombuffer(records, dtype=np.uint8)
        prepared = Prepared({})
        for channel_id, at in walked.items():
            located = bulk.locate(buf, at, channel_id)
            if located is not None:
                prepared.found[channel_id] = located
        return self._decode(prepared, buf, records)

    def _decode(self, prepared: Prepared, buf: bulk.U8Array, records: bytes) -> Prepared:
        """Decode the chunk's joint-state blocks, and (not when peeking) the raw frames of
        every robot that has them."""
        found = prepared.found
        for robot_id, robot in list(self.robots.items()):
            joints = found.get(robot.channels.get("joints", -1))
            if robot.blocks and joints is not None and len(joints):
                prepared.blocks[robot_id] = canonical.decode_blocks(records, joints)
            if self.part.peek:
                continue
            raw = found.get(robot.channels.get("raw_joints", -1))
            if raw is not None and robot.joints is not None and not robot.blocks:
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

        part = self.part
        joints, beats, base = get("joints"), get("heartbeat"), get("base")
        blocks = prepared.blocks.get(robot_id, []) if robot.blocks else []
        if part.peek:
            if blocks:
                canonical.peek_blocks(part, self._series(robot_id), blocks)
            elif len(joints) and not robot.blocks:
                canonical.peek_json(part, self._series(robot_id), records, joints)
            return
        if blocks:
            canonical.add_blocks(part, self._series(robot_id), blocks)
        elif not robot.blocks:
            self._joints(robot_id, robot, records, prepared, joints, get("raw_joints"))
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
            canonical.json_base(part, self._series(robot_id), records, base)
        if len(beats):
            canonical.beats(part, self._series(robot_id), records, beats)

    def _joints(
        self,
        robot_id: str,
        robot: _Robot,
        records: bytes,
        prepared: Prepared,
        joints: bulk.Located,
        raw: bulk.Located,
    ) -> None:
        """A chunk's JSON joint states: from the raw frames where they stand for them, else
        from the JSON."""
        if len(joints):
            series = self._series(robot_id)
            if not series.names:
                canonical.names(self.part, series, records, joints)
            if robot.raw_ok is None and series.names:
                codec = robot.joints.codec if robot.joints is not None else None
                robot.raw_ok = codec is not None and list(codec.canonical_names) == series.names
                if not robot.raw_ok:
                    log.info("%s: joint states read from their JSON (no codec fits)", robot_id)
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
                return
        if len(joints):
            canonical.json_joints(self.part, self._series(robot_id), records, joints)

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


def index_region(data: bytes | mmap.mmap, ref: ChunkRef) -> bytes | None:
    """A chunk's message index records as bytes (None: not known)."""
    if not ref.index_offset or not ref.index_length:
        return None
    return bytes(data[ref.index_offset : ref.index_offset + ref.index_length])
