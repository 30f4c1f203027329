"""What a damaged or cut recording lost: the report every reader fills and every command prints.

A reader that meets a chunk failing its CRC, its decompression or its record walk skips it
(:mod:`twin.record.chunks` decides that, in one place) and notes a :class:`SkippedChunk`
here: its byte offset, the log times it held (ns, from its header or the chunk index) and,
where the message indexes tell, how many messages it held. A file that ends inside a record
(the twin was killed, the copy was cut) gets a :class:`Cut`: the byte where it ends and the
log time up to which it is whole. Bytes a stream pass could not read as records, up to the
next chunk it resynchronised on, are a :class:`Gap`.

:meth:`DamageReport.line` says all of that in one line (times in seconds from the
recording's start); :meth:`DamageReport.as_dict` is the same for JSON outputs. Commands that
do not hold the recording they read (``twin lessons learn``, ``twin resim``) gather the
reports of every recording opened meanwhile with :func:`collect_damage`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

_NS: Final = 1_000_000_000
SHOWN_CHUNKS: Final = 4  # chunks named one by one in a line; more are counted


@dataclass(frozen=True)
class SkippedChunk:
    """A chunk that did not read back and was skipped (times: log times in ns)."""

    offset: int  # of the chunk record in the file (bytes)
    start_ns: int  # its first message's log time
    end_ns: int  # its last message's log time
    messages: int | None  # messages it held; None where its indexes do not tell
    reason: str  # "CRC mismatch", "does not decompress (...)", "records do not parse (...)"


@dataclass(frozen=True)
class Cut:
    """Where a file ends inside a record, or before its data section ended."""

    size_bytes: int  # the file's size: the byte where it is cut
    record_offset: int  # where the record the cut splits starts (== size_bytes between records)
    whole_until_ns: int | None  # the last log time of the last whole chunk (None: no chunk)
    where: str  # "inside a chunk", "between records", "inside its summary", ...


@dataclass(frozen=True)
class Gap:
    """Bytes a stream pass could not read as records, skipped up to the next chunk."""

    start: int
    end: int


@dataclass
class DamageReport:
    """What one recording lost (empty when it read whole). Chunks are keyed by offset, so a
    chunk that several passes skip is counted once."""

    path: Path
    start_ns: int | None = None  # the recording's start: times in :meth:`line` count from it
    chunks: dict[int, SkippedChunk] = field(default_factory=dict)
    cut: Cut | None = None
    gaps: list[Gap] = field(default_factory=list)

    def skip(self, chunk: SkippedChunk) -> None:
        """Note a skipped chunk (once per offset); logged at INFO, the line says it to users."""
        if chunk.offset not in self.chunks:
            self.chunks[chunk.offset] = chunk
            log.info("%s: skipped the chunk at byte %d (%s)", self.path, chunk.offset, chunk.reason)

    @property
    def skipped(self) -> list[SkippedChunk]:
        """The skipped chunks in file order."""
        return [self.chunks[k] for k in sorted(self.chunks)]

    @property
    def damaged(self) -> bool:
        """Whether anything was skipped or cut off."""
        return bool(self.chunks or self.cut or self.gaps)

    @property
    def messages_lost(self) -> int | None:
        """Messages of the skipped chunks; None where some chunk's count is not known."""
        counts = [c.messages for c in self.chunks.values()]
        return None if any(n is None for n in counts) else sum(n for n in counts if n)

    def merge(self, other: DamageReport) -> None:
        """Take in what another reader of the same file found."""
        for chunk in other.chunks.values():
            self.skip(chunk)
        self.cut = self.cut or other.cut
        self.gaps += [g for g in other.gaps if g not in self.gaps]
        if self.start_ns is None:
            self.start_ns = other.start_ns

    def _t(self, t_ns: int) -> str:
        return f"{(t_ns - (self.start_ns or 0)) / _NS:.2f}"

    def line(self) -> str:
        """The one line that says what was skipped; "" when nothing was."""
        if not self.damaged:
            return ""
        if self.chunks or self.gaps:
            return f"{self.path}: damaged recording: {self.describe()}; read the rest"
        return f"{self.path}: cut recording: {self.describe()}; read up to the cut"

    def describe(self) -> str:
        """What was skipped or cut off, without the file's name ("" when nothing was)."""
        parts = []
        skipped = self.skipped
        if skipped:
            shown = [
                f"t {self._t(c.start_ns)}..{self._t(c.end_ns)} s at byte {c.offset}: {c.reason}"
                for c in skipped[:SHOWN_CHUNKS]
            ]
            if len(skipped) > SHOWN_CHUNKS:
                shown.append(f"{len(skipped) - SHOWN_CHUNKS} more")
            lost = self.messages_lost
            count = "an unknown number of" if lost is None else f"{lost}"
            noun = "chunk" if len(skipped) == 1 else "chunks"
            parts.append(
                f"skipped {len(skipped)} {noun} ({'; '.join(shown)}), {count} messages lost"
            )
        if self.gaps:
            spans = ", ".join(f"{g.start}..{g.end}" for g in self.gaps[:SHOWN_CHUNKS])
            parts.append(f"unreadable bytes {spans} skipped up to the next chunk")
        if self.cut is not None:
            cut = self.cut
            whole = (
                "no whole chunk before it"
                if cut.whole_until_ns is None
                else f"whole up to t {self._t(cut.whole_until_ns)} s"
            )
            parts.append(f"cut at byte {cut.size_bytes} ({cut.where}), {whole}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The report for JSON outputs (times in ns, and in s from the start)."""
        return {
            "damaged": self.damaged,
            "skipped_chunks": [
                {
                    "offset": c.offset,
                    "start_ns": c.start_ns,
                    "end_ns": c.end_ns,
                    "start_s": float(self._t(c.start_ns)),
                    "end_s": float(self._t(c.end_ns)),
                    "messages": c.messages,
                    "reason": c.reason,
                }
                for c in self.skipped
            ],
            "messages_lost": self.messages_lost,
            "unreadable_bytes": [[g.start, g.end] for g in self.gaps],
            "cut": None
            if self.cut is None
            else {
                "at_byte": self.cut.size_bytes,
                "record_offset": self.cut.record_offset,
                "where": self.cut.where,
                "whole_until_ns": self.cut.whole_until_ns,
            },
        }


_collecting: ContextVar[list[DamageReport] | None] = ContextVar("damage_reports", default=None)


def noticed(report: DamageReport) -> DamageReport:
    """Hand ``report`` to the :func:`collect_damage` block around this call, if any."""
    found = _collecting.get()
    if found is not None:
        found.append(report)
    return report


@contextmanager
def collect_damage() -> Iterator[list[DamageReport]]:
    """The damage reports of every recording opened in the block (filled as it reads)."""
    found: list[DamageReport] = []
    token = _collecting.set(found)
    try:
        yield found
    finally:
        _collecting.reset(token)


def damage_lines(reports: list[DamageReport]) -> list[str]:
    """One line per damaged file (reports of the same file merged)."""
    by_path: dict[Path, DamageReport] = {}
    for report in reports:
        if report.path in by_path:
            by_path[report.path].merge(report)
        else:
            merged = DamageReport(report.path, report.start_ns)
            merged.merge(report)
            by_path[report.path] = merged
    return [r.line() for r in by_path.values() if r.damaged]
