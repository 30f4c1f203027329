"""Replay of joint blocks: each state at its own receive time, past its chunk's end too;
older recordings' JSON joint states as before; a block that does not decode said once."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.writer import Writer

from scenes import DEFAULT_SCENE, load_scene
from scenes.model import Scene
from sync.protocol import Kind
from tests.record.test_replay import EVENTS, SPREAD_NS, assert_recorded, reference
from tests.recordings import T0_NS, hall_messages
from twin.record.chunks import read_checked
from twin.record.joint_blocks import JSON_SCHEMA, decode_block
from twin.record.recorder import Recorder
from twin.record.recording import RecordingError, open_recording
from twin.record.replay_chunks import chunk_catalog
from twin.record.replay_source import ReplaySource
from twin.record.schemas import SCHEMAS

ROUNDS = 60  # over SPREAD_NS: a round every 50 ms
FLUSH_ROUNDS = 10  # the blocks written (and the chunk closed) after round 8, 18, ...
QUIET = (6, 7)  # ...and the crane silent in the two rounds before: each chunk ends at the
# round 5 before, while its blocks hold the states of rounds 6, 7 and 8 as well


@pytest.fixture(scope="module")
def scene() -> Scene:
    return load_scene()


@pytest.fixture(scope="module")
def blocks_path(tmp_path_factory: pytest.TempPathFactory, scene: Scene) -> Path:
    path = tmp_path_factory.mktemp("blocks") / "hall.mcap"
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    last = scene.robots[-1].id
    with Recorder(path, scene, text, twin_version="test") as recorder:
        for message in hall_messages(scene, ROUNDS, SPREAD_NS):
            header = message.header
            if header.kind == Kind.CRANE and header.seq % FLUSH_ROUNDS in QUIET:
                continue
            recorder.sink(message)
            joints = header.kind == Kind.JOINT_STATE and message.source_id == last
            if joints and header.seq % FLUSH_ROUNDS == FLUSH_ROUNDS - 2:
                recorder.flush()
        for _event_id, t_s, kind in EVENTS:
            recorder.event(kind, "K1-01", f"{kind} detail", T0_NS + int(t_s * 1e9))
    return path


def overhangs(path: Path) -> list[tuple[int, int]]:
    """(chunk end, last state) where a chunk's blocks hold states logged after its end."""
    catalog = chunk_catalog(open_recording(path))
    joints = {i for i, c in catalog.channels.items() if c.topic.startswith("/joints/")}
    found: set[tuple[int, int]] = set()
    for ref in catalog.chunks:
        records = read_checked(catalog, ref)
        assert records is not None
        at = 0
        while at < len(records):  # its records: opcode, length; a message's channel first
            opcode, length = struct.unpack_from("<BQ", records, at)
            if opcode == Opcode.MESSAGE and struct.unpack_from("<H", records, at + 9)[0] in joints:
                block = decode_block(records[at + 9 + 22 : at + 9 + length])
                if ref.end_ns < block.log_time_ns[-1]:
                    found.add((ref.end_ns, int(block.log_time_ns[-1])))
            at += 9 + length
    return sorted(found)


def test_a_seek_past_a_chunks_end_finds_its_blocks_later_states(
    blocks_path: Path, scene: Scene
) -> None:
    gaps = overhangs(blocks_path)
    assert len(gaps) >= 4  # chunks that end 150 ms before their blocks' last states
    source = ReplaySource(open_recording(blocks_path))
    ref = reference(blocks_path)
    times, _ = ref[f"/joints/{scene.robots[0].id}"]
    for end_ns, last_ns in gaps:
        after = [t for t in times if end_ns < t <= last_ns]  # the chunk's end does not cover
        assert len(after) == 3
        for t_ns in after + [t + 20_000_000 for t in after[:-1]] + [after[0] - 1]:
            t_s = (t_ns - source.start_ns) / 1e9
            source.seek(t_s)
            assert_recorded(source, ref, scene, t_s)


def test_playing_past_a_chunks_end_gives_what_seeking_gives(
    blocks_path: Path, scene: Scene
) -> None:
    played = ReplaySource(open_recording(blocks_path))
    sought = ReplaySource(open_recording(blocks_path))
    ref = reference(blocks_path)
    for end_ns, last_ns in overhangs(blocks_path):
        played.playing = True
        played.seek((end_ns - played.start_ns) / 1e9)  # at the chunk's end, then on
        while played.t_s < (last_ns - played.start_ns) / 1e9 + 0.002:
            played.advance(0.001)
            sought.seek(played.t_s)
            assert played.robots == sought.robots
            assert_recorded(played, ref, scene, played.t_s)


def rewrite(source: Path, target: Path, convert: Callable[[str, int, bytes], bytes | None]) -> None:
    """Copy a recording; ``convert(topic, log_ns, data)`` gives a ``/joints`` block's new
    data, or None to write its states as older recordings did: a JSON message each."""
    with source.open("rb") as stream, target.open("wb") as out:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None
        writer = Writer(out, chunk_size=16 * 1024)
        writer.start(reader.get_header().profile, "test")
        schemas = {
            i: writer.register_schema(s.name, s.encoding, s.data)
            for i, s in summary.schemas.items()
        }
        legacy = writer.register_schema(
            JSON_SCHEMA, "jsonschema", msgspec.json.encode(SCHEMAS[JSON_SCHEMA])
        )
        channels: dict[tuple[str, str], int] = {}

        def channel_id(topic: str, encoding: str, schema_id: int) -> int:
            if (topic, encoding) not in channels:
                channels[topic, encoding] = writer.register_channel(topic, encoding, schema_id)
            return channels[topic, encoding]

        kept: list[tuple[int, int, int, bytes, int, int]] = []  # in log order, then file order
        for _, channel, message in reader.iter_messages(log_time_order=False):
            topic, data = channel.topic, message.data
            new = convert(topic, message.log_time, data) if topic[:8] == "/joints/" else data
            if new is None:
                rows = decode_block(data)
                old = channel_id(topic, "json", legacy)
                for row, t_ns in enumerate(rows.log_time_ns.tolist()):
                    seq, stamp = int(rows.seq[row]) & 0xFFFFFFFF, int(rows.stamp_ns[row])
                    body = msgspec.json.encode(rows.message(row))
                    kept.append((t_ns, len(kept), old, body, stamp, seq))
                continue
            number = channel_id(topic, channel.message_encoding, schemas.get(channel.schema_id, 0))
            kept.append(
                (message.log_time, len(kept), number, new, message.publish_time, message.sequence)
            )
        for log_ns, _, number, data, publish_ns, sequence in sorted(kept):
            writer.add_message(number, log_ns, data, publish_ns, sequence)
        for attachment in reader.iter_attachments():
            writer.add_attachment(
                attachment.create_time, attachment.log_time, attachment.name,
                attachment.media_type, attachment.data,
            )  # fmt: skip
        for metadata in reader.iter_metadata():
            writer.add_metadata(metadata.name, metadata.metadata)
        writer.finish()  # type: ignore[no-untyped-call]


def plain(reports: tuple[float, np.ndarray, np.ndarray] | None) -> object:
    return reports and (reports[0], reports[1].tolist(), reports[2].tolist())


def test_an_older_recording_of_json_joint_states_replays_as_before(
    blocks_path: Path, scene: Scene, tmp_path: Path
) -> None:
    legacy_path = tmp_path / "legacy.mcap"
    rewrite(blocks_path, legacy_path, lambda _topic, _log_ns, _data: None)
    legacy = open_recording(legacy_path)
    joints = [c for c in legacy.catalog.channels.values() if c.topic.startswith("/joints/")]
    assert joints and {c.message_encoding for c in joints} == {"json"}
    assert len(chunk_catalog(legacy).chunks) > 5
    old, new = ReplaySource(legacy), ReplaySource(open_recording(blocks_path))
    assert (old.start_ns, old.end_ns) == (new.start_ns, new.end_ns)
    ref = reference(legacy_path)
    assert ref == reference(blocks_path)  # the same states, a JSON message each
    rng = np.random.default_rng(3)
    robot = scene.robots[0].id
    for t_s in [0.0, old.duration_s, *rng.uniform(0.0, old.duration_s, 30)]:
        old.seek(float(t_s))
        new.seek(float(t_s))
        assert_recorded(old, ref, scene, float(t_s))
        assert old.robots == new.robots
        old_reports, new_reports = (s.joint_reports(robot, float(t_s), 0.1) for s in (old, new))
        assert plain(old_reports) == plain(new_reports)
    old.playing = new.playing = True
    old.seek(0.0)
    new.seek(0.0)
    while old.playing:
        old.advance(0.003)
        new.advance(0.003)
        assert (old.robots, old.cranes) == (new.robots, new.cranes)


def damaged(
    blocks_path: Path, tmp_path: Path, robot: str, damage: Callable[[bytes], bytes]
) -> Path:
    """The recording with ``robot``'s second block replaced by ``damage(block)``."""
    seen: list[int] = []

    def convert(topic: str, log_ns: int, data: bytes) -> bytes:
        if topic != f"/joints/{robot}":
            return data
        seen.append(log_ns)
        return damage(data) if len(seen) == 2 else data

    path = tmp_path / "damaged.mcap"
    rewrite(blocks_path, path, convert)
    return path


def garbage(_data: bytes) -> bytes:
    return b"\xc1 not a joint block"


def cut_positions(data: bytes) -> bytes:
    block = msgspec.msgpack.decode(data)
    block["position"]["data"] = block["position"]["data"][:-3]
    return msgspec.msgpack.encode(block)


@pytest.mark.parametrize("damage", [garbage, cut_positions], ids=["garbage", "positions cut"])
def test_a_block_that_does_not_decode_is_said_once(
    blocks_path: Path, scene: Scene, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    robot = scene.robots[1].id
    path = damaged(blocks_path, tmp_path, robot, damage)
    whole = ReplaySource(open_recording(blocks_path))
    ref = reference(blocks_path)
    blocks = list(open_recording(blocks_path).iter_messages([f"/joints/{robot}"]))
    bad = decode_block(blocks[1].data).log_time_ns
    first_s, last_s = ((int(t) - whole.start_ns) / 1e9 for t in (bad[0], bad[-1]))
    source = ReplaySource(open_recording(path))  # at 0: before the damaged block
    source.seek(first_s - 0.01)
    whole.seek(first_s - 0.01)
    assert source.robots == whole.robots
    with pytest.raises(RecordingError, match="unreadable message") as raised:
        source.seek(first_s)
    assert str(raised.value).count("\n") == 0 and str(path) in str(raised.value)
    whole.seek(first_s)
    others = [r.id for r in scene.robots if r.id != robot]
    assert all(source.robots[r] == whole.robots[r] for r in others)  # shown all the same
    assert source.cranes == whole.cranes
    source.seek((first_s + last_s) / 2)  # within it: said already
    source.seek(last_s + 0.2)  # after it: as recorded
    assert_recorded(source, ref, scene, last_s + 0.2)
    # played through: said once, and then as recorded
    source.seek(first_s - 0.01)
    source.playing = True
    errors = 0
    while source.t_s < last_s + 0.2:
        try:
            source.advance(0.002)
        except RecordingError:
            errors += 1
    assert errors == 1
    assert_recorded(source, ref, scene, source.t_s)


def test_joint_reports_are_the_recorded_states(blocks_path: Path, scene: Scene) -> None:
    source = ReplaySource(open_recording(blocks_path))
    ref = reference(blocks_path)
    robot = scene.robots[2].id
    times, bodies = ref[f"/joints/{robot}"]
    for t_s in (0.3, 0.43, 1.0, 2.71):  # within blocks and across them
        reports = source.joint_reports(robot, t_s, 0.12)
        assert reports is not None
        new_ns = times[np.searchsorted(times, source.start_ns + round(t_s * 1e9), "right") - 1]
        old_at = np.searchsorted(times, new_ns - 120_000_000, "right") - 1
        new = bodies[times.index(new_ns)]
        assert reports[0] == (new_ns - times[old_at]) / 1e9
        assert reports[1].tolist() == bodies[old_at]["position"]
        assert reports[2].tolist() == new["position"]


def test_joint_reports_of_a_block_that_does_not_decode(
    blocks_path: Path, scene: Scene, tmp_path: Path
) -> None:
    robot = scene.robots[1].id
    path = damaged(blocks_path, tmp_path, robot, cut_positions)
    source, whole = ReplaySource(open_recording(path)), ReplaySource(open_recording(blocks_path))
    first = decode_block(next(open_recording(path).iter_messages([f"/joints/{robot}"])).data)
    t_s = (int(first.log_time_ns[-1]) - source.start_ns) / 1e9 + 0.1  # in the second block
    reports, expected = (s.joint_reports(robot, 0.3, 0.05) for s in (source, whole))
    assert reports is not None and expected is not None
    assert [reports[0], *map(list, reports[1:])] == [expected[0], *map(list, expected[1:])]
    with pytest.raises(RecordingError, match="unreadable message"):
        source.joint_reports(robot, t_s, 0.05)
    assert source.joint_reports(robot, t_s, 0.05) is None  # said once
    assert whole.joint_reports(robot, t_s, 0.05) is not None
