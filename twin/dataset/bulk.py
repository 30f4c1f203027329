"""Finding and decoding a chunk's messages in bulk, with numpy, for a dataset export.

A recorded chunk holds thousands of messages a second of the hall; touching each one in
Python costs more than the export may spend. So a chunk's messages are found through its
message indexes (one ``(log time, offset)`` array per channel, read with
``np.frombuffer``; a chunk without them, in a cut file, is walked record by record), every
message's header is gathered at once and checked (opcode, channel, length), and the
fixed-layout raw vendor frames are decoded as arrays:

* base states (``/raw/base/<robot>``): the MessagePack map's position and orientation,
  kept where :func:`sync.protocol.decode_payload` would accept the frame;
* joint states (``/raw/js/<robot>``), for recordings whose ``/joints`` channels hold a JSON
  message per state (those made before the joint-state blocks, which are read as they are:
  :mod:`twin.dataset.canonical`), with the robot's codec (:mod:`sync.codecs`): packed
  float32 or float64 frames viewed as ``(n, 3, joints)``, MessagePack maps read through
  their common layout (:mod:`sync.msgpack_layout`), then scaled to SI exactly as
  the recorder scaled and rounded them for the canonical JSON
  (:func:`twin.record.schemas.canonical_joints`), and kept only where the recorder would
  have written JSON (finite values).

A frame of another shape is decoded on its own by the same code the recorder used. The
caller (:mod:`twin.dataset.chunk_reader`) checks each chunk's bulk result against the
canonical JSON channel beside it (same count, same first and last values) and reads the
JSON instead where they differ, so the export's values are the recording's canonical ones
either way.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Final

import numpy as np
import numpy.typing as npt
from mcap.data_stream import ReadDataStream
from mcap.records import Channel, Schema

from sync import msgpack_layout as mp
from sync.codecs import VendorCodec
from sync.protocol import (
    HEADER_SIZE,
    MAX_COORDINATE_M,
    QUATERNION_NORM_TOLERANCE,
    BaseState,
    FrameError,
    Kind,
    decode_payload,
)
from twin.record.schemas import canonical_joints, joint_steps

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]

OP_SCHEMA: Final = 0x03
OP_CHANNEL: Final = 0x04
OP_MESSAGE: Final = 0x05
OP_MESSAGE_INDEX: Final = 0x07
MESSAGE_HEAD: Final = 31  # opcode, length, channel id, sequence, log time, publish time
_HEAD: Final = np.dtype(
    [
        ("opcode", "u1"),
        ("length", "<u8"),
        ("channel", "<u2"),
        ("sequence", "<u4"),
        ("log", "<u8"),
        ("publish", "<u8"),
    ]
)
_RECORD: Final = struct.Struct("<BQ")
_INDEX_HEAD: Final = struct.Struct("<HI")  # channel id, entries' byte length
BASE_FIELDS: Final = (
    ("position_m", 3),
    ("orientation_xyzw", 4),
    ("linear_velocity_m_s", 3),
    ("angular_velocity_rad_s", 3),
    ("linear_acceleration_m_s2", 3),
)


@dataclass(frozen=True)
class Located:
    """Messages of one channel in a chunk's records, in file order."""

    log_ns: IntArray
    publish_ns: IntArray
    start: IntArray  # of each message's body in the records
    length: IntArray  # of each body

    def __len__(self) -> int:
        return len(self.start)

    def body(self, records: bytes, i: int) -> bytes:
        start = int(self.start[i])
        return records[start : start + int(self.length[i])]


EMPTY: Final = Located(*(np.zeros(0, dtype=np.int64) for _ in range(4)))


def index_offsets(region: bytes, wanted: Collection[int]) -> dict[int, IntArray] | None:
    """The offsets of the wanted channels' messages from a chunk's message index records
    (None: the region does not parse as message indexes)."""
    out: dict[int, IntArray] = {}
    pos, size = 0, len(region)
    while pos < size:
        if pos + 9 + _INDEX_HEAD.size > size:
            return None
        opcode, length = _RECORD.unpack_from(region, pos)
        if opcode != OP_MESSAGE_INDEX or pos + 9 + length > size:
            return None
        channel, entry_bytes = _INDEX_HEAD.unpack_from(region, pos + 9)
        if entry_bytes % 16 or _INDEX_HEAD.size + entry_bytes != length:
            return None
        if channel in wanted:
            entries = np.frombuffer(region, dtype="<u8", count=entry_bytes // 8, offset=pos + 15)
            out[channel] = np.sort(entries[1::2].astype(np.int64))
        pos += 9 + length
    return out


def walk_offsets(
    records: bytes, wanted: Collection[int]
) -> tuple[dict[int, IntArray], list[Channel | Schema]]:
    """The wanted channels' message offsets found by walking the records one by one (a
    chunk without message indexes), and the schemas and channels defined among them (a
    record that does not parse is left out)."""
    found: dict[int, list[int]] = {}
    defined: list[Channel | Schema] = []
    pos, size = 0, len(records)
    while pos + 11 <= size:
        opcode, length = _RECORD.unpack_from(records, pos)
        (channel,) = struct.unpack_from("<H", records, pos + 9)
        if opcode == OP_MESSAGE and channel in wanted:
            found.setdefault(channel, []).append(pos)
        elif opcode in (OP_CHANNEL, OP_SCHEMA):
            kind = Channel if opcode == OP_CHANNEL else Schema
            try:
                defined.append(
                    kind.read(ReadDataStream(BytesIO(records[pos + 9 : pos + 9 + length])))
                )
            except Exception as exc:  # a damaged record: its channel's messages are not read
                log.info("a %s record in a chunk does not parse (%r)", kind.__name__, exc)
        pos += 9 + length
    return {c: np.asarray(o, dtype=np.int64) for c, o in found.items()}, defined


def gather(buf: U8Array, starts: IntArray, width: int) -> U8Array:
    """``width`` bytes from each start, as rows (n, width) (one copy of each row, taken
    through a view of the buffer as overlapping rows)."""
    if not len(starts) or width > len(buf):
        return np.zeros((0, width), dtype=np.uint8)
    windows: U8Array = np.ndarray(
        (len(buf) - width + 1, width), dtype=np.uint8, buffer=buf, strides=(1, 1)
    )
    return windows[starts]


def locate(buf: U8Array, offsets: IntArray, channel: int) -> Located | None:
    """The messages at these record offsets (None: an offset that is not a whole message of
    ``channel``, e.g. a damaged index)."""
    found = locate_all(buf, {channel: offsets})
    return None if found is None else found[channel]


def locate_all(buf: U8Array, offsets: Mapping[int, IntArray]) -> dict[int, Located] | None:
    """:func:`locate` for several channels at once (None: any offset does not hold)."""
    channels = list(offsets)
    counts = [len(offsets[c]) for c in channels]
    total = sum(counts)
    if not total:
        return {c: EMPTY for c in channels}
    at = np.concatenate([offsets[c] for c in channels])
    size = len(buf)
    if int(at.min()) < 0 or int(at.max()) + MESSAGE_HEAD > size:
        return None
    head = gather(buf, at, MESSAGE_HEAD).view(_HEAD)[:, 0]
    length = head["length"].astype(np.int64)
    expected = np.repeat(np.asarray(channels, dtype=np.int64), counts)
    ok = (
        (head["opcode"] == OP_MESSAGE)
        & (head["channel"] == expected)
        & (length >= MESSAGE_HEAD - 9)
        & (at + 9 + length <= size)
    )
    if not ok.all():
        return None
    log_ns = head["log"].astype(np.int64)
    publish_ns = head["publish"].astype(np.int64)
    start = at + MESSAGE_HEAD
    body = length - (MESSAGE_HEAD - 9)
    out: dict[int, Located] = {}
    begin = 0
    for channel, count in zip(channels, counts, strict=True):
        end = begin + count
        out[channel] = Located(
            log_ns[begin:end], publish_ns[begin:end], start[begin:end], body[begin:end]
        )
        begin = end
    return out


class JointDecoder:
    """A robot's raw joint-state frames to SI values, as the recorder wrote them as JSON."""

    def __init__(self, codec: VendorCodec) -> None:
        self.codec = codec
        self.width = len(codec.names)
        unit = codec.to_sample(np.ones((3, self.width)))
        self.steps = joint_steps(np.stack([unit.positions, unit.velocities, unit.efforts]))
        packed = {"packed_f32": "<f4", "packed_deg_f64": "<f8"}.get(codec.encoding)
        self.dtype = np.dtype(packed) if packed else None
        self.paths: list[mp.Path] = [(n, k) for k in range(3) for n in codec.names]
        self.plan: mp.Plan | None = None  # a map encoding's layout, from its first frame
        self.tried = False
        self.slow = 0  # frames decoded one by one

    def decode(self, buf: U8Array, records: bytes, found: Located) -> tuple[BoolArray, FloatArray]:
        """Which frames the recorder kept (finite, well-formed), and their values (n, 3,
        joints) in SI units (rows not kept: undefined)."""
        n, width = len(found), self.width
        payload_start = found.start + HEADER_SIZE
        payload_len = found.length - HEADER_SIZE
        if self.dtype is not None:
            size = 3 * width * self.dtype.itemsize
            fast = payload_len == size
            if fast.all():  # the usual case: every frame of the packed size
                wire_fast = gather(buf, payload_start, size).view(self.dtype).reshape(n, 3, width)
                keep: BoolArray = np.isfinite(wire_fast).all(axis=(1, 2))
                return keep, canonical_joints(wire_fast, self.steps)
            wire = np.zeros((n, 3, width), dtype=np.float64)
            if fast.any():
                rows = gather(buf, payload_start[fast], size)
                wire[fast] = rows.view(self.dtype).reshape(-1, 3, width)
        else:
            wire = np.zeros((n, 3, width), dtype=np.float64)
            fast = self._map(buf, records, found, wire)
        keep = fast.copy()
        for i in np.flatnonzero(~fast).tolist():
            start = int(payload_start[i])
            payload = records[start : start + int(payload_len[i])]
            self.slow += 1
            try:
                wire[i] = self.codec.check(payload)
                keep[i] = True
            except FrameError:
                keep[i] = False
        keep &= np.isfinite(wire).all(axis=(1, 2))
        return keep, canonical_joints(wire, self.steps)

    def _map(self, buf: U8Array, records: bytes, found: Located, wire: FloatArray) -> BoolArray:
        fast = np.zeros(len(found), dtype=bool)
        if not len(found):
            return fast
        payload_start = found.start + HEADER_SIZE
        payload_len = found.length - HEADER_SIZE
        if self.plan is None and not self.tried:
            self.tried = True
            start = int(payload_start[0])
            layout = mp.layout_of(records[start : start + int(payload_len[0])])
            usable = _usable(layout, set(self.paths))
            self.plan = mp.plan(usable, self.paths) if usable is not None else None
        how = self.plan
        if how is None:
            return fast
        sized = payload_len == how.layout.size
        if sized.any():
            rows = gather(buf, payload_start[sized], how.layout.size)
            same, values = mp.extract(rows, how)
            at = np.flatnonzero(sized)[same]
            fast[at] = True
            wire[at] = values[same].reshape(-1, 3, self.width)
        return fast


_BASE_PATHS: Final[list[mp.Path]] = [(name, i) for name, n in BASE_FIELDS for i in range(n)]


class BaseDecoder:
    """Raw base-state frames to poses (x, y, z, qx, qy, qz, qw), as the recorder's JSON."""

    def __init__(self) -> None:
        self.plans: dict[int, mp.Plan | None] = {}  # payload size -> its first frame's layout
        self.slow = 0

    def _plan(self, records: bytes, start: int, size: int) -> mp.Plan | None:
        if size not in self.plans:
            usable = _usable(mp.layout_of(records[start : start + size]), set(_BASE_PATHS))
            self.plans[size] = mp.plan(usable, _BASE_PATHS) if usable is not None else None
        return self.plans[size]

    def decode(self, buf: U8Array, records: bytes, found: Located) -> tuple[BoolArray, FloatArray]:
        """Which frames the recorder kept (they decode and pass its checks), and their poses."""
        n = len(found)
        values = np.zeros((n, len(_BASE_PATHS)), dtype=np.float64)
        fast = np.zeros(n, dtype=bool)
        payload_start = found.start + HEADER_SIZE
        payload_len = found.length - HEADER_SIZE
        how = self._plan(records, int(payload_start[0]), int(payload_len[0])) if n else None
        if how is not None:
            sized = payload_len == how.layout.size
            rows = gather(buf, payload_start[sized], how.layout.size)
            same, got = mp.extract(rows, how)
            at = np.flatnonzero(sized)[same]
            fast[at] = True
            values[at] = got[same]
        keep = fast & _accepted(values)
        for i in np.flatnonzero(~fast).tolist():
            start = int(payload_start[i])
            self.slow += 1
            try:
                state = decode_payload(Kind.BASE, records[start : start + int(payload_len[i])])
            except FrameError:
                continue
            if isinstance(state, BaseState):
                values[i, :7] = (*state.position_m, *state.orientation_xyzw)
                keep[i] = True
        return keep, values[:, :7]


def _accepted(values: FloatArray) -> BoolArray:
    """The rows :func:`sync.protocol.decode_payload` accepts: finite, inside the hall's
    coordinate limit, a unit quaternion (its norm summed in the same order)."""
    q = values[:, 3:7]
    norm = np.sqrt(
        ((q[:, 0] * q[:, 0] + q[:, 1] * q[:, 1]) + q[:, 2] * q[:, 2]) + q[:, 3] * q[:, 3]
    )
    ok: BoolArray = (
        np.isfinite(values).all(axis=1)
        & (np.abs(values[:, :3]) <= MAX_COORDINATE_M).all(axis=1)
        & (np.abs(norm - 1.0) <= QUATERNION_NORM_TOLERANCE)
    )
    return ok


def _usable(layout: mp.Layout | None, paths: set[mp.Path]) -> mp.Layout | None:
    """The layout if its numbers are exactly ``paths`` (no more, none missing); a frame
    with an extra or missing value must go through the decoder that refuses it."""
    if layout is None:
        return None
    numbers = set(layout.leaves)
    tops = {p[0] for p in paths}
    under = {p for p in numbers if p and p[0] in tops}
    return layout if under == paths and len(numbers) == len(paths) else None
