"""A chunked MCAP writer for many small messages: the recorder's writer.

Built on the ``mcap`` package's documented record API (:mod:`mcap.records`,
:class:`mcap.data_stream.RecordBuilder`): every record is one of its classes except
the two written per message or per channel in a chunk, ``Message`` and
``MessageIndex``, which are packed here directly in the layout the MCAP specification
gives (and :mod:`mcap.records` reads), because ``mcap.writer.Writer`` spends about
10 µs a message building them field by field and cannot keep up with 100 robots at
500 Hz. What differs from ``mcap.writer.Writer``:

- a message costs one ``struct.pack`` and two ``bytearray`` appends; its index entry
  is appended to per-channel ``array('Q')`` buffers, written at the chunk's end;
- schemas and channels are written in the data section as they are registered (not
  inside the first chunk), so a file cut anywhere after them still names its channels;
- a closed chunk is compressed (zstd level 1 by default: about the ratio of level 3 at
  2.6x its speed on recorder data) and written by one background thread when
  ``background=True``; zstd, lz4 and crc32 release the GIL, so that work runs beside
  the caller. Writes keep their order (one queue); :meth:`flush` and :meth:`finish`
  wait for the thread; an error in it (disk full) is raised by the next call.

The summary section (schemas, channels, statistics, chunk, attachment and metadata
indexes, summary offsets) and the footer are those ``mcap.writer.Writer`` writes.
"""

from __future__ import annotations

import functools
import logging
import queue
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Final

import zstandard
from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Attachment,
    AttachmentIndex,
    Channel,
    Chunk,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    McapRecord,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)
from mcap.writer import CompressionType

log = logging.getLogger(__name__)

MAGIC: Final = b"\x89MCAP0\r\n"
_MESSAGE_HEAD: Final = struct.Struct("<BQHIQQ")  # opcode, length, channel, seq, log, publish
_MESSAGE_FIXED: Final = 2 + 4 + 8 + 8
_INDEX_HEAD: Final = struct.Struct("<BQHI")  # opcode, length, channel, records length
_FOOTER_HEAD: Final = struct.Struct("<BQQQ")
ZSTD_LEVEL: Final = 1
_MESSAGE: Final = int(Opcode.MESSAGE)
QUEUE_CHUNKS: Final = 4


def record_bytes(*records: McapRecord) -> bytes:
    """The records, serialised by :mod:`mcap.records`."""
    builder = RecordBuilder()
    for record in records:
        record.write(builder)
    data: bytes = builder.end()  # type: ignore[no-untyped-call]
    return data


class McapWriteError(OSError):
    """Writing the recording failed (said why, in one line)."""


def compressor(compression: CompressionType) -> tuple[str, Callable[[bytes], bytes] | None]:
    """The MCAP compression name and function for ``compression``."""
    if compression == CompressionType.ZSTD:
        return "zstd", zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
    if compression == CompressionType.LZ4:
        import lz4.frame  # type: ignore[import-untyped]

        compress: Callable[[bytes], bytes] = lz4.frame.compress
        return "lz4", compress
    return "", None


@dataclass
class _OpenChunk:
    """The chunk being filled: message records and per-channel (log time, offset) pairs."""

    data: bytearray = field(default_factory=bytearray)
    index: dict[int, array[int]] = field(default_factory=dict)
    start_ns: int = 2**64 - 1
    end_ns: int = 0
    messages: int = 0


@dataclass
class _Summary:
    """What the summary section needs; appended to by whoever writes the data section."""

    chunk_indexes: list[ChunkIndex] = field(default_factory=list)
    attachment_indexes: list[AttachmentIndex] = field(default_factory=list)
    metadata_indexes: list[MetadataIndex] = field(default_factory=list)


class ChunkedMcapWriter:
    """Writes an indexed, chunked MCAP file to ``stream`` (a binary file open for writing)."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        chunk_size_bytes: int,
        compression: CompressionType = CompressionType.ZSTD,
        profile: str = "",
        library: str = "",
        background: bool = True,
    ) -> None:
        self._stream = stream
        self.chunk_size_bytes = chunk_size_bytes
        self._compression, self._compress = compressor(compression)
        self._schemas: dict[int, Schema] = {}
        self._channels: dict[int, Channel] = {}
        self._channel_counts: dict[int, int] = {}
        self._summary = _Summary()
        self._stats = Statistics(
            attachment_count=0,
            channel_count=0,
            channel_message_counts={},
            chunk_count=0,
            message_count=0,
            metadata_count=0,
            message_start_time=0,
            message_end_time=0,
            schema_count=0,
        )
        self._chunk = _OpenChunk()
        self._finished = False
        self._error: BaseException | None = None
        self._queue: queue.Queue[Callable[[], object] | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=QUEUE_CHUNKS)
            self._thread = threading.Thread(target=self._work, name="mcap-writer", daemon=True)
            self._thread.start()
        self._submit_bytes(MAGIC + record_bytes(Header(profile=profile, library=library)))

    # --- registration and file-level records ---------------------------------------

    def register_schema(self, name: str, encoding: str, data: bytes) -> int:
        """A new schema; returns its id (1, 2, ...)."""
        schema_id = len(self._schemas) + 1
        schema = Schema(id=schema_id, name=name, encoding=encoding, data=data)
        self._schemas[schema_id] = schema
        self._write_record(schema)
        return schema_id

    def register_channel(
        self,
        topic: str,
        message_encoding: str,
        schema_id: int,
        metadata: dict[str, str] | None = None,
    ) -> int:
        """A new channel; returns its id (1, 2, ...). ``schema_id`` 0: schema-less."""
        if schema_id != 0 and schema_id not in self._schemas:
            raise ValueError(f"channel {topic!r}: unknown schema id {schema_id}")
        channel_id = len(self._channels) + 1
        channel = Channel(
            id=channel_id,
            topic=topic,
            message_encoding=message_encoding,
            schema_id=schema_id,
            metadata=dict(metadata or {}),
        )
        self._channels[channel_id] = channel
        self._channel_counts[channel_id] = 0
        self._write_record(channel)
        return channel_id

    def add_attachment(
        self, create_time: int, log_time: int, name: str, media_type: str, data: bytes
    ) -> None:
        """An attachment record (indexed in the summary)."""
        self._stats.attachment_count += 1
        attachment = Attachment(
            create_time=create_time, log_time=log_time, name=name, media_type=media_type, data=data
        )

        def write() -> None:
            offset = self._stream.tell()
            record = record_bytes(attachment)
            self._stream.write(record)
            self._summary.attachment_indexes.append(
                AttachmentIndex(
                    offset=offset,
                    length=len(record),
                    log_time=log_time,
                    create_time=create_time,
                    data_size=len(data),
                    name=name,
                    media_type=media_type,
                )
            )

        self._close_chunk()
        self._submit(write)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """A metadata record (indexed in the summary)."""
        self._stats.metadata_count += 1
        metadata = Metadata(name=name, metadata=dict(data))

        def write() -> None:
            offset = self._stream.tell()
            record = record_bytes(metadata)
            self._stream.write(record)
            self._summary.metadata_indexes.append(
                MetadataIndex(offset=offset, length=len(record), name=name)
            )

        self._close_chunk()
        self._submit(write)

    def _write_record(self, record: Schema | Channel) -> None:
        """A schema or channel record in the data section, ahead of any message of it."""
        self._close_chunk()
        self._submit_bytes(record_bytes(record))

    # --- messages: the hot path ----------------------------------------------------

    def add_message(
        self, channel_id: int, log_time: int, data: bytes, publish_time: int, sequence: int = 0
    ) -> None:
        """One message into the open chunk (closed when it reaches ``chunk_size_bytes``)."""
        chunk = self._chunk
        buffer = chunk.data
        entries = chunk.index.get(channel_id)
        if entries is None:
            if channel_id not in self._channels:
                raise ValueError(f"message on unknown channel id {channel_id}")
            entries = chunk.index[channel_id] = array("Q")
        entries.append(log_time)
        entries.append(len(buffer))
        buffer += _MESSAGE_HEAD.pack(
            _MESSAGE, _MESSAGE_FIXED + len(data), channel_id, sequence, log_time, publish_time
        )
        buffer += data
        if log_time < chunk.start_ns:
            chunk.start_ns = log_time
        if log_time > chunk.end_ns:
            chunk.end_ns = log_time
        chunk.messages += 1
        if len(buffer) >= self.chunk_size_bytes:
            self._close_chunk()

    def _close_chunk(self) -> None:
        """Hand the open chunk to the writing side (nothing if it holds no message)."""
        if self._error is not None:
            self._raise()
        chunk = self._chunk
        if chunk.messages == 0:
            return
        self._chunk = _OpenChunk()
        stats = self._stats
        if stats.message_count == 0 or chunk.start_ns < stats.message_start_time:
            stats.message_start_time = chunk.start_ns
        stats.message_end_time = max(stats.message_end_time, chunk.end_ns)
        stats.message_count += chunk.messages
        stats.chunk_count += 1
        counts = self._channel_counts
        for channel_id, entries in chunk.index.items():
            counts[channel_id] += len(entries) // 2
        self._submit(lambda: self._write_chunk(chunk))

    def _write_chunk(self, chunk: _OpenChunk) -> None:
        """Compress and write a chunk and its message indexes; index it (writing side)."""
        raw = bytes(chunk.data)
        compressed = raw if self._compress is None else self._compress(raw)
        record = Chunk(
            message_start_time=chunk.start_ns,
            message_end_time=chunk.end_ns,
            uncompressed_size=len(raw),
            uncompressed_crc=zlib.crc32(raw),
            compression=self._compression,
            data=compressed,
        )
        chunk_bytes = record_bytes(record)
        stream = self._stream
        chunk_start = stream.tell()
        stream.write(chunk_bytes)
        index_start = chunk_start + len(chunk_bytes)
        offsets: dict[int, int] = {}
        parts: list[bytes] = []
        position = index_start
        for channel_id in sorted(chunk.index):
            entries = chunk.index[channel_id]
            body = entries.tobytes()
            head = _INDEX_HEAD.pack(Opcode.MESSAGE_INDEX, 6 + len(body), channel_id, len(body))
            offsets[channel_id] = position
            parts += (head, body)
            position += len(head) + len(body)
        stream.write(b"".join(parts))
        self._summary.chunk_indexes.append(
            ChunkIndex(
                message_start_time=chunk.start_ns,
                message_end_time=chunk.end_ns,
                chunk_start_offset=chunk_start,
                chunk_length=len(chunk_bytes),
                message_index_offsets=offsets,
                message_index_length=position - index_start,
                compression=self._compression,
                compressed_size=len(compressed),
                uncompressed_size=len(raw),
            )
        )

    # --- the writing side ----------------------------------------------------------

    def _submit_bytes(self, data: bytes) -> None:
        self._submit(functools.partial(self._stream.write, data))

    def _submit(self, job: Callable[[], object]) -> None:
        if self._queue is None:
            job()
        else:
            self._queue.put(job)

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as exc:  # kept and raised in the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _wait(self) -> None:
        if self._queue is not None:
            self._queue.join()
        if self._error is not None:
            self._raise()

    def _raise(self) -> None:
        error = self._error
        if isinstance(error, OSError):
            raise McapWriteError(f"writing the recording failed: {error.strerror or error}")
        raise McapWriteError(f"writing the recording failed: {error!r}")

    def flush(self) -> None:
        """Close the open chunk, write everything pending and flush the stream to the OS."""
        self._close_chunk()
        self._submit(self._stream.flush)
        self._wait()

    def settle(self) -> None:
        """Wait until the writing thread has done what it was given (nothing new is
        closed); raise its error, if any."""
        self._wait()

    def flush_soon(self) -> None:
        """:meth:`flush` without waiting: the writing thread does it when it gets there."""
        self._close_chunk()
        self._submit(self._stream.flush)

    def finish(self) -> None:
        """The last chunk, the data end, summary and footer; stops the thread. The stream
        is left open (as ``mcap.writer.Writer.finish`` leaves it)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._close_chunk()
            self._wait()
        finally:
            if self._queue is not None and self._thread is not None:
                self._queue.put(None)
                self._thread.join()
        self._write_summary()

    def _write_summary(self) -> None:
        stream = self._stream
        stream.write(record_bytes(DataEnd(data_section_crc=0)))
        summary_start = stream.tell()
        summary = RecordBuilder()
        offsets: list[SummaryOffset] = []
        stats = self._stats
        stats.schema_count = len(self._schemas)
        stats.channel_count = len(self._channels)
        stats.channel_message_counts = {k: v for k, v in self._channel_counts.items() if v}
        groups: list[tuple[Opcode, Sequence[McapRecord]]] = [
            (Opcode.SCHEMA, list(self._schemas.values())),
            (Opcode.CHANNEL, list(self._channels.values())),
            (Opcode.STATISTICS, [stats]),
            (Opcode.CHUNK_INDEX, self._summary.chunk_indexes),
            (Opcode.ATTACHMENT_INDEX, self._summary.attachment_indexes),
            (Opcode.METADATA_INDEX, self._summary.metadata_indexes),
        ]
        for opcode, records in groups:
            start = summary.count
            for record in records:
                record.write(summary)
            offsets.append(
                SummaryOffset(
                    group_opcode=opcode,
                    group_start=summary_start + start,
                    group_length=summary.count - start,
                )
            )
        summary_offset_start = summary_start + summary.count
        for offset in offsets:
            offset.write(summary)
        data: bytes = summary.end()  # type: ignore[no-untyped-call]
        crc = zlib.crc32(data)
        crc = zlib.crc32(
            _FOOTER_HEAD.pack(Opcode.FOOTER, 20, summary_start, summary_offset_start), crc
        )
        stream.write(data)
        footer = Footer(
            summary_start=summary_start, summary_offset_start=summary_offset_start, summary_crc=crc
        )
        stream.write(record_bytes(footer) + MAGIC)
        stream.flush()
