"""Where a recording's chunks lie, and one chunk read back: the replay's view of the file.

:func:`chunk_catalog` lists a recording's chunks (file offset, length, first and last log
time, compression, where its message indexes lie and which channels it holds) and its
channels, without decompressing anything: from the summary section of a complete file
(:attr:`twin.record.recording.Recording.complete`), else by one pass over the records up to the
cut (a chunk the cut splits is left out, as :mod:`twin.record.recording` leaves it out).
:func:`read_chunk` then reads one chunk back: its decompressed records and, per wanted
channel, every message's log time and offset within them (from the chunk's message
indexes, or by walking its records where they were cut off). See
:class:`twin.record.replay_index.ChunkStore`.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import zstandard
from mcap.reader import make_reader
from numpy.typing import NDArray

from twin.record.recording import MCAP_MAGIC, Recording, RecordingError

log = logging.getLogger(__name__)

_OP_FOOTER: Final = 0x02
_OP_CHANNEL: Final = 0x04
_OP_MESSAGE: Final = 0x05
_OP_CHUNK: Final = 0x06
_OP_MESSAGE_INDEX: Final = 0x07
_OP_DATA_END: Final = 0x0F
_RECORD: Final = struct.Struct("<BQ")  # opcode, length
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_CHUNK_HEAD: Final = struct.Struct("<QQQI")  # start, end, uncompressed size, crc
_MESSAGE_HEAD: Final = struct.Struct("<HIQ")  # channel, sequence, log time
MESSAGE_DATA_AT: Final = 9 + 2 + 4 + 8 + 8  # a message record's data, from its start

Rows = tuple[NDArray[np.int64], NDArray[np.int64]]  # log times (ns), record offsets


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of the file: where it lies and what it holds."""

    start_ns: int
    end_ns: int
    offset: int  # of the chunk record (opcode) in the file
    length: int  # of the whole record
    index_offset: int  # of its first message index record; 0: none read
    index_length: int
    channels: frozenset[int] | None  # None: not known (its indexes were cut off)


@dataclass(frozen=True)
class ChunkCatalog:
    """A recording's channels (id -> topic) and chunks, in file order."""

    topics: dict[int, str]
    chunks: list[ChunkRef]
    verify: bool  # check each chunk's CRC when reading it (a cut file's chunks)


def chunk_catalog(recording: Recording) -> ChunkCatalog:
    """The chunks and channels of ``recording`` (summary, else one pass up to the cut)."""
    if recording.complete:
        with recording.path.open("rb") as stream:
            summary = make_reader(stream).get_summary()
        if summary is not None:
            chunks = [
                ChunkRef(
                    c.message_start_time,
                    c.message_end_time,
                    c.chunk_start_offset,
                    c.chunk_length,
                    min(c.message_index_offsets.values(), default=0),
                    c.message_index_length,
                    frozenset(c.message_index_offsets),
                )
                for c in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
            ]
            return ChunkCatalog({i: c.topic for i, c in summary.channels.items()}, chunks, False)
    return _scan(recording.path)


def _scan(path: Path) -> ChunkCatalog:
    """Every channel and complete chunk from the start, stopping at a cut."""
    topics: dict[int, str] = {}
    chunks: list[ChunkRef] = []
    open_chunk: ChunkRef | None = None  # the newest chunk, its message indexes still coming
    index_at, index_length, channels = 0, 0, set[int]()

    def close(known: bool) -> None:
        nonlocal open_chunk
        if open_chunk is not None:
            chunks.append(
                ChunkRef(
                    open_chunk.start_ns,
                    open_chunk.end_ns,
                    open_chunk.offset,
                    open_chunk.length,
                    index_at if known else 0,
                    index_length if known else 0,
                    frozenset(channels) if known and index_at else None,
                )
            )
        open_chunk = None

    finished = False  # reached the end of the data section (not a cut)
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        at = len(MCAP_MAGIC)
        while at + _RECORD.size <= size:
            stream.seek(at)
            opcode, length = _RECORD.unpack(stream.read(_RECORD.size))
            end = at + _RECORD.size + length
            if end > size:  # cut inside this record (after the newest chunk's indexes?)
                if opcode != _OP_MESSAGE_INDEX:
                    close(known=True)
                break
            if opcode == _OP_MESSAGE_INDEX and open_chunk is not None:
                index_at = index_at or at
                index_length += end - at
                channels.add(_U16.unpack(stream.read(2))[0])
            elif opcode in (_OP_FOOTER, _OP_DATA_END):
                finished = True
                break
            else:
                close(known=True)
                if opcode == _OP_CHANNEL:
                    body = stream.read(length)
                    (channel_id,) = _U16.unpack_from(body, 0)
                    (topic_len,) = _U32.unpack_from(body, 4)
                    topics[channel_id] = body[8 : 8 + topic_len].decode("utf-8")
                elif opcode == _OP_CHUNK:
                    start_ns, end_ns, _, _ = _CHUNK_HEAD.unpack(stream.read(_CHUNK_HEAD.size))
                    open_chunk = ChunkRef(start_ns, end_ns, at, end - at, 0, 0, None)
                    index_at, index_length, channels = 0, 0, set()
            at = end
        # a chunk that the cut follows may have lost some indexes: walk its records instead
        close(known=finished)
    log.info("%s: %d complete chunks found by scanning up to the cut", path, len(chunks))
    return ChunkCatalog(topics, chunks, True)


def _decompress(record: bytes, path: Path, verify: bool) -> bytes:
    at = _RECORD.size + _CHUNK_HEAD.size
    size, crc = _CHUNK_HEAD.unpack_from(record, _RECORD.size)[2:]
    (name_len,) = _U32.unpack_from(record, at)
    compression = record[at + 4 : at + 4 + name_len].decode("ascii")
    at += 4 + name_len
    (data_len,) = _U64.unpack_from(record, at)
    data = record[at + 8 : at + 8 + data_len]
    try:
        if compression == "zstd":
            out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        elif compression == "lz4":
            import lz4.frame  # type: ignore[import-untyped]

            out = lz4.frame.decompress(data)
        elif compression == "":
            out = data
        else:
            raise RecordingError(f"{path}: unknown chunk compression {compression!r}")
    except (zstandard.ZstdError, RuntimeError, ValueError) as exc:  # lz4 raises RuntimeError
        raise RecordingError(f"{path}: a damaged chunk ({exc})") from None
    if len(out) != size or (verify and crc and zlib.crc32(out) != crc):
        raise RecordingError(f"{path}: a damaged chunk (size or CRC does not match)")
    return out


def _from_indexes(block: bytes, wanted: set[int]) -> dict[int, Rows]:
    out: dict[int, Rows] = {}
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


def _from_records(records: bytes, wanted: set[int]) -> dict[int, Rows]:
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


def read_chunk(
    path: Path, ref: ChunkRef, wanted: set[int], *, verify: bool
) -> tuple[bytes, dict[int, Rows]]:
    """A chunk's decompressed records and, per wanted channel in it, its messages' log
    times and record offsets (file order); RecordingError if it is damaged (``verify``:
    its CRC checked too)."""
    with path.open("rb") as stream:
        stream.seek(ref.offset)
        record = stream.read(ref.length)
        block = b""
        if ref.index_length:
            stream.seek(ref.index_offset)
            block = stream.read(ref.index_length)
    records = _decompress(record, path, verify)
    if ref.index_length:
        return records, _from_indexes(block, wanted)
    return records, _from_records(records, wanted)


def message_data(records: memoryview, offset: int) -> memoryview:
    """The data of the message record at ``offset`` in a chunk's records (not copied)."""
    (length,) = _U64.unpack_from(records, offset + 1)
    return records[offset + MESSAGE_DATA_AT : offset + _RECORD.size + length]
