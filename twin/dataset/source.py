"""Reading a recording's robot channels fast, as arrays, for a dataset export.

A recording holds every canonical message as JSON beside its raw vendor frame; an export
needs only ``/joints/<robot>``, ``/base/<robot>``, ``/heartbeat/<robot>`` and ``/events``.
The generic reader (:mod:`twin.record.recording`) makes a Python object of every record; at
the hall's ~6,000 records a second that alone is slower than the export's target. So this
module walks each chunk's records itself with ``struct.unpack_from``, keeping only the
wanted channels' message bodies, which msgspec decodes straight into a few fields. Where the
chunks lie and each chunk's records (decompressed and CRC-checked in C) come from
:mod:`twin.record.chunks`, as for every reader of recordings: a damaged chunk is skipped and
noted in :attr:`Part.damage`, and the rest is read.

A complete file is split by its chunk index into :class:`ChunkSpan` parts, so several
processes can read one recording; a cut file (no usable summary) is read from the start
up to the cut, as :func:`twin.record.recording.open_recording` does.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from twin.record.chunks import ChunkCatalog, checked, chunk_catalog
from twin.record.damage import DamageReport

log = logging.getLogger(__name__)

MAGIC: Final = b"\x89MCAP0\r\n"
_OP_CHANNEL, _OP_MESSAGE = 0x04, 0x05
_MESSAGE: Final = struct.Struct("<BQH")  # opcode, length, channel id
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")

ROBOT_KINDS: Final = ("joints", "base", "heartbeat")
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class SourceError(ValueError):
    """A recording that cannot be read for an export (the message says where and why)."""


@dataclass(frozen=True)
class ChunkSpan:
    """Where a part of a recording lies: byte offsets of its first and past-last chunk."""

    start: int
    end: int


@dataclass(frozen=True)
class Layout:
    """What a scan of the summary tells: complete or cut, and the parts to read."""

    complete: bool
    spans: tuple[ChunkSpan, ...]


class _Joints(msgspec.Struct):
    stamp_ns: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


class _Names(msgspec.Struct):
    name: list[str]


class _Stamp(msgspec.Struct):
    sec: int
    nsec: int


class _Vec(msgspec.Struct, array_like=False):
    x: float
    y: float
    z: float


class _Quat(msgspec.Struct):
    x: float
    y: float
    z: float
    w: float


class _Pose(msgspec.Struct):
    position: _Vec
    orientation: _Quat


class _Base(msgspec.Struct):
    timestamp: _Stamp
    pose: _Pose


class Beat(msgspec.Struct):
    """The heartbeat fields an export uses."""

    stamp_ns: int
    mode: str
    task: str = ""
    grip_closed: bool = False
    holding: str = ""
    cycle: int = 0
    manufacturer: str = ""
    model: str = ""


class Event(msgspec.Struct):
    """A recorded ``/events`` message."""

    id: int
    stamp_ns: int
    kind: str
    source: str
    detail: str


_JOINTS = msgspec.json.Decoder(_Joints)
_NAMES = msgspec.json.Decoder(_Names)
_BASE = msgspec.json.Decoder(_Base)
_BEAT = msgspec.json.Decoder(Beat)
_EVENT = msgspec.json.Decoder(Event)


@dataclass
class RobotSeries:
    """One robot's recorded channels as read (times in ns: ``log`` the twin's receive clock,
    ``stamp`` the robot's own). Joint and base bodies stay undecoded JSON until resampling
    asks for the rows around its frames: at 50 fps that is a fifth of a 500 Hz robot's."""

    robot_id: str
    names: list[str] = field(default_factory=list)
    joint_log_ns: list[int] = field(default_factory=list)
    joint_stamp_ns: list[int] = field(default_factory=list)
    joint_bodies: list[bytes] = field(default_factory=list)
    base_log_ns: list[int] = field(default_factory=list)
    base_bodies: list[bytes] = field(default_factory=list)
    beat_log_ns: list[int] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)

    def extend(self, other: RobotSeries) -> None:
        if not self.names:
            self.names = other.names
        self.joint_log_ns += other.joint_log_ns
        self.joint_stamp_ns += other.joint_stamp_ns
        self.joint_bodies += other.joint_bodies
        self.base_log_ns += other.base_log_ns
        self.base_bodies += other.base_bodies
        self.beat_log_ns += other.beat_log_ns
        self.beats += other.beats


@dataclass
class Arrays:
    """A robot's series in time order: times as arrays, values decoded on demand by row
    (:meth:`joint_rows`, :meth:`base_rows`; each row decoded once)."""

    robot_id: str
    names: list[str]
    joint_t_ns: IntArray  # the robot's stamps moved onto the twin's clock
    joint_bodies: list[bytes]
    base_t_ns: IntArray
    base_bodies: list[bytes]
    beat_t_ns: IntArray
    beats: list[Beat]
    clock_offset_ns: int  # median (receive - stamp) of the joint states
    problems: list[str] = field(default_factory=list)
    _joints: dict[int, tuple[list[float], list[float], list[float]]] = field(
        default_factory=dict, repr=False
    )
    _base: dict[int, tuple[float, ...]] = field(default_factory=dict, repr=False)

    def joint_rows(self, rows: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Positions, velocities and efforts of these rows, shape (len(rows), len(names))."""
        width = len(self.names)
        cache = self._joints
        held: tuple[list[float], list[float], list[float]] = ([0.0] * width,) * 3
        out = []
        for row in rows.tolist():
            values = cache.get(row)
            if values is None:
                values = self._decode_joint(row, width, held)
                cache[row] = values
            held = values
            out.append(values)
        data = np.asarray(out, dtype=np.float64).reshape(len(out), 3, width)
        return data[:, 0], data[:, 1], data[:, 2]

    def _decode_joint(
        self, row: int, width: int, held: tuple[list[float], list[float], list[float]]
    ) -> tuple[list[float], list[float], list[float]]:
        try:
            joints = _JOINTS.decode(self.joint_bodies[row])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problems.append(f"{self.robot_id}: joint state {row} does not decode ({exc})")
            return held
        if not (len(joints.position) == len(joints.velocity) == len(joints.effort) == width):
            self.problems.append(
                f"{self.robot_id}: joint state {row} has {len(joints.position)} values for "
                f"{width} names; the previous state held"
            )
            return held
        return joints.position, joints.velocity, joints.effort

    def base_rows(self, rows: IntArray) -> FloatArray:
        """Base poses (x, y, z, qx, qy, qz, qw) of these rows."""
        cache = self._base
        out: list[tuple[float, ...]] = []
        for row in rows.tolist():
            pose = cache.get(row)
            if pose is None:
                try:
                    decoded = _BASE.decode(self.base_bodies[row]).pose
                    p, q = decoded.position, decoded.orientation
                    pose = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.problems.append(f"{self.robot_id}: base pose {row}: {exc}")
                    pose = out[-1] if out else (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
                cache[row] = pose
            out.append(pose)
        return np.asarray(out, dtype=np.float64).reshape(len(out), 7)


@dataclass
class Part:
    """What one read of a recording (all of it, or a chunk span) holds."""

    robots: dict[str, RobotSeries]
    events: list[tuple[int, Event]]
    complete_chunks: int = 0
    damage: DamageReport | None = None  # what was skipped or cut off (None: not read yet)
    problems: list[str] = field(default_factory=list)
    wanted: set[str] | None = None  # the robots to keep (None: all)
    peek: int = 0  # > 0: keep only the first `peek` joint states of each robot, nothing else
    expect: frozenset[str] = frozenset()  # a peek stops once these robots have `peek` states

    def peeked_enough(self) -> bool:
        if not self.peek or not self.expect:
            return False
        robots = self.robots
        return all(r in robots and len(robots[r].joint_stamp_ns) >= self.peek for r in self.expect)


def layout(path: Path, parts: int) -> Layout:
    """The recording's chunk spans for ``parts`` readers (complete files), or one span over
    the whole file (cut files, read from the start)."""
    catalog = chunk_catalog(path)
    if not catalog.complete or not catalog.chunks:
        return Layout(False, (ChunkSpan(0, path.stat().st_size),))
    chunks = catalog.chunks
    parts = max(1, min(parts, len(chunks)))
    bounds = np.linspace(0, len(chunks), parts + 1).round().astype(int)
    spans = []
    for a, b in itertools.pairwise(bounds):
        if b > a:
            first, last = chunks[a], chunks[b - 1]
            spans.append(ChunkSpan(first.offset, last.offset + last.length))
    return Layout(True, tuple(spans))


def read_part(path: Path, span: ChunkSpan, robots: set[str] | None, complete: bool) -> Part:
    """The robot channels and events of the chunks that start in one span (``complete``:
    the file has a summary; a cut file is read whole, up to the cut)."""
    part = Part({}, [], wanted=robots)
    catalog = _catalog(path)
    if complete != catalog.complete:
        log.info("%s: read as %s", path, "complete" if catalog.complete else "cut")
    _read(path, catalog, span, part)
    return part


def _catalog(path: Path) -> ChunkCatalog:
    with path.open("rb") as stream:
        if stream.read(len(MAGIC)) != MAGIC:
            raise SourceError(f"{path}: not an MCAP file (no MCAP magic at the start)")
    return chunk_catalog(path)


def _read(path: Path, catalog: ChunkCatalog, span: ChunkSpan, part: Part) -> None:
    """Keep the wanted messages of every readable chunk that starts in ``span``."""
    channels: dict[int, tuple[str, str]] = {}
    for channel_id, topic in catalog.topics.items():
        route = _route(topic, part.wanted)
        if route is not None:
            channels[channel_id] = route
    part.damage = catalog.damage
    with path.open("rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for ref in catalog.chunks:
            if not span.start <= ref.offset < span.end:
                continue
            records = checked(catalog, ref, data[ref.offset : ref.offset + ref.length])
            if records is None:
                continue
            _messages(records, channels, part)
            part.complete_chunks += 1
            if part.peeked_enough():
                return


def _route(topic: str, robots: set[str] | None) -> tuple[str, str] | None:
    if topic == "/events":
        return ("events", "")
    _, kind, robot_id = ([*topic.split("/", 2), "", ""])[:3]
    if kind in ROBOT_KINDS and robot_id and (robots is None or robot_id in robots):
        return (kind, robot_id)
    return None


def _channel(
    data: bytes | mmap.mmap,
    body: int,
    channels: dict[int, tuple[str, str]],
    robots: set[str] | None,
) -> None:
    (channel_id,) = _U16.unpack_from(data, body)
    (topic_len,) = _U32.unpack_from(data, body + 4)
    topic = data[body + 8 : body + 8 + topic_len].decode("utf-8", "replace")
    route = _route(topic, robots)
    if route is not None:
        channels[channel_id] = route


def _messages(records: bytes, channels: dict[int, tuple[str, str]], part: Part) -> None:
    """Keep the wanted channels' messages of a run of records (a chunk's, or one message)."""
    pos, size = 0, len(records)
    unpack, u64 = _MESSAGE.unpack_from, _U64.unpack_from
    robots = part.robots
    while pos + 11 <= size:
        opcode, length, channel_id = unpack(records, pos)
        end = pos + 9 + length
        if opcode == _OP_CHANNEL:
            _channel(records, pos + 9, channels, part.wanted)
        elif opcode == _OP_MESSAGE:
            route = channels.get(channel_id)
            if route is not None:
                (log_ns,) = u64(records, pos + 15)
                body = records[pos + 31 : end]
                try:
                    _keep(route, log_ns, body, robots, part)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    part.problems.append(f"{route[0]}/{route[1]} at {log_ns} ns: {exc}")
        pos = end


def _keep(
    route: tuple[str, str], log_ns: int, body: bytes, robots: dict[str, RobotSeries], part: Part
) -> None:
    kind, robot_id = route
    if part.peek:
        if kind == "joints":
            _peek(robot_id, log_ns, body, robots, part.peek)
        return
    if kind == "events":
        part.events.append((log_ns, _EVENT.decode(body)))
        return
    series = robots.get(robot_id)
    if series is None:
        series = robots[robot_id] = RobotSeries(robot_id)
    if kind == "joints":
        if not series.names:
            series.names = _NAMES.decode(body).name
        series.joint_stamp_ns.append(_stamp_ns(body))
        series.joint_log_ns.append(log_ns)
        series.joint_bodies.append(body)
    elif kind == "base":
        series.base_log_ns.append(log_ns)
        series.base_bodies.append(body)
    else:
        series.beat_log_ns.append(log_ns)
        series.beats.append(_BEAT.decode(body))


_STAMP_KEY: Final = b'"stamp_ns":'


def _stamp_ns(body: bytes) -> int:
    """A joint state's ``stamp_ns``, read without parsing the rest of the JSON."""
    at = body.find(_STAMP_KEY)
    if at < 0:
        raise msgspec.ValidationError("joint state without stamp_ns")
    at += len(_STAMP_KEY)
    end = at
    size = len(body)
    while end < size and body[end] not in b",}":
        end += 1
    try:
        return int(body[at:end])
    except ValueError:
        raise msgspec.ValidationError("joint state with a malformed stamp_ns") from None


def _peek(
    robot_id: str, log_ns: int, body: bytes, robots: dict[str, RobotSeries], limit: int
) -> None:
    series = robots.get(robot_id)
    if series is None:
        series = robots[robot_id] = RobotSeries(robot_id, _NAMES.decode(body).name)
    if len(series.joint_stamp_ns) < limit:
        series.joint_log_ns.append(log_ns)
        series.joint_stamp_ns.append(_stamp_ns(body))


@dataclass(frozen=True)
class Peek:
    """What the start of a recording tells before an export: each robot's joint names and
    joint-state rate (from its first states), and how many joint states it recorded (from
    the summary; 0 for a cut file)."""

    names: dict[str, list[str]]
    rate_hz: dict[str, float]
    joint_counts: dict[str, int]
    complete: bool


PEEK_STATES: Final = 64


def peek(path: Path) -> Peek:
    """Joint names, rates and loads of every robot, reading only as far as needed: a complete
    file until each robot of its summary has PEEK_STATES joint states, a cut file through."""
    from mcap.reader import make_reader

    counts: dict[str, int] = {}
    try:
        with path.open("rb") as stream:
            summary = make_reader(stream).get_summary()
    except Exception:
        summary = None
    if summary is not None and summary.statistics is not None:
        per_channel = summary.statistics.channel_message_counts
        for channel_id, channel in summary.channels.items():
            route = _route(channel.topic, None)
            if route is not None and route[0] == "joints":
                counts[route[1]] = counts.get(route[1], 0) + per_channel.get(channel_id, 0)
    catalog = _catalog(path)
    part = Part({}, [], peek=PEEK_STATES, expect=frozenset(r for r, n in counts.items() if n))
    _read(path, catalog, ChunkSpan(0, path.stat().st_size), part)
    rates: dict[str, float] = {}
    for robot_id, series in part.robots.items():
        rates[robot_id] = _mean_rate_hz(series.joint_stamp_ns)
    return Peek(
        {r: list(s.names) for r, s in part.robots.items()},
        rates,
        counts or {r: len(s.joint_stamp_ns) for r, s in part.robots.items()},
        catalog.complete and bool(catalog.chunks),
    )


GAP_INTERVALS: Final = 5.0  # an interval this many times the median is a gap, not jitter


def _mean_rate_hz(stamps_ns: list[int]) -> float:
    """The mean rate over the peeked states (a median interval follows the jitter), leaving
    out gaps (a damaged chunk skipped between them) that would lower it."""
    intervals = np.diff(np.sort(np.asarray(stamps_ns, dtype=np.int64)))
    if not len(intervals):
        return 0.0
    kept = intervals[intervals <= GAP_INTERVALS * np.median(intervals)]
    total_ns = int(kept.sum())
    return len(kept) * 1e9 / total_ns if total_ns > 0 else 0.0


def merge(parts: list[Part]) -> Part:
    """The parts of one recording as one (in file order)."""
    merged = Part({}, [])
    for part in parts:
        for robot_id, series in part.robots.items():
            if robot_id in merged.robots:
                merged.robots[robot_id].extend(series)
            else:
                merged.robots[robot_id] = series
        merged.events += part.events
        merged.complete_chunks += part.complete_chunks
        merged.problems += part.problems
        if part.damage is not None:
            if merged.damage is None:
                merged.damage = DamageReport(part.damage.path, part.damage.start_ns)
            merged.damage.merge(part.damage)
    merged.events.sort(key=lambda pair: pair[0])
    return merged


def arrays(series: RobotSeries) -> Arrays:
    """A robot's series sorted by time; joint times are the robot's stamps plus the median
    receive delay (smooth, where receive times come in bursts); a resent stamp (a restart)
    keeps its first state."""
    stamp = np.asarray(series.joint_stamp_ns, dtype=np.int64)
    received = np.asarray(series.joint_log_ns, dtype=np.int64)
    offset = int(np.median(received - stamp)) if len(stamp) else 0
    order = np.argsort(stamp, kind="stable")
    t_ns = stamp[order] + offset
    if len(t_ns) > 1:
        unique = np.concatenate(([True], np.diff(t_ns) > 0))
        t_ns, order = t_ns[unique], order[unique]
    bodies = series.joint_bodies
    base_t = np.asarray(series.base_log_ns, dtype=np.int64)
    border = np.argsort(base_t, kind="stable")
    beat_t = np.asarray(series.beat_log_ns, dtype=np.int64)
    beat_order = np.argsort(beat_t, kind="stable")
    return Arrays(
        robot_id=series.robot_id,
        names=list(series.names),
        joint_t_ns=t_ns,
        joint_bodies=[bodies[i] for i in order.tolist()],
        base_t_ns=base_t[border],
        base_bodies=[series.base_bodies[i] for i in border.tolist()],
        beat_t_ns=beat_t[beat_order],
        beats=[series.beats[i] for i in beat_order.tolist()],
        clock_offset_ns=offset,
    )


def iter_events(part: Part, kind: str) -> Iterator[tuple[int, Event]]:
    """The part's events of one kind, in time order."""
    for log_ns, event in part.events:
        if event.kind == kind:
            yield log_ns, event
