"""The replay index: a recording's chunks, decoded on demand, a few kept (LRU).

What stays in memory for the whole replay is small and does not grow with the message
count: per chunk its first and last log time and where it lies
(:class:`twin.record.replay_chunks.ChunkCatalog`), and per stream (one channel: a robot's joint
states, base poses or heartbeats, a crane) the chunks that hold it. A chunk that a seek or
playback needs is read and decompressed into a :class:`ChunkView` (its records, and per
stream the log times and record offsets of its messages, in log order); the newest
views are kept, up to :data:`CACHE_BYTES` (but always two), and playing forward reads
the next chunk ahead on a thread, so playback streams through the file. A message is
named by its :data:`Key` ``(log_ns, chunk, offset, row)``: log time, then file order, as
a stable sort of the whole file by log time would order them, so the state at an
instant is exactly the newest message of each stream at or before it. ``row`` is -1 for
an ordinary message; a joint block (:mod:`twin.record.joint_blocks`) is one key per
state, at the state's own receive time, ``row`` its place in the block
(:func:`twin.record.replay_chunks.read_chunk`).

A chunk's first and last log times (from the file) bound its messages' log times, but
not its blocks' states: a block is logged at its first state's time, and its later
states may come after the chunk's last log time. As a robot's receive times do not go
back, a stream's newest state at or before an instant is still found (a later block is
logged after every state of the blocks before it); only the states of the block a
stream is in the middle of can lie past its chunk's end, and
:meth:`ChunkStore.latest_in` looks in the chunks it is told hold such blocks.
See :class:`twin.record.replay_source.ReplaySource`.
"""

from __future__ import annotations

import logging
import struct
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate, repeat
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from twin.record.chunks import ChunkCatalog, ChunkRef
from twin.record.replay_chunks import MESSAGE_DATA_AT, Rows, block_channels, read_chunk

log = logging.getLogger(__name__)

CACHE_BYTES: Final = 64_000_000  # decoded chunks kept: this much at most, beyond...
CACHE_CHUNKS: Final = 2  # ...the newest two (playback's chunk and the next)
LONG_CHUNK: Final = 4  # a chunk spanning more than this many times the median is long
Key = tuple[int, int, int, int]  # log time (ns), chunk (file order), record offset, row
_NONE: Final = np.zeros(0, dtype=np.int64)
_U64: Final = struct.Struct("<Q")
_LAST: Final = (1 << 63) - 1  # after every log time


def _ordered(
    times: NDArray[np.int64], offsets: NDArray[np.int64], rows: NDArray[np.int64]
) -> NDArray[np.intp] | None:
    """The order by (log time, offset, row), or None where the rows already are in it."""
    if len(times) < 2:
        return None
    step = np.diff(times)
    if bool(np.all(step > 0)):
        return None
    later = np.diff(offsets)
    if bool(
        np.all((step > 0) | ((step == 0) & ((later > 0) | ((later == 0) & (np.diff(rows) > 0)))))
    ):
        return None
    order: NDArray[np.intp] = np.lexsort((rows, offsets, times))
    return order


class ChunkView:
    """One chunk decoded: its records; per stream log times and :data:`Key` s in log
    order; and one merged timeline of them (log times, streams, keys)."""

    def __init__(
        self,
        number: int,
        records: bytes,
        rows: dict[int, Rows],
    ) -> None:
        self.number = number
        self.raw = records
        self.records = memoryview(records)
        self.times: dict[int, NDArray[np.int64]] = {}
        self.keys: dict[int, list[Key]] = {}
        for stream, (times, offsets, numbers) in rows.items():
            order = _ordered(times, offsets, numbers)
            if order is not None:
                times, offsets, numbers = times[order], offsets[order], numbers[order]
            self.times[stream] = times
            self.keys[stream] = list(
                zip(times.tolist(), repeat(number), offsets.tolist(), numbers.tolist())
            )
        streams = list(self.times)
        all_ns = np.concatenate([self.times[s] for s in streams]) if streams else _NONE
        merged = np.argsort(all_ns, kind="stable").tolist()
        ids = [s for s in streams for _ in range(len(self.times[s]))]
        keys = [key for s in streams for key in self.keys[s]]
        self.all_ns: list[int] = all_ns[merged].tolist()
        self.all_stream = [ids[i] for i in merged]
        self.all_key = [keys[i] for i in merged]

    def newest(self, stream: int, t_ns: int) -> Key | None:
        """This chunk's newest message of ``stream`` logged at or before ``t_ns``."""
        times = self.times.get(stream)
        if times is None:
            return None
        row = int(np.searchsorted(times, t_ns, side="right")) - 1
        return self.keys[stream][row] if row >= 0 else None

    def latest_in(self, old_ns: int, new_ns: int) -> dict[int, Key]:
        """Per stream, its newest message logged in (old, new]."""
        lo = bisect_right(self.all_ns, old_ns)
        hi = bisect_right(self.all_ns, new_ns, lo)
        return dict(zip(self.all_stream[lo:hi], self.all_key[lo:hi], strict=True))

    @property
    def nbytes(self) -> int:
        """Bytes held: records, arrays, and the lists at 8 bytes an entry (+ 80 a key)."""
        lists = 8 * (2 * len(self.all_ns) + len(self.all_key)) + 88 * len(self.all_key)
        return self.records.nbytes + sum(a.nbytes for a in self.times.values()) + lists


class _Span:
    """Some chunks: sorted by first log time, with the running maximum of their last log
    time (so a walk back in time knows when no earlier chunk can hold anything newer);
    but ``long`` ones (spanning much more log time than most, such as one holding events
    logged late), kept aside and looked at each time, lest they keep that bound high."""

    def __init__(self, chunks: list[int], refs: list[ChunkRef], long_ns: int) -> None:
        self.all = sorted(chunks)
        ordered = sorted(chunks, key=lambda c: (refs[c].start_ns, c))
        self.long = [c for c in ordered if refs[c].end_ns - refs[c].start_ns > long_ns]
        self.chunks = [c for c in ordered if refs[c].end_ns - refs[c].start_ns <= long_ns]
        self.starts = [refs[c].start_ns for c in self.chunks]
        self.max_end = list(accumulate((refs[c].end_ns for c in self.chunks), max))

    @property
    def nbytes(self) -> int:
        """At 8 bytes a list entry (the numbers themselves are shared or small)."""
        return 8 * (len(self.all) + len(self.long) + 3 * len(self.chunks))


class ChunkStore:
    """The chunks of one recording, for streams named by channel: decoded on demand."""

    def __init__(
        self,
        path: Path,
        catalog: ChunkCatalog,
        streams: dict[str, int],
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        """``streams``: topic -> stream number, for the topics replayed; ``cache_bytes``:
        what the decoded chunks kept may hold (but the newest :data:`CACHE_CHUNKS` are)."""
        self.path = path
        self.refs = catalog.chunks
        self._stream_of = {c: streams[t] for c, t in catalog.topics.items() if t in streams}
        self._wanted = set(self._stream_of)
        self.cache_bytes = cache_bytes
        self._held = 0  # bytes of the decoded chunks kept
        self._cache: OrderedDict[int, ChunkView] = OrderedDict()
        holding: dict[int, list[int]] = {s: [] for s in streams.values()}
        for number, ref in enumerate(self.refs):
            held = self._wanted if ref.channels is None else ref.channels & self._wanted
            for channel in held:
                holding[self._stream_of[channel]].append(number)
        # what most chunks span; but chunks of joint blocks alone (those a flush's blocks
        # overflowed into) span next to nothing, and do not count
        blocks = block_channels(catalog)
        mixed = [r for r in self.refs if r.channels is None or not r.channels <= blocks]
        spans = sorted(ref.end_ns - ref.start_ns for ref in mixed or self.refs)
        long_ns = LONG_CHUNK * spans[len(spans) // 2] + 1_000_000 if spans else 0
        self._spans = {s: _Span(chunks, self.refs, long_ns) for s, chunks in holding.items()}
        self._all = _Span(list(range(len(self.refs))), self.refs, long_ns)
        self._ends = [ref.end_ns for ref in self.refs]
        self._starts = [ref.start_ns for ref in self.refs]
        self.decoded = 0  # chunks read and decompressed so far
        self._catalog = catalog
        self._last = ChunkView(-1, b"", {})  # the chunk used last
        self._missed = -2  # the chunk read last
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Future[ChunkView]] | None = None

    def _load(self, number: int) -> ChunkView:
        """Read and decode chunk ``number`` (also on the read-ahead thread)."""
        read = read_chunk(self._catalog, self.refs[number], self._wanted)
        records, rows = read if read is not None else (b"", {})  # damaged: noted, left out
        return ChunkView(number, records, {self._stream_of[c]: r for c, r in rows.items()})

    def view(self, number: int) -> ChunkView:
        """Chunk ``number`` decoded (from the cache when it is there). Reading chunks in
        file order (playback) reads the next one ahead on a thread meanwhile."""
        view = self._cache.get(number)
        if view is not None:
            self._cache.move_to_end(number)
            self._last = view
            return view
        ahead, self._ahead = self._ahead, None
        view = ahead[1].result() if ahead is not None and ahead[0] == number else self._load(number)
        self.decoded += 1
        self._cache[number] = self._last = view
        self._held += view.nbytes
        while len(self._cache) > CACHE_CHUNKS and self._held > self.cache_bytes:
            self._held -= self._cache.popitem(last=False)[1].nbytes
        following = number + 1
        sequential = number == self._missed + 1
        if sequential and following < len(self.refs) and following not in self._cache:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="replay-read-ahead")
            self._ahead = (following, self._pool.submit(self._load, following))
        self._missed = number
        return view

    def locate(self, key: Key) -> tuple[ChunkView, int, int]:
        """Where the data of the message ``key`` names lies: its chunk, start, end."""
        view = self._last if self._last.number == key[1] else self.view(key[1])
        at = key[2]
        return view, at + MESSAGE_DATA_AT, at + 9 + _U64.unpack_from(view.raw, at + 1)[0]

    def data(self, key: Key) -> memoryview:
        """The data of the message ``key`` names."""
        view, start, end = self.locate(key)
        return view.records[start:end]

    def newest(self, stream: int, t_ns: int) -> Key | None:
        """The newest message of ``stream`` logged at or before ``t_ns``, if any."""
        span = self._spans[stream]
        best: Key | None = None
        for number in span.long:
            found = self.view(number).newest(stream, t_ns) if self._starts[number] <= t_ns else None
            if found is not None and (best is None or found > best):
                best = found
        j = bisect_right(span.starts, t_ns)
        while j > 0:
            j -= 1
            if best is not None and span.max_end[j] < best[0]:
                break  # no chunk from here back holds anything newer
            found = self.view(span.chunks[j]).newest(stream, t_ns)
            if found is not None and (best is None or found > best):
                best = found
        return best

    def oldest_ns(self, stream: int) -> int | None:
        """The log time of the first message of ``stream``, if any."""
        span = self._spans[stream]
        best: int | None = None
        for j in range(len(span.chunks)):
            if best is not None and span.starts[j] >= best:  # none holds one earlier
                break
            times = self.view(span.chunks[j]).times.get(stream)
            if times is not None and len(times) and (best is None or times[0] < best):
                best = int(times[0])
        for number in span.long:  # then the long ones that start early enough
            if best is not None and self._starts[number] >= best:
                continue
            times = self.view(number).times.get(stream)
            if times is not None and len(times) and (best is None or times[0] < best):
                best = int(times[0])
        return best

    def extent(self, streams: Iterable[int]) -> tuple[int, int] | None:
        """The first and the last log time of the messages of ``streams`` (None: none).
        Looked up stream by stream, in the order of the chunks they begin (end) in, so that
        each of those is read about once, however few chunks the cache keeps."""
        chosen = list(streams)
        firsts = sorted(chosen, key=lambda s: self._spans[s].chunks[:1])
        lasts = sorted(chosen, key=lambda s: self._spans[s].chunks[-1:], reverse=True)
        begins = [t for t in map(self.oldest_ns, firsts) if t is not None]
        ends = [k[0] for s in lasts if (k := self.newest(s, _LAST)) is not None]
        return (min(begins), max(ends)) if begins and ends else None

    def keys(self, stream: int) -> Iterator[Key]:
        """Every message of ``stream``, chunk by chunk (log order within each)."""
        for number in self._spans[stream].all:
            yield from self.view(number).keys.get(stream, [])

    def latest_in(self, old_ns: int, new_ns: int, also: Iterable[int] = ()) -> dict[int, Key]:
        """Per stream, its newest message logged in (old, new], over every chunk; ``also``:
        chunks holding the blocks that streams are in the middle of, looked in whatever
        their log times (see the module docstring)."""
        span, ends, starts = self._all, self._ends, self._starts
        chunks = list(dict.fromkeys(also))  # the chunks named, the long ones, back in time
        chunks += [c for c in span.long if starts[c] <= new_ns and ends[c] > old_ns]
        j = bisect_right(span.starts, new_ns)
        while j > 0:
            j -= 1
            if span.max_end[j] <= old_ns:
                break  # no chunk from here back holds anything logged after old
            if ends[span.chunks[j]] > old_ns:
                chunks.append(span.chunks[j])
        latest: dict[int, Key] = {}
        for number in dict.fromkeys(chunks):
            for stream, key in self.view(number).latest_in(old_ns, new_ns).items():
                if stream not in latest or key > latest[stream]:
                    latest[stream] = key
        return latest

    def clear(self) -> None:
        """Drop every decoded chunk; end the read-ahead thread."""
        self._cache.clear()
        self._held = 0
        self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def nbytes(self) -> int:
        """Bytes held: the chunk table, the per-stream spans and the decoded chunks."""
        spans = sum(s.nbytes for s in self._spans.values()) + self._all.nbytes
        return 64 * len(self.refs) + spans + self._held
