"""Reading a twin recording (MCAP), including what a damaged or cut file still holds.

:func:`open_recording` reads a file written by :class:`twin.record.recorder.Recorder` with
the independent ``mcap`` reader. A complete file is read through its summary and
indexes. A file without a usable footer (the twin was killed, the disk filled up, the
copy was cut) is read from the start instead, up to the cut. Either way messages come
chunk by chunk through :mod:`twin.record.chunks`: a chunk that fails its CRC, does not
decompress or whose records do not parse is skipped, the rest of the file is read, and
:attr:`Recording.damage` says what was skipped or cut off (one line for users:
:meth:`twin.record.damage.DamageReport.line`). Nothing half-written is ever returned.

Problems come as one :class:`RecordingError` with a readable reason; a file whose chunks
hold no readable message at all is one too.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Message

from twin.record.chunks import MCAP_MAGIC, ChunkCatalog, chunk_catalog, read_checked, skip
from twin.record.damage import DamageReport

log = logging.getLogger(__name__)

SCENE_ATTACHMENT: Final = "scene.yaml"
_RECORD: Final = struct.Struct("<BQ")

__all__ = ["MCAP_MAGIC", "SCENE_ATTACHMENT", "RecordedMessage", "Recording", "RecordingError"]


class RecordingError(ValueError):
    """A file that cannot be read as a twin recording (the message says why)."""


@dataclass(frozen=True)
class RecordedMessage:
    """One message of a recording."""

    topic: str
    log_time_ns: int
    publish_time_ns: int
    sequence: int
    data: bytes
    message_encoding: str
    schema_name: str


@dataclass
class Recording:
    """A recording's contents: metadata, attachments, channels and messages."""

    path: Path
    metadata: dict[str, dict[str, str]]
    attachments: dict[str, bytes]
    complete: bool  # False: no usable summary/footer; read up to the cut
    _catalog: ChunkCatalog | None = field(default=None, repr=False)

    @property
    def scene_text(self) -> str:
        """The scene YAML the twin ran with."""
        return self.attachments[SCENE_ATTACHMENT].decode("utf-8")

    @property
    def catalog(self) -> ChunkCatalog:
        """Where the chunks lie (read once), and the damage found reading them so far."""
        if self._catalog is None:
            self._catalog = chunk_catalog(self.path)
            self.complete = self.complete and self._catalog.complete
        return self._catalog

    @property
    def damage(self) -> DamageReport:
        """What was skipped or cut off, as far as the file has been read (a pass over all
        messages finds every damaged chunk; a cut is known from the start)."""
        return self.catalog.damage

    def iter_messages(self, topics: Iterable[str] | None = None) -> Iterator[RecordedMessage]:
        """Messages in file order (log time within a chunk), optionally of some topics,
        chunk by chunk (one chunk in memory at a time); damaged chunks are skipped (see
        :attr:`damage`). RecordingError if no chunk of the file reads back at all."""
        wanted = None if topics is None else set(topics)
        catalog = self.catalog
        channels = catalog.channels
        ids = {i for i, c in channels.items() if wanted is None or c.topic in wanted}
        for ref in catalog.chunks:  # every chunk, so that every damaged one is found
            records = read_checked(catalog, ref)
            if records is None or (ref.channels is not None and ref.channels.isdisjoint(ids)):
                continue  # damaged; or checked whole, and none of its messages are wanted
            try:
                messages = _chunk_messages(records, ids)
            except Exception as exc:  # whole and checked, yet its records do not parse
                skip(catalog, ref, f"records do not parse ({type(exc).__name__})")
                continue
            for message in messages:
                channel = channels[message.channel_id]
                schema = catalog.schemas.get(channel.schema_id)
                yield RecordedMessage(
                    topic=channel.topic,
                    log_time_ns=message.log_time,
                    publish_time_ns=message.publish_time,
                    sequence=message.sequence,
                    data=message.data,
                    message_encoding=channel.message_encoding,
                    schema_name=schema.name if schema is not None else "",
                )
        if nothing_readable(catalog):
            raise RecordingError(no_readable_messages(self.damage))

    def summary(self) -> dict[str, Any]:
        """Channels, message counts per channel, first and last log time (ns): from the
        statistics of a complete undamaged file, else by reading every message."""
        counts: Counter[str] = Counter()
        start_ns: int | None = None
        end_ns: int | None = None
        if self.complete and not self.damage.damaged:
            with self.path.open("rb") as stream:
                summary = make_reader(stream).get_summary()
            if summary is not None and summary.statistics is not None:
                stats = summary.statistics
                for channel_id, count in stats.channel_message_counts.items():
                    counts[summary.channels[channel_id].topic] = count
                channels = sorted(c.topic for c in summary.channels.values())
                return {
                    "complete": True,
                    "channels": channels,
                    "message_counts": dict(sorted(counts.items())),
                    "messages": stats.message_count,
                    "start_ns": stats.message_start_time if stats.message_count else None,
                    "end_ns": stats.message_end_time if stats.message_count else None,
                }
        for recorded in self.iter_messages():
            counts[recorded.topic] += 1
            t = recorded.log_time_ns
            start_ns = t if start_ns is None else min(start_ns, t)
            end_ns = t if end_ns is None else max(end_ns, t)
        return {
            "complete": self.complete,
            "channels": sorted(counts),
            "message_counts": dict(sorted(counts.items())),
            "messages": sum(counts.values()),
            "start_ns": start_ns,
            "end_ns": end_ns,
        }


def nothing_readable(catalog: ChunkCatalog) -> bool:
    """Whether the file is damaged and every chunk it has was skipped (or it has none)."""
    damage = catalog.damage
    return damage.damaged and len(damage.chunks) >= len(catalog.chunks)


def no_readable_messages(damage: DamageReport) -> str:
    """The one line for a file none of whose chunks reads back."""
    found = damage.describe()
    return f"{damage.path}: no readable messages" + (f" ({found})" if found else "")


_RECORD_HEAD: Final = struct.Struct("<BQ")  # opcode, content length
_MESSAGE_HEAD: Final = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time


def _chunk_messages(records: bytes, ids: set[int]) -> list[Message]:
    """The messages of ``ids`` in a chunk's checked records. Only record heads are unpacked
    on the way (a message of another channel costs two ``unpack_from``, not ``mcap``'s record
    parsing): a pass for one topic over a hall's recording reads ~10x faster."""
    out: list[Message] = []
    size = len(records)
    offset = 0
    head, message_head = _RECORD_HEAD, _MESSAGE_HEAD
    while offset < size:
        opcode, length = head.unpack_from(records, offset)
        offset += head.size
        end = offset + length
        if end > size:
            raise ValueError(f"a record runs {end - size} bytes past its chunk")
        if opcode == Opcode.MESSAGE:
            channel_id, sequence, log_time, publish_time = message_head.unpack_from(records, offset)
            if channel_id in ids:
                data = records[offset + message_head.size : end]
                out.append(
                    Message(
                        channel_id=channel_id,
                        log_time=log_time,
                        data=data,
                        publish_time=publish_time,
                        sequence=sequence,
                    )
                )
        offset = end
    return out


def open_recording(path: str | Path) -> Recording:
    """Open a recording; RecordingError if it is not one (or holds no scene)."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(len(MCAP_MAGIC) + _RECORD.size)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    magic = head[: len(MCAP_MAGIC)]
    if not head:
        raise RecordingError(f"{path}: empty file, not an MCAP recording")
    if magic != MCAP_MAGIC[: len(magic)]:
        raise RecordingError(f"{path}: not an MCAP file (no MCAP magic at the start)")
    if len(head) < len(MCAP_MAGIC) + _RECORD.size:
        raise RecordingError(f"{path}: truncated header ({len(head)} bytes)")
    _, header_length = _RECORD.unpack_from(head, len(MCAP_MAGIC))
    if len(MCAP_MAGIC) + _RECORD.size + header_length > path.stat().st_size:
        raise RecordingError(f"{path}: truncated header (no complete MCAP header record)")
    metadata: dict[str, dict[str, str]] = {}
    attachments: dict[str, bytes] = {}
    catalog: ChunkCatalog | None = None
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream)
            if reader.get_summary() is None:
                raise ValueError("no summary section")
            for item in reader.iter_metadata():
                metadata[item.name] = dict(item.metadata)
            for attachment in reader.iter_attachments():
                attachments[attachment.name] = attachment.data
    except Exception as exc:  # no footer or summary: the file was cut; read from the start
        log.info("%s: no usable summary (%r); reading up to the cut", path, exc)
        catalog = chunk_catalog(path, attachments=True)
        metadata, attachments = catalog.metadata, catalog.attachments
    if SCENE_ATTACHMENT not in attachments:
        raise RecordingError(
            f"{path}: missing attachments: no {SCENE_ATTACHMENT!r} (not a twin recording, "
            "or cut before its attachments)"
        )
    return Recording(path, metadata, attachments, catalog is None, catalog)
