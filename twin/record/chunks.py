"""A recording's chunks: where they lie, each one read back checked, what was skipped.

The one place where every reader of recordings (:mod:`twin.record.recording`, the replay's
:mod:`twin.record.replay_chunks`, the export's :mod:`twin.dataset.source`) learns where a
file's chunks are and gets a chunk's records, so a damaged or cut file is handled the same
everywhere:

* :func:`chunk_catalog` lists the chunks (offset, length, first and last log time in ns,
  where their message indexes lie, which channels and how many messages they hold) and
  the channels and schemas, from the summary of a complete file (``mcap``'s reader), else
  by one pass over the records up to the cut. That pass reads record headers only
  (opcode + uint64 length, small records with ``mcap``'s record classes), and where a
  record does not make sense (an unknown opcode, a length past the end while a chunk
  follows) it resynchronises on the next chunk record whose header holds together,
  noting the bytes between as a :class:`twin.record.damage.Gap`. A file that ends inside
  a record is noted as a :class:`twin.record.damage.Cut`.
* :func:`chunk_records` gives a chunk's records decompressed and checked: the uncompressed
  size, the CRC where the chunk has one, else a walk of its records. :func:`checked` notes a
  chunk that fails as a :class:`twin.record.damage.SkippedChunk` in the catalog's
  :class:`twin.record.damage.DamageReport` and returns None: the reader goes on with the
  next chunk.
"""

from __future__ import annotations

import logging
import mmap
import struct
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Final

import zstandard
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Attachment, Channel, Chunk, Metadata, Schema

from twin.record.damage import Cut, DamageReport, Gap, SkippedChunk, noticed

log = logging.getLogger(__name__)

MCAP_MAGIC: Final = b"\x89MCAP0\r\n"
_RECORD: Final = struct.Struct("<BQ")  # opcode, length
_CHUNK_HEAD: Final = struct.Struct("<QQQI")  # start, end, uncompressed size, crc
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_OPCODES: Final = frozenset(int(o) for o in Opcode)
_COMPRESSIONS: Final = (b"", b"zstd", b"lz4")
_INDEX_HEAD_BYTES: Final = 9 + 2 + 4  # a message index record before its entries
_INDEX_ENTRY_BYTES: Final = 16  # log time, offset


class ChunkDamaged(ValueError):
    """A chunk that does not read back (the message says why)."""


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of the file: where it lies and what it holds (times: log times in ns)."""

    start_ns: int
    end_ns: int
    offset: int  # of the chunk record (opcode) in the file
    length: int  # of the whole record
    index_offset: int  # of its first message index record; 0: none read
    index_length: int
    channels: frozenset[int] | None  # None: not known (its indexes were cut off)
    messages: int | None  # messages it holds, from its indexes; None: not known


@dataclass
class ChunkCatalog:
    """A recording's chunks in file order, its channels and schemas, and its damage."""

    path: Path
    chunks: list[ChunkRef]
    channels: dict[int, Channel]
    schemas: dict[int, Schema]
    complete: bool  # read from a usable summary
    damage: DamageReport
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # a scan's only
    attachments: dict[str, bytes] = field(default_factory=dict)  # a scan's, when asked

    @property
    def topics(self) -> dict[int, str]:
        """Channel id -> topic."""
        return {i: c.topic for i, c in self.channels.items()}

    @property
    def start_ns(self) -> int | None:
        """The first log time any chunk holds (readable or not)."""
        return min((c.start_ns for c in self.chunks), default=None)


def chunk_catalog(path: Path, *, attachments: bool = False) -> ChunkCatalog:
    """The chunks of ``path``: from its summary, else by one pass up to the cut (then with
    its metadata and, if ``attachments``, its attachments)."""
    start_ns: int | None = None
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream)
            summary = reader.get_summary()
            for item in reader.iter_metadata() if summary is not None else ():
                start_ns = start_ns or _start_ns(item.name, item.metadata)
    except Exception as exc:  # no footer, or a summary that does not read: scan instead
        log.info("%s: no usable summary (%r); scanning its records", path, exc)
        summary = None
    if summary is None:
        return _scan(path, attachments)
    chunks = [
        ChunkRef(
            c.message_start_time,
            c.message_end_time,
            c.chunk_start_offset,
            c.chunk_length,
            min(c.message_index_offsets.values(), default=0),
            c.message_index_length,
            frozenset(c.message_index_offsets),
            _index_count(c.message_index_length, len(c.message_index_offsets)),
        )
        for c in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    ]
    if start_ns is None and summary.statistics is not None:
        start_ns = summary.statistics.message_start_time
    damage = noticed(DamageReport(path, start_ns))
    return ChunkCatalog(path, chunks, dict(summary.channels), dict(summary.schemas), True, damage)


def _start_ns(name: str, metadata: dict[str, str]) -> int | None:
    """The twin's start (its ``twin`` metadata record), which times in reports count from."""
    stamp = metadata.get("start_time_ns", "") if name == "twin" else ""
    return int(stamp) if stamp.isdigit() else None


def _index_count(index_length: int, records: int) -> int | None:
    entries = index_length - _INDEX_HEAD_BYTES * records
    return entries // _INDEX_ENTRY_BYTES if records and entries >= 0 else None


def _chunk_head_ok(data: mmap.mmap, at: int, size: int) -> bool:
    """Whether a chunk record's header at ``at`` holds together (for resynchronising)."""
    if at + 9 + _CHUNK_HEAD.size + 4 > size:
        return False
    opcode, length = _RECORD.unpack_from(data, at)
    if opcode != Opcode.CHUNK or at + 9 + length > size:
        return False
    start_ns, end_ns, uncompressed, _ = _CHUNK_HEAD.unpack_from(data, at + 9)
    head = at + 9 + _CHUNK_HEAD.size
    (name_len,) = _U32.unpack_from(data, head)
    if start_ns > end_ns or uncompressed > 1 << 34 or name_len > 4:
        return False
    if data[head + 4 : head + 4 + name_len] not in _COMPRESSIONS or head + 12 + name_len > size:
        return False
    records_len: int = _U64.unpack_from(data, head + 4 + name_len)[0]
    return bool(records_len == length - (_CHUNK_HEAD.size + 4 + name_len + 8))


def _next_chunk(data: mmap.mmap, start: int, size: int) -> int | None:
    """The offset of the next chunk record from ``start`` whose header holds together."""
    at = data.find(bytes([Opcode.CHUNK]), start)
    while at >= 0:
        if _chunk_head_ok(data, at, size):
            return at
        at = data.find(bytes([Opcode.CHUNK]), at + 1)
    return None


class _Scan:
    """One pass over the records from the start (see the module docstring)."""

    def __init__(self, path: Path, attachments: bool) -> None:
        self.catalog = ChunkCatalog(path, [], {}, {}, False, noticed(DamageReport(path)), {}, {})
        self.want_attachments = attachments
        self.open: ChunkRef | None = None  # the newest chunk, its message indexes still coming
        self.index_at, self.index_length, self.entries = 0, 0, 0
        self.index_channels: set[int] = set()

    def close(self, known: bool) -> None:
        """File the open chunk (``known``: its message indexes were all read)."""
        chunk = self.open
        if chunk is not None:
            known = known and bool(self.index_at)
            self.catalog.chunks.append(
                ChunkRef(
                    chunk.start_ns,
                    chunk.end_ns,
                    chunk.offset,
                    chunk.length,
                    self.index_at if known else 0,
                    self.index_length if known else 0,
                    frozenset(self.index_channels) if known else None,
                    self.entries if known else None,
                )
            )
        self.open = None

    def record(self, data: mmap.mmap, at: int, opcode: int, end: int) -> None:
        """Take in one whole record (not a chunk's message index)."""
        self.close(known=True)
        if opcode == Opcode.CHUNK:
            start_ns, end_ns, _, _ = _CHUNK_HEAD.unpack_from(data, at + 9)
            self.open = ChunkRef(start_ns, end_ns, at, end - at, 0, 0, None, None)
            self.index_at, self.index_length, self.entries = 0, 0, 0
            self.index_channels = set()
            return
        wanted = (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.METADATA)
        if opcode not in wanted and not (self.want_attachments and opcode == Opcode.ATTACHMENT):
            return
        stream = ReadDataStream(BytesIO(data[at + 9 : end]))
        try:
            if opcode == Opcode.SCHEMA:
                schema = Schema.read(stream)
                self.catalog.schemas[schema.id] = schema
            elif opcode == Opcode.CHANNEL:
                channel = Channel.read(stream)
                self.catalog.channels[channel.id] = channel
            elif opcode == Opcode.METADATA:
                metadata = Metadata.read(stream)
                self.catalog.metadata[metadata.name] = dict(metadata.metadata)
            else:
                attachment = Attachment.read(stream)
                self.catalog.attachments[attachment.name] = attachment.data
        except Exception as exc:  # a damaged small record: its contents are lost
            log.info("%s: a record at byte %d does not parse (%r)", self.catalog.path, at, exc)

    def index(self, data: mmap.mmap, at: int, end: int) -> None:
        """Take in one of the open chunk's message index records."""
        self.index_at = self.index_at or at
        self.index_length += end - at
        self.index_channels.add(_U16.unpack_from(data, at + 9)[0])
        self.entries += max(0, end - at - _INDEX_HEAD_BYTES) // _INDEX_ENTRY_BYTES


def _scan(path: Path, attachments: bool) -> ChunkCatalog:
    scan = _Scan(path, attachments)
    damage = scan.catalog.damage
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        if size <= len(MCAP_MAGIC):
            return scan.catalog
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = len(MCAP_MAGIC)
            finished = False  # the data section ended (a Data End or Footer record)
            while at < size:
                opcode, length = _RECORD.unpack_from(data, at) if at + 9 <= size else (0, 0)
                end = at + 9 + length
                if at + 9 > size or opcode not in _OPCODES or end > size:
                    resume = _next_chunk(data, at + 1, size)
                    if resume is None:  # nothing readable after it: the file is cut here
                        whole_header = at + 9 <= size and opcode in _OPCODES
                        scan.close(known=whole_header and opcode != Opcode.MESSAGE_INDEX)
                        what = "inside a chunk" if opcode == Opcode.CHUNK else "inside a record"
                        what = what if whole_header else "inside a record header"
                        damage.cut = Cut(size, at, _whole_until(scan.catalog), what)
                        break
                    scan.close(known=False)
                    damage.gaps.append(Gap(at, resume))
                    at = resume
                    continue
                if opcode == Opcode.MESSAGE_INDEX and scan.open is not None:
                    scan.index(data, at, end)
                elif opcode in (Opcode.DATA_END, Opcode.FOOTER):
                    finished = True
                    break
                elif opcode == Opcode.CHUNK and not _chunk_head_ok(data, at, size):
                    scan.close(known=True)
                    resume = _next_chunk(data, at + 1, size) or end
                    damage.gaps.append(Gap(at, resume))
                    at = resume
                    continue
                else:
                    scan.record(data, at, opcode, end)
                at = end
            scan.close(known=finished)
            if at >= size and not finished and damage.cut is None:
                damage.cut = Cut(size, size, _whole_until(scan.catalog), "between records")
            elif finished and data[size - len(MCAP_MAGIC) :] != MCAP_MAGIC:
                damage.cut = Cut(size, at, _whole_until(scan.catalog), "inside its summary")
    twin = scan.catalog.metadata.get("twin", {})
    damage.start_ns = _start_ns("twin", twin) or scan.catalog.start_ns
    log.info("%s: %d chunks found by scanning its records", path, len(scan.catalog.chunks))
    return scan.catalog


def _whole_until(catalog: ChunkCatalog) -> int | None:
    return max((c.end_ns for c in catalog.chunks), default=None)


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        return out
    if compression == "lz4":
        import lz4.frame  # type: ignore[import-untyped]

        return bytes(lz4.frame.decompress(data))
    raise ChunkDamaged(f"unknown compression {compression!r}")


def _walk(records: bytes) -> None:
    """Check that ``records`` are whole records with known opcodes, end to end."""
    at, size = 0, len(records)
    while at < size:
        if at + 9 > size:
            raise ChunkDamaged("records do not parse (a cut record header)")
        opcode, length = _RECORD.unpack_from(records, at)
        if opcode not in _OPCODES or at + 9 + length > size:
            raise ChunkDamaged(f"records do not parse (at byte {at} of its records)")
        at += 9 + length


def chunk_records(record: bytes) -> bytes:
    """The records of a whole chunk record (opcode first), decompressed and checked: its
    uncompressed size, its CRC where it has one (else a walk of its records). ChunkDamaged
    with the reason if it does not read back."""
    try:
        stream = ReadDataStream(BytesIO(record))
        opcode, length = stream.read1(), stream.read8()
        if opcode != Opcode.CHUNK or length != len(record) - 9:
            raise ChunkDamaged("not a whole chunk record")
        chunk = Chunk.read(stream)
    except ChunkDamaged:
        raise
    except Exception as exc:  # EndOfFile, struct.error, UnicodeDecodeError
        raise ChunkDamaged(f"its header does not parse ({type(exc).__name__})") from None
    try:
        out = _decompress(chunk.compression, chunk.data, chunk.uncompressed_size)
    except ChunkDamaged:
        raise
    except Exception as exc:  # zstandard.ZstdError, lz4's RuntimeError, ...
        raise ChunkDamaged(f"does not decompress ({exc})") from None
    if len(out) != chunk.uncompressed_size:
        raise ChunkDamaged(f"{len(out)} bytes decompressed, {chunk.uncompressed_size} expected")
    if chunk.uncompressed_crc:
        if zlib.crc32(out) != chunk.uncompressed_crc:
            raise ChunkDamaged("CRC mismatch")
    else:
        _walk(out)
    return out


def skip(catalog: ChunkCatalog, ref: ChunkRef, reason: str) -> None:
    """Note ``ref`` as skipped in the catalog's damage report."""
    catalog.damage.skip(SkippedChunk(ref.offset, ref.start_ns, ref.end_ns, ref.messages, reason))


def checked(catalog: ChunkCatalog, ref: ChunkRef, record: bytes) -> bytes | None:
    """:func:`chunk_records` of ``record`` (the bytes at ``ref``), or None (and the chunk
    noted as skipped) if it is damaged."""
    try:
        return chunk_records(record)
    except ChunkDamaged as exc:
        skip(catalog, ref, str(exc))
        return None


def read_checked(catalog: ChunkCatalog, ref: ChunkRef) -> bytes | None:
    """Read the chunk at ``ref`` from the file and :func:`checked` it."""
    with catalog.path.open("rb") as stream:
        stream.seek(ref.offset)
        record = stream.read(ref.length)
    return checked(catalog, ref, record)
