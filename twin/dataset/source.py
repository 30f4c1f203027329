"""Reading a recording's robot channels fast, as arrays, for a dataset export.

An export needs only each robot's joint states, base poses and heartbeats and the
``/events``: joint states as blocks of many states a message (or, in recordings made
before the blocks, a JSON message each beside its raw vendor frame), base poses and
heartbeats as JSON beside their raw frames. The generic reader
(:mod:`twin.record.recording`) makes a Python object of every record; at the hall's
thousands of records a second that alone is slower than the export's target. So this
module reads the chunks itself: where the chunks lie comes from :mod:`twin.record.chunks`,
as for every reader of recordings, and each chunk's records are decompressed and
CRC-checked in C on ``threads`` threads (zstd and the CRC run without the GIL), which then
decode its blocks and raw frames in bulk, while this thread puts the previous chunks into
the series (:mod:`twin.dataset.chunk_reader`, :mod:`twin.dataset.canonical`,
:mod:`twin.dataset.bulk`). A zstd chunk with a CRC is opened in a few calls
(:func:`zstd_records`); any other, or one that does not check out, goes through
:func:`twin.record.chunks.chunk_records` (a damaged chunk is skipped and noted in
:attr:`Part.damage`, the rest is read).

A complete file can be split by its chunk index into :class:`ChunkSpan` parts; a cut file
(no usable summary) is read from the start up to the cut, as
:func:`twin.record.recording.open_recording` does.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import struct
import sys
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import zstandard
from mcap.opcode import Opcode

from sync.codecs import VendorCodec
from twin.dataset.chunk_reader import ChunkReader, Prepared, index_region, route
from twin.dataset.series import (
    Arrays,
    Beat,
    Event,
    Part,
    RobotSeries,
    arrays,
    iter_events,
    merge,
)
from twin.record.chunks import (
    ChunkCatalog,
    ChunkDamaged,
    ChunkRef,
    chunk_catalog,
    chunk_records,
    skip,
)
from twin.record.joint_blocks import is_block

__all__ = [
    "Arrays",
    "Beat",
    "ChunkSpan",
    "Event",
    "Layout",
    "Part",
    "Peek",
    "RobotSeries",
    "SourceError",
    "arrays",
    "iter_events",
    "layout",
    "merge",
    "peek",
    "read_part",
    "short_switches",
]

log = logging.getLogger(__name__)

MAGIC: Final = b"\x89MCAP0\r\n"
AHEAD_PER_THREAD: Final = 2  # chunks decompressed ahead of the decoding, per thread
SWITCH_INTERVAL_S: Final = 0.0005
"""How often a thread holding the GIL hands it over while threads share the work. Python's
default (5 ms) makes a thread that comes back from zstd, the CRC or Parquet wait up to that
long for one busy in numpy and Python; with the hall's ~650 chunks a recording that wait
took more time than the decompression (a 10-minute recording read in 12-21 s on two threads
instead of 6)."""


@contextlib.contextmanager
def short_switches() -> Iterator[None]:
    """Hand the GIL over every SWITCH_INTERVAL_S (at most) inside the block."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


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


def read_part(
    path: Path,
    span: ChunkSpan,
    robots: set[str] | None,
    complete: bool,
    *,
    codecs: Mapping[str, VendorCodec] | None = None,
    threads: int = 1,
) -> Part:
    """The robot channels and events of the chunks that start in one span (``complete``:
    the file has a summary; a cut file is read whole, up to the cut). ``codecs``: each
    robot's vendor codec, for decoding its raw joint frames in bulk where its ``/joints``
    channel is JSON (a robot without one is read from its JSON; blocks need none);
    ``threads``: how many threads decompress chunks."""
    part = Part({}, [], wanted=robots)
    catalog = _catalog(path)
    if complete != catalog.complete:
        log.info("%s: read as %s", path, "complete" if catalog.complete else "cut")
    _read(path, catalog, span, part, codecs or {}, threads)
    return part


def _catalog(path: Path) -> ChunkCatalog:
    with path.open("rb") as stream:
        if stream.read(len(MAGIC)) != MAGIC:
            raise SourceError(f"{path}: not an MCAP file (no MCAP magic at the start)")
    return chunk_catalog(path)


Unpacked = tuple[bytes, Prepared | None] | str  # a chunk's records made ready, or why not


_CHUNK_HEAD: Final = struct.Struct("<BQQQQII")  # opcode, length, times, size, CRC, name length
_ZSTD: Final = threading.local()  # each decompression thread's zstd context, kept


def zstd_records(record: bytes) -> bytes | None:
    """A zstd chunk's records with a CRC, decompressed and checked as
    :func:`twin.record.chunks.chunk_records` does, in a few steps that hold the GIL instead
    of its parse of the record in Python (some hundred calls a chunk, each waiting for the
    GIL while the decoding thread holds it). None: any other chunk, or one that does not
    check out, which that function then reads or explains."""
    if len(record) < _CHUNK_HEAD.size:
        return None
    opcode, length, _, _, size, crc, name_length = _CHUNK_HEAD.unpack_from(record)
    at = _CHUNK_HEAD.size + name_length
    if opcode != Opcode.CHUNK or length != len(record) - 9 or not crc or at + 8 > len(record):
        return None
    if record[_CHUNK_HEAD.size : at] != b"zstd":
        return None
    (records_length,) = struct.unpack_from("<Q", record, at)
    if at + 8 + records_length > len(record):
        return None
    context = getattr(_ZSTD, "context", None)
    if context is None:
        context = _ZSTD.context = zstandard.ZstdDecompressor()
    compressed = memoryview(record)[at + 8 : at + 8 + records_length]
    try:
        out: bytes = context.decompress(compressed, max_output_size=size)
    except zstandard.ZstdError:
        return None
    return out if len(out) == size and zlib.crc32(out) == crc else None


def _unpack(data: mmap.mmap, ref: ChunkRef, reader: ChunkReader) -> Unpacked:
    """A chunk's records, decompressed, checked and prepared (this runs on the
    decompression threads), or why it does not read."""
    record = data[ref.offset : ref.offset + ref.length]
    records = zstd_records(record)
    if records is None:
        try:
            records = chunk_records(record)
        except ChunkDamaged as exc:
            return str(exc)
    return records, reader.prepare(records, index_region(data, ref))


def _chunks(
    data: mmap.mmap, refs: list[ChunkRef], reader: ChunkReader, threads: int
) -> Generator[tuple[ChunkRef, Unpacked], None, None]:
    """Each chunk unpacked, in file order, ``threads`` at a time a few chunks ahead."""
    if threads <= 1:
        for ref in refs:
            yield ref, _unpack(data, ref, reader)
        return
    with (
        short_switches(),
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunks") as pool,
    ):
        ahead: deque[tuple[ChunkRef, Future[Unpacked]]] = deque()
        todo = iter(refs)
        try:
            for ref in itertools.islice(todo, threads * AHEAD_PER_THREAD):
                ahead.append((ref, pool.submit(_unpack, data, ref, reader)))
            while ahead:
                ref, future = ahead.popleft()
                for more in itertools.islice(todo, 1):
                    ahead.append((more, pool.submit(_unpack, data, more, reader)))
                yield ref, future.result()
        finally:
            for _, future in ahead:
                future.cancel()


def _read(
    path: Path,
    catalog: ChunkCatalog,
    span: ChunkSpan,
    part: Part,
    codecs: Mapping[str, VendorCodec],
    threads: int,
) -> None:
    """Keep the wanted messages of every readable chunk that starts in ``span``."""
    reader = ChunkReader(catalog.channels, catalog.schemas, part, codecs)
    part.damage = catalog.damage
    refs = [ref for ref in catalog.chunks if span.start <= ref.offset < span.end]
    with path.open("rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        chunks = _chunks(data, refs, reader, threads)
        try:
            for ref, unpacked in chunks:
                if isinstance(unpacked, str):
                    skip(catalog, ref, unpacked)
                    continue
                reader.take(*unpacked)
                part.complete_chunks += 1
                if part.peeked_enough():
                    return
        finally:
            chunks.close()


@dataclass(frozen=True)
class Peek:
    """What the start of a recording tells before an export: each robot's joint names and
    joint-state rate (from its first states), and how many ``/joints`` messages it recorded
    (from the summary: joint states, or blocks of them where the channel holds blocks; for
    a cut file, the states peeked)."""

    names: dict[str, list[str]]
    rate_hz: dict[str, float]
    joint_counts: dict[str, int]
    complete: bool
    blocks: bool = False  # every /joints channel holds blocks (twin.record.joint_blocks)


PEEK_STATES: Final = 512
"""Joint states a robot's rate is measured over: about a second of a 500 Hz robot. A gateway
that stamps at send time on a busy machine sends in bursts after a stall; over 64 states
(0.13 s) a burst at the window's start read a 500 Hz Kestrel as 518 Hz."""


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
            found = route(channel.topic, None)
            if found is not None and found[0] == "joints":
                counts[found[1]] = counts.get(found[1], 0) + per_channel.get(channel_id, 0)
    catalog = _catalog(path)
    part = Part({}, [], peek=PEEK_STATES, expect=frozenset(r for r, n in counts.items() if n))
    _read(path, catalog, ChunkSpan(0, path.stat().st_size), part, {}, 1)
    rates: dict[str, float] = {}
    for robot_id, series in part.robots.items():
        stamps = np.concatenate(series.joint_stamp_ns) if series.joint_stamp_ns else None
        rates[robot_id] = _mean_rate_hz(stamps)
    joints = [c for c in catalog.channels.values() if c.topic.startswith("/joints/")]
    schemas = catalog.schemas
    return Peek(
        {r: list(s.names) for r, s in part.robots.items()},
        rates,
        counts or {r: s.joint_count() for r, s in part.robots.items()},
        catalog.complete and bool(catalog.chunks),
        bool(joints)
        and all(
            is_block(getattr(schemas.get(c.schema_id), "name", ""), c.message_encoding)
            for c in joints
        ),
    )


GAP_INTERVALS: Final = 5.0  # an interval this many times the median is a gap, not jitter
MIN_GAP_S: Final = 0.5
"""...and at least this long: a recorder's chunk holds about a second, so a skipped one leaves a
gap of about that, while a gateway on a busy machine sends in bursts (a median interval of a
millisecond, then tens of milliseconds) that are its rate, not gaps."""


def _mean_rate_hz(stamps_ns: np.ndarray | None) -> float:
    """The mean rate over the peeked states (a median interval follows the jitter), leaving
    out gaps (a damaged chunk skipped between them) that would lower it."""
    if stamps_ns is None:
        return 0.0
    intervals = np.diff(np.sort(np.asarray(stamps_ns, dtype=np.int64)))
    if not len(intervals):
        return 0.0
    gap_ns = max(GAP_INTERVALS * float(np.median(intervals)), MIN_GAP_S * 1e9)
    kept = intervals[intervals <= gap_ns]
    total_ns = int(kept.sum())
    return len(kept) * 1e9 / total_ns if total_ns > 0 else 0.0
