"""The recorder's MCAP writer, checked record by record with the plain ``mcap`` readers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message, MessageIndex
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType

from twin.record.mcap_writer import ChunkedMcapWriter, McapWriteError


def write_sample(
    stream: io.BufferedWriter | io.BytesIO, compression: CompressionType, *, background: bool
) -> list[tuple[str, int, int, int, bytes]]:
    """Three channels, 600 messages, small chunks; returns what was written, in order."""
    writer = ChunkedMcapWriter(
        stream,
        chunk_size_bytes=4096,
        compression=compression,
        profile="test",
        library="hall-twin/test",
        background=background,
    )
    schema = writer.register_schema("t.Point", "jsonschema", b'{"type":"object"}')
    channels = {
        "/a": writer.register_channel("/a", "json", schema),
        "/b": writer.register_channel("/b", "json", schema, {"unit": "m"}),
        "/raw": writer.register_channel("/raw", "hall-twin-v1", 0),
    }
    writer.add_attachment(5, 6, "scene.yaml", "application/yaml", b"name: hall\n")
    writer.add_metadata("twin", {"twin_version": "test"})
    written = []
    for i in range(600):
        topic = ("/a", "/b", "/raw")[i % 3]
        data = b'{"x":%d}' % i if topic != "/raw" else bytes([i % 256]) * (i % 40)
        log_ns = 1_000_000_000 + i * 1_000_000 - (i % 7) * 10  # not quite in order
        writer.add_message(channels[topic], log_ns, data, log_ns - 5, i)
        written.append((topic, log_ns, log_ns - 5, i, data))
    writer.finish()
    return written


@pytest.mark.parametrize(
    "compression", [CompressionType.ZSTD, CompressionType.LZ4, CompressionType.NONE]
)
@pytest.mark.parametrize("background", [True, False])
def test_the_plain_reader_reads_back_every_message_and_the_summary(
    compression: CompressionType, background: bool
) -> None:
    stream = io.BytesIO()
    written = write_sample(stream, compression, background=background)
    stream.seek(0)
    reader = make_reader(stream)
    got = [
        (c.topic, m.log_time, m.publish_time, m.sequence, m.data)
        for _, c, m in reader.iter_messages(log_time_order=False)
    ]
    assert got == written
    summary = reader.get_summary()
    assert summary is not None and summary.statistics is not None
    stats = summary.statistics
    assert stats.message_count == 600
    assert stats.message_start_time == min(w[1] for w in written)
    assert stats.message_end_time == max(w[1] for w in written)
    assert stats.chunk_count == len(summary.chunk_indexes) >= 5
    topics = {c.id: c.topic for c in summary.channels.values()}
    assert {topics[k]: v for k, v in stats.channel_message_counts.items()} == {
        "/a": 200, "/b": 200, "/raw": 200,
    }  # fmt: skip
    assert summary.channels[2].metadata == {"unit": "m"}
    assert summary.schemas[1].name == "t.Point"
    (attachment,) = reader.iter_attachments()
    assert (attachment.name, attachment.data) == ("scene.yaml", b"name: hall\n")
    (metadata,) = reader.iter_metadata()
    assert metadata.metadata == {"twin_version": "test"}
    header = reader.get_header()
    assert (header.profile, header.library) == ("test", "hall-twin/test")


@pytest.mark.parametrize("compression", [CompressionType.NONE, CompressionType.ZSTD])
def test_message_indexes_point_at_their_messages(compression: CompressionType) -> None:
    stream = io.BytesIO()
    write_sample(stream, compression, background=True)
    data = stream.getvalue()
    stream.seek(0)
    summary = make_reader(stream).get_summary()
    assert summary is not None
    checked = 0
    for index in summary.chunk_indexes:
        chunk = next(
            StreamReader(
                io.BytesIO(data[index.chunk_start_offset :]), skip_magic=True, emit_chunks=True
            ).records
        )
        assert isinstance(chunk, Chunk)
        # the message indexes follow the chunk, back to back
        offsets = sorted(index.message_index_offsets.values())
        assert offsets[0] == index.chunk_start_offset + index.chunk_length
        assert offsets[-1] < offsets[0] + index.message_index_length
        messages = [r for r in breakup_chunk(chunk, validate_crc=True) if isinstance(r, Message)]
        assert index.message_start_time == min(m.log_time for m in messages)
        assert index.message_end_time == max(m.log_time for m in messages)
        raw = chunk.data if compression == CompressionType.NONE else None
        for channel_id, offset in index.message_index_offsets.items():
            message_index = next(StreamReader(io.BytesIO(data[offset:]), skip_magic=True).records)
            assert isinstance(message_index, MessageIndex)
            assert message_index.channel_id == channel_id
            mine = [m for m in messages if m.channel_id == channel_id]
            assert [t for t, _ in message_index.records] == [m.log_time for m in mine]
            if raw is not None:  # each offset is where that very message starts in the chunk
                at = [
                    next(StreamReader(io.BytesIO(raw[o:]), skip_magic=True).records)
                    for _, o in message_index.records
                ]
                assert at == mine
            checked += len(message_index.records)
    assert checked == 600


def test_a_write_error_is_raised_once_in_the_callers_thread(tmp_path: Path) -> None:
    path = tmp_path / "read-only.mcap"
    path.write_bytes(b"")
    with path.open("rb") as stream:  # a real file that cannot be written
        writer = ChunkedMcapWriter(stream, chunk_size_bytes=1024, background=True)
        with pytest.raises(McapWriteError, match="writing the recording failed"):
            writer.flush()


def test_a_flush_left_to_the_writing_thread_raises_its_error_when_settled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read-only.mcap"
    path.write_bytes(b"")
    with path.open("rb") as stream:
        writer = ChunkedMcapWriter(stream, chunk_size_bytes=1024, background=True)
        writer.flush_soon()  # does not wait: nothing raised yet
        with pytest.raises(McapWriteError, match="writing the recording failed"):
            writer.settle()
