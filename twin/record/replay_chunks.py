"""One chunk of a recording read back for the replay: its records and its messages' rows.

:func:`chunk_catalog` is the recording's chunk table
(:attr:`twin.record.recording.Recording.catalog`, from :mod:`twin.record.chunks`: the
summary of a complete file, else one pass up to the cut).
:func:`read_chunk` then reads one chunk back, checked by :func:`twin.record.chunks.checked`
(a damaged one is noted in the recording's damage report and read as empty): its
decompressed records and, per wanted channel, every message's log time and offset within
them (from the chunk's message indexes, or by walking its records where they were cut off
or do not match the records), with a row number: -1 for an ordinary message (one JSON
message a state), while a ``/joints/<robot>`` **block** (:mod:`twin.record.joint_blocks`,
many joint states in one message) stands for one row per state, at that state's own
receive time (the message's log time is only its first state's), numbered 0.. in the
block. A block whose receive times do not decode stays one row (0, at its log time), so
that showing it reports it unreadable like any other message. See
:class:`twin.record.replay_index.ChunkStore`.
"""

from __future__ import annotations

import logging
import struct
from typing import Final

import numpy as np
from numpy.typing import NDArray

from twin.record.chunks import ChunkCatalog, ChunkRef, checked
from twin.record.joint_blocks import BlockError, block_log_times, is_block
from twin.record.recording import Recording

log = logging.getLogger(__name__)

_OP_MESSAGE: Final = 0x05
_OP_MESSAGE_INDEX: Final = 0x07
_RECORD: Final = struct.Struct("<BQ")  # opcode, length
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_MESSAGE_HEAD: Final = struct.Struct("<HIQ")  # channel, sequence, log time
MESSAGE_DATA_AT: Final = 9 + 2 + 4 + 8 + 8  # a message record's data, from its start

Pairs = tuple[NDArray[np.int64], NDArray[np.int64]]  # log times (ns), record offsets
Rows = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]  # ... and row numbers


def chunk_catalog(recording: Recording) -> ChunkCatalog:
    """The chunks and channels of ``recording`` (read once per recording)."""
    return recording.catalog


def block_channels(catalog: ChunkCatalog) -> frozenset[int]:
    """The channels of ``catalog`` that hold joint blocks."""
    out = set()
    for number, channel in catalog.channels.items():
        schema = catalog.schemas.get(channel.schema_id)
        if is_block(schema.name if schema is not None else "", channel.message_encoding):
            out.add(number)
    return frozenset(out)


def _from_indexes(block: bytes, wanted: set[int]) -> dict[int, Pairs]:
    out: dict[int, Pairs] = {}
    at = 0
    while at + _RECORD.size <= len(block):
        opcode, length = _RECORD.unpack_from(block, at)
        if opcode == _OP_MESSAGE_INDEX:
            (channel_id,) = _U16.unpack_from(block, at + 9)
            if channel_id in wanted:
                (count,) = _U32.unpack_from(block, at + 11)
                pairs = np.frombuffer(block, "<u8", count // 8, at + 15).reshape(-1, 2)
                out[channel_id] = (pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64))
        at += _RECORD.size + length
    return out


def _from_records(records: bytes, wanted: set[int]) -> dict[int, Pairs]:
    found: dict[int, tuple[list[int], list[int]]] = {}
    at, end = 0, len(records)
    while at + _RECORD.size <= end:
        opcode, length = _RECORD.unpack_from(records, at)
        if opcode == _OP_MESSAGE:
            channel_id, _, log_ns = _MESSAGE_HEAD.unpack_from(records, at + 9)
            if channel_id in wanted:
                times, offsets = found.setdefault(channel_id, ([], []))
                times.append(log_ns)
                offsets.append(at)
        at += _RECORD.size + length
    return {
        c: (np.array(t, dtype=np.int64), np.array(o, dtype=np.int64)) for c, (t, o) in found.items()
    }


def _indexes_fit(records: bytes, rows: dict[int, Pairs]) -> bool:
    """Whether every indexed offset points at a message record inside ``records``."""
    view = np.frombuffer(records, dtype=np.uint8)
    for _, offsets in rows.values():
        if len(offsets) and (
            int(offsets.max()) + MESSAGE_DATA_AT > len(records)
            or int(offsets.min()) < 0
            or bool(np.any(view[offsets] != _OP_MESSAGE))
        ):
            return False
    return True


def read_chunk(
    catalog: ChunkCatalog, ref: ChunkRef, wanted: set[int]
) -> tuple[bytes, dict[int, Rows]] | None:
    """A chunk's checked records and, per wanted channel in it, its messages' (or its
    blocks' states') log times, record offsets and row numbers (see the module docstring);
    None if the chunk is damaged (noted in the catalog's damage report)."""
    with catalog.path.open("rb") as stream:
        stream.seek(ref.offset)
        record = stream.read(ref.length)
        block = b""
        if ref.index_length:
            stream.seek(ref.index_offset)
            block = stream.read(ref.index_length)
    records = checked(catalog, ref, record)
    if records is None:
        return None
    blocks = block_channels(catalog)
    if block:
        try:
            pairs = _from_indexes(block, wanted)
        except (struct.error, ValueError):  # a damaged index: walk the records instead
            pairs = {}
        indexed = (ref.channels or frozenset()) & wanted
        if set(pairs) == indexed and _indexes_fit(records, pairs):
            return records, {c: _rows(records, p, c in blocks) for c, p in pairs.items()}
        log.info("%s: the chunk at byte %d: its indexes do not fit", catalog.path, ref.offset)
    pairs = _from_records(records, wanted)
    return records, {c: _rows(records, p, c in blocks) for c, p in pairs.items()}


def _rows(records: bytes, pairs: Pairs, blocks: bool) -> Rows:
    """One channel's rows: its messages (row -1), or its blocks' states (see the module
    docstring)."""
    times, offsets = pairs
    if not blocks:
        return times, offsets, np.full(len(times), -1, dtype=np.int64)
    view = memoryview(records)
    parts: list[tuple[NDArray[np.int64], int]] = []
    for log_ns, offset in zip(times.tolist(), offsets.tolist(), strict=True):
        try:
            parts.append((block_log_times(message_data(view, offset)), offset))
        except BlockError:  # shown as unreadable when it is reached
            parts.append((np.array([log_ns], dtype=np.int64), offset))
    if not parts:
        return times, offsets, np.zeros(0, dtype=np.int64)
    counts = [len(t) for t, _ in parts]
    return (
        np.concatenate([t for t, _ in parts]),
        np.repeat(np.array([o for _, o in parts], dtype=np.int64), counts),
        np.concatenate([np.arange(n, dtype=np.int64) for n in counts]),
    )


def message_data(records: memoryview, offset: int) -> memoryview:
    """The data of the message record at ``offset`` in a chunk's records (not copied)."""
    (length,) = _U64.unpack_from(records, offset + 1)
    return records[offset + MESSAGE_DATA_AT : offset + _RECORD.size + length]
