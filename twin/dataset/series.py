"""What a read of a recording gives an export: each robot's channels as arrays.

:class:`RobotSeries` collects a robot's joint states, base poses and heartbeats chunk by
chunk (one array per chunk, in file order); :func:`arrays` puts them in time order as
:class:`Arrays`, the input of episode cutting and resampling. :class:`Part` is one read
(a whole recording, or the chunks of one span) with its events, damage and problems. The
canonical JSON message shapes an export decodes (joint states as recordings before the
joint-state blocks hold them, base poses, heartbeats, events) are declared here as msgspec
structs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from twin.record.damage import DamageReport

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
NO_POSE: Final = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


class Joints(msgspec.Struct):
    """The fields of a ``/joints/<robot>`` message an export uses."""

    stamp_ns: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


class Names(msgspec.Struct):
    """A joint state's joint names."""

    name: list[str]


class _Stamp(msgspec.Struct):
    sec: int
    nsec: int


class _Vec(msgspec.Struct):
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


class BasePose(msgspec.Struct):
    """A ``/base/<robot>`` message (``foxglove.PoseInFrame``)."""

    timestamp: _Stamp
    pose: _Pose

    def values(self) -> tuple[float, ...]:
        """x, y, z, qx, qy, qz, qw."""
        p, q = self.pose.position, self.pose.orientation
        return (p.x, p.y, p.z, q.x, q.y, q.z, q.w)


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


JOINTS: Final = msgspec.json.Decoder(Joints)
NAMES: Final = msgspec.json.Decoder(Names)
BASE: Final = msgspec.json.Decoder(BasePose)
BEAT: Final = msgspec.json.Decoder(Beat)
BEATS: Final = msgspec.json.Decoder(list[Beat])
EVENT: Final = msgspec.json.Decoder(Event)


@dataclass
class RobotSeries:
    """One robot's recorded channels as read, chunk by chunk in file order (times in ns:
    ``log`` the twin's receive clock, ``stamp`` the robot's own). Joint values are (n, 3,
    joints) in SI units: positions, velocities, efforts; a row of NaN is a state whose
    values did not decode (the previous state holds there). Base poses are (n, 7)."""

    robot_id: str
    names: list[str] = field(default_factory=list)
    joint_log_ns: list[IntArray] = field(default_factory=list)
    joint_stamp_ns: list[IntArray] = field(default_factory=list)
    joint_values: list[FloatArray] = field(default_factory=list)
    base_log_ns: list[IntArray] = field(default_factory=list)
    base_poses: list[FloatArray] = field(default_factory=list)
    beat_log_ns: list[int] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)

    def joint_count(self) -> int:
        return sum(len(a) for a in self.joint_stamp_ns)

    def extend(self, other: RobotSeries) -> None:
        if not self.names:
            self.names = other.names
        self.joint_log_ns += other.joint_log_ns
        self.joint_stamp_ns += other.joint_stamp_ns
        self.joint_values += other.joint_values
        self.base_log_ns += other.base_log_ns
        self.base_poses += other.base_poses
        self.beat_log_ns += other.beat_log_ns
        self.beats += other.beats


@dataclass
class Arrays:
    """A robot's series in time order."""

    robot_id: str
    names: list[str]
    joint_t_ns: IntArray  # the robot's stamps moved onto the twin's clock
    joints: FloatArray  # (n, 3, len(names)): positions, velocities, efforts
    base_t_ns: IntArray
    base: FloatArray  # (n, 7)
    beat_t_ns: IntArray
    beats: list[Beat]
    clock_offset_ns: int  # median (receive - stamp) of the joint states
    beat_grip: FloatArray = field(init=False)  # per heartbeat: 1.0 grip closed
    beat_running: npt.NDArray[np.bool_] = field(init=False)  # per heartbeat: mode running

    def __post_init__(self) -> None:
        self.beat_grip = np.array([b.grip_closed for b in self.beats], dtype=np.float64)
        self.beat_running = np.array([b.mode == "running" for b in self.beats], dtype=bool)

    def joint_rows(self, rows: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Positions, velocities and efforts of these rows, shape (len(rows), len(names))."""
        data = self.joints[rows]
        return data[:, 0], data[:, 1], data[:, 2]

    def base_rows(self, rows: IntArray) -> FloatArray:
        """Base poses (x, y, z, qx, qy, qz, qw) of these rows."""
        out: FloatArray = self.base[rows]
        return out


@dataclass
class Part:
    """What one read of a recording (all of it, or a chunk span) holds."""

    robots: dict[str, RobotSeries]
    events: list[tuple[int, Event]]
    complete_chunks: int = 0
    damage: DamageReport | None = None  # what was skipped or cut off (None: not read yet)
    problems: list[str] = field(default_factory=list)
    wanted: set[str] | None = None  # the robots to keep (None: all)
    blocks: int = 0  # (chunk, robot) reads of joint-state blocks
    bulk: int = 0  # (chunk, channel) reads decoded in bulk from the raw frames
    canonical: int = 0  # ... decoded message by message from the canonical JSON
    peek: int = 0  # > 0: keep only the first `peek` joint stamps of each robot, nothing else
    expect: frozenset[str] = frozenset()  # a peek stops once these robots have `peek` states

    def when(self, log_ns: int) -> str:
        """A receive time as a warning gives it: seconds into the recording, as the damage
        line counts them (nanoseconds where the recording's start is not known)."""
        start = self.damage.start_ns if self.damage is not None else None
        return f"t {(log_ns - start) / 1e9:.2f} s" if start is not None else f"{log_ns} ns"

    def peeked_enough(self) -> bool:
        if not self.peek or not self.expect:
            return False
        robots = self.robots
        return all(r in robots and robots[r].joint_count() >= self.peek for r in self.expect)


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
        merged.blocks += part.blocks
        merged.bulk += part.bulk
        merged.canonical += part.canonical
        if part.damage is not None:
            if merged.damage is None:
                merged.damage = DamageReport(part.damage.path, part.damage.start_ns)
            merged.damage.merge(part.damage)
    merged.events.sort(key=lambda pair: pair[0])
    return merged


def _joined(chunks: list[Any], shape: tuple[int, ...], dtype: type) -> Any:
    """The chunks' arrays as one (no copy for a single chunk)."""
    if not chunks:
        return np.zeros((0, *shape), dtype=dtype)
    joined = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return joined.astype(dtype, copy=False)


def _held(values: FloatArray, first: tuple[float, ...] | float) -> FloatArray:
    """Rows of NaN (values that did not decode) replaced by the row before (``first``
    before any)."""
    flat = values.reshape(len(values), -1)
    if not flat.shape[1]:
        return values
    maybe = np.flatnonzero(np.isnan(flat[:, 0]))  # a NaN row is NaN throughout
    if not len(maybe) or not np.isnan(flat[maybe]).all(axis=1).any():
        return values
    bad = np.isnan(flat).all(axis=1)
    good = np.where(~bad, np.arange(len(flat)), -1)
    source = np.maximum.accumulate(good)
    out = flat[np.maximum(source, 0)].copy()
    out[source < 0] = first
    shaped: FloatArray = out.reshape(values.shape)
    return shaped


def _ordered(values: Any, order: IntArray) -> Any:
    """``values[order]``, without the copy when the order is the identity."""
    if len(order) == len(values) and bool((np.diff(order) == 1).all()):
        return values
    return values[order]


def arrays(series: RobotSeries) -> Arrays:
    """A robot's series sorted by time; joint times are the robot's stamps plus the median
    receive delay (smooth, where receive times come in bursts); a resent stamp (a restart)
    keeps its first state."""
    width = len(series.names)
    stamp = _joined(series.joint_stamp_ns, (), np.int64)
    received = _joined(series.joint_log_ns, (), np.int64)
    offset = int(np.median(received - stamp)) if len(stamp) else 0
    order = np.argsort(stamp, kind="stable")
    t_ns = stamp[order] + offset
    if len(t_ns) > 1:
        unique = np.concatenate(([True], np.diff(t_ns) > 0))
        t_ns, order = t_ns[unique], order[unique]
    joints = _joined(series.joint_values, (3, width), np.float64)
    base_t = _joined(series.base_log_ns, (), np.int64)
    border = np.argsort(base_t, kind="stable")
    base = _joined(series.base_poses, (7,), np.float64)
    beat_t = np.asarray(series.beat_log_ns, dtype=np.int64)
    beat_order = np.argsort(beat_t, kind="stable")
    return Arrays(
        robot_id=series.robot_id,
        names=list(series.names),
        joint_t_ns=t_ns,
        joints=_held(_ordered(joints, order), 0.0),
        base_t_ns=base_t[border],
        base=_held(_ordered(base, border), NO_POSE),
        beat_t_ns=beat_t[beat_order],
        beats=[series.beats[i] for i in beat_order.tolist()],
        clock_offset_ns=offset,
    )


def iter_events(part: Part, kind: str) -> Iterator[tuple[int, Event]]:
    """The part's events of one kind, in time order."""
    for log_ns, event in part.events:
        if event.kind == kind:
            yield log_ns, event
