"""The compact canonical joint states: one ``/joints/<robot>`` message per block of states.

A robot sends up to 500 joint states a second. Written one message each (JSON, or even
protobuf) they were 0.8 GB per robot-hour and cost the recorder ~20 µs of CPU each. So the
recorder keeps each robot's accepted states as they come (a list append; the payload is
viewed, not decoded) and writes them as one **block** at each flush (about a second, at
most :data:`BLOCK_MAX_STATES` states): a MessagePack map (:class:`JointBlock`, message
encoding ``msgpack``, schema ``hall_twin.JointBlock``) of columns, converted to SI and
rounded in one numpy pass for the whole block.

A column (:class:`Column`) is ``(count,)`` or ``(count, joints)`` values, row-major:

- ``delta``: integers ``k`` (the value is ``k / scale``): the first row as little-endian
  int64 (``base``), then each later row minus the one before, zigzag-coded
  (``(d << 1) ^ (d >> 63)``) as unsigned integers of ``width`` bytes (4, or 8 where some
  difference needs it), stored as byte planes (every value's first byte, then every
  value's second byte, ...: ``data``). Joint positions are rounded to 1e-6 rad
  (``scale`` 1e6), velocities to 1e-5 rad/s, efforts to 1e-4 N*m (prismatic: m, m/s, N),
  as :data:`twin.record.schemas.JOINT_STEPS` says and the JSON channel always did; times,
  sequence numbers and epochs are exact (``scale`` 1). Deltas of noisy sensor values take
  about two bytes, the planes put the bytes that are nearly always 0x00 or 0xFF together,
  and the chunk's zstd does the rest: about 0.17 GB per robot-hour for a 32-joint robot at
  275 Hz with sensor noise.
- ``f8``: little-endian float64 values, for a block whose values do not fit the above (not
  finite, or beyond 2**53 steps): nothing is lost, only less compact.

Decoding gives exactly the doubles the recorder's rounding made (``k / 1e6`` is the double
nearest the decimal, as in the JSON channel), but for the sign of zero: a value rounded to
zero from below reads ``0.0``, where the JSON held ``-0.0`` (equal values).
:func:`decode_block` checks every length before reading, so a damaged or forged block is
one :class:`BlockError`, never a crash or an unbounded allocation. :func:`joint_states`
unrolls a ``/joints/<robot>`` message of either encoding (the block, or the JSON message per
state that older recordings hold) into :class:`~twin.record.schemas.JointMsg` values with
their receive times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final, Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray

from sync.protocol import HEADER, MAGIC, PROTOCOL_VERSION, Kind
from twin.record.schemas import JOINT_STEPS, JointMsg

BLOCK_SCHEMA: Final = "hall_twin.JointBlock"
BLOCK_ENCODING: Final = "msgpack"
JSON_SCHEMA: Final = "hall_twin.JointState"
BLOCK_MAX_STATES: Final = 2048
"""A robot's buffer is written as a block when it holds this many states (else at flush)."""
MAX_JOINTS: Final = 1024
_EXACT: Final = float(2**53)
_U64: Final = 2**64
_SCALES: Final = tuple(float(s) for s in JOINT_STEPS[:, 0])  # position, velocity, effort

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


class BlockError(ValueError):
    """A ``/joints/<robot>`` block that does not decode (damaged or forged): says why."""


class Column(msgspec.Struct, forbid_unknown_fields=False):
    """One field of a block: see the module docstring."""

    encoding: str  # "delta" or "f8"
    data: bytes
    scale: float = 1.0
    width: int = 0  # delta: bytes a difference
    base: bytes = b""  # delta: the first row, int64


class JointBlock(msgspec.Struct, forbid_unknown_fields=False):
    """The ``/joints/<robot>`` message: ``count`` joint states of one robot, in the order
    received (times in ns: receive time, the sender's stamp)."""

    robot: str
    name: list[str]
    count: int
    log_time_ns: Column
    stamp_ns: Column
    seq: Column
    epoch: Column
    position: Column
    velocity: Column
    effort: Column


@dataclass(frozen=True)
class JointRows:
    """A decoded block: ``count`` rows; positions, velocities, efforts ``(count, joints)``."""

    robot: str
    names: list[str]
    log_time_ns: IntArray
    stamp_ns: IntArray
    seq: IntArray
    epoch: IntArray
    position: FloatArray
    velocity: FloatArray
    effort: FloatArray

    def __len__(self) -> int:
        return len(self.log_time_ns)

    def message(self, row: int) -> JointMsg:
        """Row ``row`` as the canonical message."""
        return JointMsg(
            self.robot, self.names, int(self.stamp_ns[row]) % _U64, int(self.seq[row]) % _U64,
            int(self.epoch[row]) % _U64, self.position[row].tolist(), self.velocity[row].tolist(),
            self.effort[row].tolist(),
        )  # fmt: skip


_encode: Final = msgspec.msgpack.Encoder().encode
_decode: Final = msgspec.msgpack.Decoder(JointBlock).decode


def _byte_planes(values: NDArray[Any], width: int) -> NDArray[np.uint8]:
    """``(columns, count)`` unsigned values as ``(columns, width, count)`` bytes: byte 0 of
    every value, then byte 1, ... (shifts into one buffer, far faster than a byte
    transpose)."""
    planes = np.empty((values.shape[0], width, values.shape[1]), dtype=np.uint8)
    shifted = np.empty_like(values)
    planes[:, 0] = values  # integer assignment keeps the low byte
    for b in range(1, width):
        np.right_shift(values, values.dtype.type(8 * b), out=shifted)
        planes[:, b] = shifted
    return planes


def _delta(k: IntArray, scale: float) -> Column:
    """Integers (rows first) as a ``delta`` column (``i8``, plain int64, where a difference
    is beyond what zigzag coding keeps)."""
    base = k[:1]
    d = np.diff(k, axis=0)
    if d.size and (int(d.max()) >= 2**62 or int(d.min()) < -(2**62)):
        return Column("i8", k.astype("<i8").tobytes(), scale)
    z = d << 1
    z ^= d >> 63
    flat = z.reshape(-1).view(np.uint64)
    width = 4 if not flat.size or int(flat.max()) < 2**32 else 8
    planes = _byte_planes(flat[None], width)
    return Column("delta", planes.tobytes(), scale, width, base.astype("<i8").tobytes())


def _steps(k: FloatArray, scale: float) -> Column:
    """Values as whole steps of 1/``scale`` (floats already rounded to whole numbers) as a
    ``delta`` column, or as the doubles ``k / scale`` where some do not fit."""
    if np.isfinite(k).all() and (not k.size or float(np.abs(k).max()) < _EXACT):
        return _delta(k.astype(np.int64), scale)
    return Column("f8", (k / scale).astype("<f8").tobytes(), scale)


def _exact_columns(*columns: IntArray) -> list[Column]:
    """``(count,)`` integer columns (times, sequence numbers, epochs) as ``delta`` columns
    of scale 1, the columns :func:`_delta` gives each, made together: one difference, one
    zigzag and one range check for all (a dozen numpy calls a block instead of fifty)."""
    k = np.stack(columns)  # (columns, count)
    if k.shape[1] < 2:
        return [_delta(c, 1.0) for c in columns]
    d = np.diff(k, axis=1)
    if int(d.max()) >= 2**62 or int(d.min()) < -(2**62):  # some column needs "i8"
        return [_delta(c, 1.0) for c in columns]
    z = d << 1
    z ^= d >> 63
    flat = z.view(np.uint64)
    widths = np.where(flat.max(axis=1) < 2**32, 4, 8).tolist()
    planes = _byte_planes(flat, max(widths))
    first = k[:, 0].astype("<i8")
    return [
        Column("delta", planes[i, :width].tobytes(), 1.0, width, first[i : i + 1].tobytes())
        for i, width in enumerate(widths)
    ]


def _step_columns(k: FloatArray) -> list[Column]:
    """The three value columns of ``(count, 3, joints)`` whole steps, the columns
    :func:`_steps` gives each, made together where every difference fits in four bytes
    (nearly always): the differences taken once for all (as doubles: exact, the steps
    being whole numbers under 2**53), zigzag-coded as 32-bit integers (the low half of the
    64-bit code, all of it for differences in int32's range) and split into byte planes
    for all three at once."""
    if len(k) < 2 or not k.size or not (k.max() < _EXACT and k.min() > -_EXACT):  # NaN: False
        return [_steps(np.ascontiguousarray(k[:, i]), _SCALES[i]) for i in range(3)]
    d = k[1:] - k[:-1]
    if not (d.max() < 2.0**31 and d.min() >= -(2.0**31)):  # some column is 8 bytes wide
        return [_steps(np.ascontiguousarray(k[:, i]), _SCALES[i]) for i in range(3)]
    small = d.astype(np.int32)
    z = small << 1
    z ^= small >> 31
    by_column = np.ascontiguousarray(z.transpose(1, 0, 2)).reshape(3, -1)
    planes = _byte_planes(by_column, 4)
    first = k[0].astype("<i8")
    return [
        Column("delta", planes[i].tobytes(), _SCALES[i], 4, first[i].tobytes()) for i in range(3)
    ]


def _values(si: FloatArray, scale: float) -> Column:
    """SI values (already rounded to 1/scale) as integer steps, or as doubles where they do
    not fit."""
    k = si * scale
    np.rint(k, out=k)
    if np.isfinite(k).all() and (not k.size or float(np.abs(k).max()) < _EXACT):
        return _delta(k.astype(np.int64), scale)
    return Column("f8", si.astype("<f8").tobytes(), scale)


def encode_block(
    robot: str,
    names: list[str],
    log_time_ns: IntArray,
    stamp_ns: IntArray,
    seq: IntArray,
    epoch: IntArray,
    values: FloatArray,
    *,
    as_steps: bool = False,
) -> bytes:
    """One block: ``values`` is ``(count, 3, joints)``, SI values rounded as
    :func:`twin.record.schemas.canonical_joints` rounds them, or with ``as_steps`` their
    whole steps of :data:`JOINT_STEPS` (``rint(wire * si_steps)``, what the recorder has: the
    same block without the round trip through SI; a value decodes to ``steps /
    JOINT_STEPS``, the canonical double)."""
    if as_steps:
        columns = _step_columns(values)
    else:
        columns = [_values(np.ascontiguousarray(values[:, i]), _SCALES[i]) for i in range(3)]
    return _encode(
        JointBlock(
            robot, names, len(log_time_ns), *_exact_columns(log_time_ns, stamp_ns, seq, epoch),
            *columns,
        )
    )  # fmt: skip


_FEW_VALUES: Final = 1024


def _ints(column: Column, shape: tuple[int, ...], what: str) -> IntArray:
    rows, cols = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    if column.encoding == "i8":
        if len(column.data) != 8 * rows * cols:
            raise BlockError(f"{what}: {len(column.data)} bytes of int64, not {8 * rows * cols}")
        return np.frombuffer(column.data, dtype="<i8").astype(np.int64).reshape(shape)
    if column.encoding != "delta":
        raise BlockError(f"{what}: encoding {column.encoding!r} where integers belong")
    width = column.width
    if width not in (4, 8):
        raise BlockError(f"{what}: width {width} (4 or 8)")
    if len(column.base) != 8 * cols:
        raise BlockError(f"{what}: first row of {len(column.base)} bytes, not {8 * cols}")
    if len(column.data) != width * (rows - 1) * cols:
        raise BlockError(
            f"{what}: {len(column.data)} bytes of differences, not {width * (rows - 1) * cols}"
        )
    # Decoded column by column: the differences are zigzag-decoded in their own width, laid
    # out one column a row (a transposed copy) and summed along the rows there, which is
    # about twice as fast as a running sum down the rows of a row-major array.
    kt = np.empty((cols, rows), dtype=np.int64)
    kt[:, 0] = np.frombuffer(column.base, dtype="<i8")
    if rows > 1:
        unsigned, signed = (np.uint32, np.int32) if width == 4 else (np.uint64, np.int64)
        planes = np.frombuffer(column.data, dtype=np.uint8).reshape(width, -1)
        z: NDArray[np.unsignedinteger[Any]]
        if planes.shape[1] <= _FEW_VALUES:  # few: fewer calls beat less work
            # a copy: for one value the transpose is contiguous already, a read-only view
            little = planes.T.copy().view(f"<u{width}").reshape(-1)
            z = little.astype(unsigned, copy=False)
        else:
            z = planes[0].astype(unsigned)
            for i in range(1, width):
                z |= planes[i].astype(unsigned) << unsigned(8 * i)
        sign = z & unsigned(1)
        np.negative(sign, out=sign)  # 0 or all ones
        z >>= unsigned(1)
        z ^= sign  # (z >> 1) ^ -(z & 1): the signed difference, in two's complement
        kt[:, 1:] = z.view(signed).reshape(rows - 1, cols).T
        np.cumsum(kt, axis=1, out=kt)
    return kt.T.reshape(shape)


def _floats(column: Column, shape: tuple[int, ...], what: str) -> FloatArray:
    if column.encoding == "f8":
        size = int(np.prod(shape, dtype=np.int64))
        if len(column.data) != 8 * size:
            raise BlockError(f"{what}: {len(column.data)} bytes of doubles, not {8 * size}")
        return np.frombuffer(column.data, dtype="<f8").astype(np.float64).reshape(shape)
    if not (column.scale > 0 and np.isfinite(column.scale)):
        raise BlockError(f"{what}: scale {column.scale!r}")
    values: FloatArray = np.divide(_ints(column, shape, what), column.scale, out=np.empty(shape))
    return values


def decode_block(data: bytes | memoryview) -> JointRows:
    """A ``/joints/<robot>`` block's rows; BlockError if it is damaged or forged."""
    try:
        block = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BlockError(f"not a joint block ({exc})") from None
    count, joints = block.count, len(block.name)
    if not 1 <= count <= 16 * BLOCK_MAX_STATES:
        raise BlockError(f"a block of {count} states")
    if joints > MAX_JOINTS:
        raise BlockError(f"a block of {joints} joints")
    rows = (count,)
    shape = (count, joints)
    return JointRows(
        block.robot,
        block.name,
        _ints(block.log_time_ns, rows, "log_time_ns"),
        _ints(block.stamp_ns, rows, "stamp_ns"),
        _ints(block.seq, rows, "seq"),
        _ints(block.epoch, rows, "epoch"),
        _floats(block.position, shape, "position"),
        _floats(block.velocity, shape, "velocity"),
        _floats(block.effort, shape, "effort"),
    )


def block_log_times(data: bytes | memoryview) -> IntArray:
    """Only the receive times of a block's states (what an index needs)."""
    try:
        block = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BlockError(f"not a joint block ({exc})") from None
    if not 1 <= block.count <= 16 * BLOCK_MAX_STATES:
        raise BlockError(f"a block of {block.count} states")
    return _ints(block.log_time_ns, (block.count,), "log_time_ns")


_decode_json: Final = msgspec.json.Decoder(JointMsg).decode


def is_block(schema_name: str, message_encoding: str) -> bool:
    """Whether a ``/joints/<robot>`` channel holds blocks (else a JSON message a state)."""
    return schema_name == BLOCK_SCHEMA or message_encoding == BLOCK_ENCODING


def joint_states(
    data: bytes | memoryview, log_time_ns: int, block: bool
) -> Iterator[tuple[int, JointMsg]]:
    """The states of one ``/joints/<robot>`` message with their receive times: a block's
    rows, or the one JSON message (``block`` False). BlockError (a ValueError) or
    msgspec.DecodeError if it does not decode."""
    if not block:
        yield log_time_ns, _decode_json(data)
        return
    rows = decode_block(data)
    for row, t_ns in enumerate(rows.log_time_ns.tolist()):
        yield t_ns, rows.message(row)


class _Message(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def log_time_ns(self) -> int: ...
    @property
    def schema_name(self) -> str: ...
    @property
    def message_encoding(self) -> str: ...


def recorded_states(message: _Message) -> Iterator[tuple[int, JointMsg]]:
    """:func:`joint_states` of a :class:`twin.record.recording.RecordedMessage` of a
    ``/joints/<robot>`` channel (either encoding)."""
    block = is_block(message.schema_name, message.message_encoding)
    return joint_states(message.data, message.log_time_ns, block)


_HEADER: Final = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("kind", "u1"),
        ("reserved", "<u4"),
        ("seq", "<u8"),
        ("stamp_ns", "<i8"),
        ("epoch", "<u8"),
    ]
)  # sync.protocol.HEADER, as numpy reads a run of them


class BlockBuffer:
    """One robot's accepted joint states waiting for their block (the recorder's side).

    A state costs a share of three list extends or appends: its receive time, its 32-byte
    wire header and its values, as they came (:meth:`extend`, or :meth:`extenders` in a
    caller's loop: the payload's bytes, not even decoded; :meth:`add`: the (3, joints)
    array ingest checked).
    :meth:`take` reads the headers in one ``np.frombuffer`` and the payloads in one pass
    (``values_of``), converts and rounds every row at once and encodes the block."""

    __slots__ = (
        "_arrays",
        "_headers",
        "_log_ns",
        "_wire",
        "names",
        "robot",
        "si_steps",
        "values_of",
    )

    def __init__(
        self,
        robot: str,
        names: list[str],
        si_steps: FloatArray,
        values_of: Callable[[list[bytes]], FloatArray] | None = None,
    ) -> None:
        """``si_steps``: (3, joints), wire units to :data:`JOINT_STEPS`; ``values_of``: the
        (n, 3, joints) wire values of accepted payloads, for :meth:`extend`
        (:meth:`sync.codecs.VendorCodec.accepted_values`)."""
        self.robot = robot
        self.names = names
        self.si_steps = si_steps
        self.values_of = values_of
        self._log_ns: list[int] = []
        self._headers: list[bytes] = []
        self._wire: list[bytes | NDArray[np.floating]] = []
        self._arrays = False  # some values came as arrays

    def __len__(self) -> int:
        return len(self._log_ns)

    def extend(self, log_ns: int, headers: Sequence[bytes], payloads: Sequence[bytes]) -> None:
        """States received together at ``log_ns``, as the wire carried them (payloads ingest
        accepted; needs ``values_of``): three ``list.extend`` for all of them."""
        self._log_ns += repeat(log_ns, len(headers))
        self._headers += headers
        self._wire += payloads

    def extenders(
        self,
    ) -> tuple[
        Callable[[Iterable[int]], None],
        Callable[[Iterable[bytes]], None],
        Callable[[Iterable[bytes]], None],
    ]:
        """What :meth:`extend` calls, for a caller's inner loop: the receive times', the
        headers' and the payloads' ``list.extend`` (valid for the buffer's life:
        :meth:`take` empties the lists, it does not replace them)."""
        return self._log_ns.extend, self._headers.extend, self._wire.extend

    def add(
        self, log_ns: int, stamp_ns: int, seq: int, epoch: int, wire: NDArray[np.floating]
    ) -> None:
        """One state: ``wire`` is its (3, joints) values in the vendor's units."""
        self._log_ns.append(log_ns)
        self._headers.append(
            HEADER.pack(MAGIC, PROTOCOL_VERSION, Kind.JOINT_STATE, 0, seq, stamp_ns, epoch)
        )
        self._wire.append(wire)
        self._arrays = True

    def _values(self) -> FloatArray:
        values_of = self.values_of
        if not self._arrays and values_of is not None:
            return values_of(self._wire)  # type: ignore[arg-type]
        rows = [
            values_of([w])[0] if isinstance(w, bytes) and values_of is not None else w
            for w in self._wire
        ]
        return np.stack(rows).astype(np.float64)

    def take(self) -> tuple[int, int, int, bytes]:
        """(first receive time, first stamp, last seq, the block) of what is held; empties
        the buffer. Only when it holds something."""
        wire = self._values()
        wire *= self.si_steps
        np.rint(wire, out=wire)  # whole steps: canonical_joints' values times JOINT_STEPS
        headers = np.frombuffer(b"".join(self._headers), dtype=_HEADER)
        stamp_ns = headers["stamp_ns"].astype(np.int64)
        seq = np.ascontiguousarray(headers["seq"]).view(np.int64)
        data = encode_block(
            self.robot, self.names, np.array(self._log_ns, dtype=np.int64), stamp_ns, seq,
            np.ascontiguousarray(headers["epoch"]).view(np.int64), wire, as_steps=True,
        )  # fmt: skip
        first = (self._log_ns[0], int(stamp_ns[0]), int(seq[-1]) % _U64)
        self._log_ns.clear()
        self._headers.clear()
        self._wire.clear()
        self._arrays = False
        return (*first, data)
