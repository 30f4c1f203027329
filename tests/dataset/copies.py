"""Copies of a recording, made with the ``mcap`` library's writer, for the export's tests:

* :func:`legacy_copy`: the recording as the recorder wrote it before the joint-state blocks:
  each block unrolled into one JSON ``/joints/<robot>`` message per state (the canonical
  :class:`~twin.record.schemas.JointMsg`, at the state's receive time, its stamp as the
  publish time), each right after its raw frame as the recorder wrote them, every message
  in receive-time order;
* :func:`damaged_copy`: the recording with the data of one ``/joints`` block replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from mcap.reader import make_reader
from mcap.records import Channel, Message, Schema
from mcap.writer import Writer

from sync.protocol import HEADER_SIZE, unpack_header
from twin.record.joint_blocks import decode_block, is_block
from twin.record.schemas import SCHEMAS

CHUNK_BYTES = 256 * 1024  # several chunks a second of the hall: pairs straddle their bounds
Row = tuple[int, int, int, int, bytes]  # log time, channel, publish time, sequence, data
Read = tuple[Schema | None, Channel, Message]
Rewrite = Callable[[list[Read]], Iterator[Row]]


def _copy(source: Path, target: Path, rewrite: Rewrite, *, legacy: bool) -> Path:
    """``source`` copied with its messages as ``rewrite`` makes them of the original's (in
    file order), sorted by log time (stably: the order they came in at a time)."""
    with source.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None, f"{source}: no summary"
        metadata = [(m.name, dict(m.metadata)) for m in reader.iter_metadata()]
        attachments = list(reader.iter_attachments())
        rows = list(rewrite(list(reader.iter_messages(log_time_order=False))))
    rows.sort(key=lambda row: row[0])
    with target.open("wb") as out:
        writer = Writer(out, chunk_size=CHUNK_BYTES)
        writer.start(profile="", library="tests.dataset.copies")
        schema_ids: dict[int, int] = {}
        for schema in summary.schemas.values():
            name, encoding, data = schema.name, schema.encoding, schema.data
            if legacy and name == "hall_twin.JointBlock":
                name, data = "hall_twin.JointState", msgspec.json.encode(SCHEMAS[name])
            schema_ids[schema.id] = writer.register_schema(name, encoding, data)
        channel_ids: dict[int, int] = {}
        for channel in summary.channels.values():
            encoding = channel.message_encoding
            if legacy and channel.topic.startswith("/joints/"):
                encoding = "json"
            channel_ids[channel.id] = writer.register_channel(
                channel.topic, encoding, schema_ids.get(channel.schema_id, 0), channel.metadata
            )
        for attachment in attachments:
            writer.add_attachment(
                attachment.create_time, attachment.log_time, attachment.name,
                attachment.media_type, attachment.data,
            )  # fmt: skip
        for name, fields in metadata:
            writer.add_metadata(name, fields)
        for log_ns, channel_id, publish_ns, sequence, data in rows:
            writer.add_message(channel_ids[channel_id], log_ns, data, publish_ns, sequence)
        writer.finish()  # type: ignore[no-untyped-call]
    return target


def _as_is(message: Message) -> Row:
    return (
        message.log_time, message.channel_id, message.publish_time, message.sequence,
        message.data,
    )  # fmt: skip


def _block(schema: Schema | None, channel: Channel) -> bool:
    name = schema.name if schema is not None else ""
    return channel.topic.startswith("/joints/") and is_block(name, channel.message_encoding)


def legacy_copy(source: Path, target: Path) -> Path:
    """``source`` as the recorder before the blocks wrote it (see the module docstring)."""

    def rewrite(messages: list[Read]) -> Iterator[Row]:
        states: dict[tuple[str, int, int], Row] = {}  # (robot, receive time, seq) -> JSON
        for schema, channel, message in messages:
            if not _block(schema, channel):
                continue
            robot = channel.topic.removeprefix("/joints/")
            rows = decode_block(message.data)
            for row in range(len(rows)):
                state = rows.message(row)
                log_ns = int(rows.log_time_ns[row])
                data = msgspec.json.encode(state)
                json = (log_ns, channel.id, state.stamp_ns, state.seq & 0xFFFFFFFF, data)
                states[(robot, log_ns, state.seq)] = json
        for schema, channel, message in messages:
            if _block(schema, channel):
                continue
            yield _as_is(message)
            if channel.topic.startswith("/raw/js/"):
                seq = unpack_header(message.data[:HEADER_SIZE]).seq
                key = (channel.topic.removeprefix("/raw/js/"), message.log_time, seq)
                if key in states:
                    yield states.pop(key)
        yield from states.values()  # states without a raw frame

    return _copy(source, target, rewrite, legacy=True)


def damaged_copy(source: Path, target: Path, damage: dict[tuple[str, int], bytes]) -> Path:
    """``source`` with the data of some messages replaced: ``(topic, i)`` the ``i``-th
    message of ``topic`` in file order."""

    def rewrite(messages: list[Read]) -> Iterator[Row]:
        seen: dict[str, int] = {}
        for _, channel, message in messages:
            row = _as_is(message)
            at = seen.get(channel.topic, 0)
            seen[channel.topic] = at + 1
            yield (
                row if (channel.topic, at) not in damage else (*row[:4], damage[channel.topic, at])
            )

    return _copy(source, target, rewrite, legacy=False)
