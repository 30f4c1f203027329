"""Reading a twin recording (MCAP), including what a cut-off file still holds.

:func:`open_recording` reads a file written by :class:`twin.record.recorder.Recorder` with
the independent ``mcap`` reader. A complete file is read through its summary and
indexes. A file without a usable footer (the twin was killed, the disk filled up, the
copy was cut) is read from the start instead: every record up to the cut is parsed and
every message of every *complete* chunk is kept (a chunk cut in two fails its length,
decompression or CRC check and is dropped with everything after it), so nothing
half-written is ever returned.

Problems come as one :class:`RecordingError` with a readable reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Attachment, Channel, Chunk, Message, Metadata, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

log = logging.getLogger(__name__)

MCAP_MAGIC: Final = b"\x89MCAP0\r\n"
SCENE_ATTACHMENT: Final = "scene.yaml"


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
    _messages: list[RecordedMessage] | None = field(default=None, repr=False)

    @property
    def scene_text(self) -> str:
        """The scene YAML the twin ran with."""
        return self.attachments[SCENE_ATTACHMENT].decode("utf-8")

    def iter_messages(self, topics: Iterable[str] | None = None) -> Iterator[RecordedMessage]:
        """Messages in file order (log time within a chunk), optionally of some topics."""
        wanted = None if topics is None else set(topics)
        if self.complete:
            # chunk by chunk in file order, one chunk in memory at a time (mcap's seeking
            # reader, even with log_time_order=False, queues every chunk before the first
            # message: memory grew with the file, ~9 GB for 10 min of a 20-robot hall)
            for recorded in _stream_messages(self.path):
                if wanted is None or recorded.topic in wanted:
                    yield recorded
            return
        if self._messages is None:
            self._messages = list(_stream_messages(self.path))
        for recorded in self._messages:
            if wanted is None or recorded.topic in wanted:
                yield recorded

    def summary(self) -> dict[str, Any]:
        """Channels, message counts per channel, first and last log time (ns)."""
        counts: Counter[str] = Counter()
        start_ns: int | None = None
        end_ns: int | None = None
        if self.complete:
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


def _message(schema: Schema | None, channel: Channel, message: Message) -> RecordedMessage:
    return RecordedMessage(
        topic=channel.topic,
        log_time_ns=message.log_time,
        publish_time_ns=message.publish_time,
        sequence=message.sequence,
        data=message.data,
        message_encoding=channel.message_encoding,
        schema_name=schema.name if schema is not None else "",
    )


def _records(path: Path) -> Iterator[Any]:
    """Every complete record from the start (chunks whole), stopping quietly at a cut."""
    with path.open("rb") as stream:
        records = StreamReader(stream, emit_chunks=True, record_size_limit=1 << 30).records
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # a cut record: EndOfFile, short read, bad opcode data
                log.info("%s: stopped reading at a cut or damaged record (%r)", path, exc)
                return
            yield record


def _stream_messages(path: Path) -> Iterator[RecordedMessage]:
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    for record in _records(path):
        inner: list[Any] = [record]
        if isinstance(record, Chunk):
            try:
                inner = breakup_chunk(record, validate_crc=True)
            except Exception as exc:  # a chunk cut short: fails decompression or its CRC
                log.info("%s: dropped a cut chunk (%r)", path, exc)
                return
        for item in inner:
            if isinstance(item, Schema):
                schemas[item.id] = item
            elif isinstance(item, Channel):
                channels[item.id] = item
            elif isinstance(item, Message) and item.channel_id in channels:
                channel = channels[item.channel_id]
                yield _message(schemas.get(channel.schema_id), channel, item)


def open_recording(path: str | Path) -> Recording:
    """Open a recording; RecordingError if it is not one (or holds no scene)."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(len(MCAP_MAGIC))
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    if not head:
        raise RecordingError(f"{path}: empty file, not an MCAP recording")
    if head != MCAP_MAGIC[: len(head)]:
        raise RecordingError(f"{path}: not an MCAP file (no MCAP magic at the start)")
    if len(head) < len(MCAP_MAGIC):
        raise RecordingError(f"{path}: truncated header ({len(head)} bytes)")
    metadata: dict[str, dict[str, str]] = {}
    attachments: dict[str, bytes] = {}
    complete = True
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream)
            summary = reader.get_summary()
            if summary is None:
                raise McapError("no summary section")
            for item in reader.iter_metadata():
                metadata[item.name] = dict(item.metadata)
            for attachment in reader.iter_attachments():
                attachments[attachment.name] = attachment.data
    except Exception as exc:  # no footer or summary: the file was cut; read from the start
        log.info("%s: no usable summary (%r); reading up to the cut", path, exc)
        complete = False
        metadata, attachments = {}, {}
        seen_header = False
        for record in _records(path):
            seen_header = True
            if isinstance(record, Metadata):
                metadata[record.name] = dict(record.metadata)
            elif isinstance(record, Attachment):
                attachments[record.name] = record.data
        if not seen_header:
            raise RecordingError(
                f"{path}: truncated header (no complete MCAP header record)"
            ) from None
    if SCENE_ATTACHMENT not in attachments:
        raise RecordingError(
            f"{path}: missing attachments: no {SCENE_ATTACHMENT!r} (not a twin recording, "
            "or cut before its attachments)"
        )
    return Recording(path, metadata, attachments, complete)
