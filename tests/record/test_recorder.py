"""The recorder (MCAP writing) and the recording reader, checked with the plain mcap reader."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import Writer

import twin.record.recorder as recorder_module
from robots import get_model
from scenes import load_scene
from scenes.model import Scene
from sync.codecs import codec_for
from sync.protocol import (
    Kind,
    unpack_header,
)
from tests.helpers import ROOT
from tests.recordings import (
    EPOCH,
    T0_NS,
    hall_messages,
    joint_values,
    received,
    record,
    scene_text,
    state_counts,
)
from twin.record.joint_blocks import decode_block
from twin.record.recorder import Recorder
from twin.record.recording import RecordingError, open_recording
from twin.record.schemas import JOINT_STEPS


@pytest.fixture(scope="module")
def scene() -> Scene:
    return load_scene()


@pytest.mark.parametrize("raw_joints", [False, True], ids=["default", "raw joints"])
def test_every_message_is_recorded_raw_and_canonical(
    tmp_path: Path, scene: Scene, raw_joints: bool
) -> None:
    messages = hall_messages(scene, 20)
    path = tmp_path / "hall.mcap"
    record(path, scene, messages, raw_joints=raw_joints)
    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None
        assert summary.statistics is not None
        by_topic = {c.topic: c for c in summary.channels.values()}
        counts = {
            summary.channels[c].topic: n
            for c, n in summary.statistics.channel_message_counts.items()
        }
        schemas = {s.id: s for s in summary.schemas.values()}
        for robot in scene.robots:
            assert counts.get(f"/raw/js/{robot.id}", 0) == (20 if raw_joints else 0)
            assert counts[f"/joints/{robot.id}"] == 1  # one block: the file was never flushed
            assert counts[f"/heartbeat/{robot.id}"] == counts[f"/raw/hb/{robot.id}"] == 4
            assert counts[f"/base/{robot.id}"] == counts[f"/raw/base/{robot.id}"] == 4
            assert by_topic[f"/raw/js/{robot.id}"].message_encoding == "hall-twin-v1"
            assert by_topic[f"/raw/js/{robot.id}"].schema_id == 0
            joints = by_topic[f"/joints/{robot.id}"]
            assert joints.message_encoding == "msgpack"
            assert schemas[joints.schema_id].name == "hall_twin.JointBlock"
            assert schemas[joints.schema_id].encoding == "jsonschema"
            json.loads(schemas[joints.schema_id].data)
            assert schemas[by_topic[f"/base/{robot.id}"].schema_id].name == "foxglove.PoseInFrame"
        assert counts["/crane/C1"] == counts["/raw/crane/C1"] == 20
        assert counts["/events"] == 1
        joint_states = 20 * len(scene.robots)
        others = len(messages) - joint_states
        raw = joint_states if raw_joints else 0
        expected = 2 * others + raw + len(scene.robots) + 1
        assert summary.statistics.message_count == expected
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert meta["twin"]["twin_version"] == "test"
        assert meta["twin"]["scene"] == scene.name
        assert int(meta["twin"]["start_time_ns"]) > 0
        assert meta["twin"]["python_version"].count(".") == 2
        assert meta["twin"]["raw_joints"] == str(raw_joints).lower()
        attachments = {a.name: a.data for a in reader.iter_attachments()}
        assert attachments["scene.yaml"].decode() == scene_text()
        for name in {r.model for r in scene.robots}:
            assert attachments[f"robots/{name}.urdf"] == get_model(name).urdf_path.read_bytes()
        models = {r.id: r.model for r in scene.robots}
        joints_seen = 0
        raw_frames: dict[tuple[str, int], bytes] = {}
        for _schema, channel, message in reader.iter_messages(log_time_order=False):
            if channel.topic.startswith("/joints/"):
                rows = decode_block(message.data)
                robot_id = channel.topic.removeprefix("/joints/")
                assert rows.robot == robot_id
                assert message.log_time == rows.log_time_ns[0]
                assert message.publish_time == rows.stamp_ns[0]
                model = get_model(models[robot_id])
                codec = codec_for(model)
                assert rows.names == [model.profile.canonical_name(n) for n in codec.names]
                assert rows.seq.tolist() == list(range(20))  # every state, in order
                for row in range(len(rows)):
                    body = rows.message(row)
                    positions, velocities, efforts = joint_values(model.name, body.seq)
                    tolerance = 1e-6 if model.profile.encoding == "packed_f32" else 1e-12
                    # rounded to half a step of the documented resolution, beside the wire's own
                    for got, sent, steps in zip(
                        (body.position, body.velocity, body.effort),
                        (positions, velocities, efforts),
                        JOINT_STEPS[:, 0],
                        strict=True,
                    ):
                        np.testing.assert_allclose(
                            got, sent, rtol=tolerance, atol=tolerance + 0.5 / steps
                        )
                        assert max(abs(round(v * steps) - v * steps) for v in got) < 1e-6
                        # the double nearest the decimal, as the JSON channel held it
                        assert all(v == round(v * steps) / steps for v in got)
                    assert body.epoch == EPOCH
                    assert int(rows.log_time_ns[row]) == body.stamp_ns + 250_000
                    joints_seen += 1
            elif channel.topic.startswith("/raw/"):
                header = unpack_header(message.data[:32])
                assert header.epoch == EPOCH
                assert message.publish_time == header.stamp_ns
                if channel.topic.startswith("/raw/js/"):
                    raw_frames[(channel.topic, header.seq)] = message.data
        assert joints_seen == 20 * len(scene.robots)
        if raw_joints:  # the vendor frames exactly as sent
            sent_frames = {
                (f"/raw/js/{m.source_id}", m.header.seq): m.payload
                for m in messages
                if m.header.kind == Kind.JOINT_STATE
            }
            assert {k: v[32:] for k, v in raw_frames.items()} == sent_frames


def test_orca_degrees_become_radians(tmp_path: Path, scene: Scene) -> None:
    orca = next(r for r in scene.robots if r.model == "orca_h2")
    codec = codec_for(get_model("orca_h2"))
    index = codec.names.index("L_KNEE")
    positions = np.zeros(len(codec.names))
    positions[index] = 1.0  # radians: the wire carries 57.2958 degrees
    payload = codec.encode(positions, np.zeros_like(positions), np.zeros_like(positions))
    assert math.isclose(np.frombuffer(payload, "<f8")[index], math.degrees(1.0))
    path = tmp_path / "orca.mcap"
    record(path, scene, [received(Kind.JOINT_STATE, orca.id, 0, T0_NS, payload)])
    with path.open("rb") as stream:
        ((_, _, message),) = make_reader(stream).iter_messages(topics=[f"/joints/{orca.id}"])
    rows = decode_block(message.data)
    assert len(rows) == 1
    assert math.isclose(rows.position[0, index], 1.0, rel_tol=1e-12)
    assert rows.names[index] == get_model("orca_h2").profile.canonical_name("L_KNEE")


def chunk_spans(path: Path) -> list[tuple[int, int, int]]:
    """(start offset, end offset, message count) of every chunk of a complete file."""
    spans = []
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
        assert summary is not None
        for index in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            stream.seek(index.chunk_start_offset)
            chunk = next(StreamReader(stream, skip_magic=True, emit_chunks=True).records)
            assert isinstance(chunk, Chunk)
            count = sum(isinstance(r, Message) for r in breakup_chunk(chunk))
            spans.append(
                (index.chunk_start_offset, index.chunk_start_offset + index.chunk_length, count)
            )
    return spans


def test_a_cut_file_yields_every_message_of_its_complete_chunks(
    tmp_path: Path, scene: Scene
) -> None:
    messages = hall_messages(scene, 600, spread_ns=3_000_000_000)  # 3 s of log time
    path = tmp_path / "full.mcap"
    record(path, scene, messages, chunk_size_bytes=128 * 1024)
    with path.open("rb") as stream:
        full = [
            (c.topic, m.log_time, m.data)
            for _, c, m in make_reader(stream).iter_messages(log_time_order=False)
        ]
    spans = chunk_spans(path)
    assert len(spans) >= 8
    data = path.read_bytes()
    for k in (0, 1, len(spans) // 2, len(spans) - 1):
        start, end, _ = spans[k]
        for cut in (start + 5, (start + end) // 2, end - 1):
            cut_path = tmp_path / f"cut-{cut}.mcap"
            cut_path.write_bytes(data[:cut])
            recording = open_recording(cut_path)
            assert not recording.complete
            assert recording.scene_text == scene_text()
            expected = sum(count for _, chunk_end, count in spans if chunk_end <= cut)
            if not expected:  # cut inside the first chunk: nothing readable is an error
                with pytest.raises(RecordingError, match="no readable messages"):
                    list(recording.iter_messages())
                continue
            got = [(m.topic, m.log_time_ns, m.data) for m in recording.iter_messages()]
            assert got == full[:expected]
            assert recording.summary()["messages"] == expected
    # cut after the data, inside the summary: every message is there
    summary_cut = tmp_path / "summary-cut.mcap"
    summary_cut.write_bytes(data[: spans[-1][1] + (len(data) - spans[-1][1]) // 2])
    assert [
        (m.topic, m.log_time_ns, m.data) for m in open_recording(summary_cut).iter_messages()
    ] == full


def test_a_killed_recorder_loses_nothing_already_flushed(
    tmp_path: Path, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "FLUSH_EVERY_NS", 0)  # flush after every message
    path = tmp_path / "killed.mcap"
    rec = Recorder(path, scene, scene_text(), twin_version="test")
    messages = hall_messages(scene, 3)
    for message in messages:
        rec.sink(message)
    # no close(): as if the process had been killed (the stream was flushed to the OS)
    recording = open_recording(path)
    assert not recording.complete
    states = [m for m in messages if m.header.kind == Kind.JOINT_STATE]
    others = len(messages) - len(states)
    read = list(recording.iter_messages())
    assert sum(1 for m in read if m.topic.startswith("/raw/")) == others
    # every joint state is in a block already (each flush writes the robots' blocks)
    assert sum(len(decode_block(m.data)) for m in read if m.topic.startswith("/joints/")) == len(
        states
    )
    rec.close()
    complete = open_recording(path)
    assert complete.complete
    assert complete.summary()["messages"] == 2 * others + len(states)
    assert complete.metadata["twin"]["scene"] == scene.name
    assert set(complete.attachments) >= {"scene.yaml", "robots/kestrel_k1.urdf"}


def test_bad_files_give_one_clear_error(tmp_path: Path) -> None:
    cases = {
        "text.mcap": (b"hello, not a recording at all", "not an MCAP file"),
        "empty.mcap": (b"", "empty file"),
        "magic-only.mcap": (b"\x89MCAP0\r\n", "truncated header"),
        "short.mcap": (b"\x89MCA", "truncated header"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RecordingError, match=reason):
            open_recording(path)
    plain = tmp_path / "plain.mcap"
    with plain.open("wb") as stream:
        writer = Writer(stream)
        writer.start()
        writer.add_message(writer.register_channel("/x", "json", 0), 1, b"{}", 1)
        writer.finish()  # type: ignore[no-untyped-call]
    with pytest.raises(RecordingError, match=r"missing attachments: no 'scene\.yaml'"):
        open_recording(plain)
    with pytest.raises(RecordingError, match="cannot read"):
        open_recording(tmp_path / "absent.mcap")


def test_twin_live_records_what_it_accepts(tmp_path: Path) -> None:
    from tests.helpers import STARTUP_S, Proc

    path = tmp_path / "live.mcap"
    any_port = "tcp://127.0.0.1:*"
    twin = Proc(
        "live",
        "--record",
        str(path),
        "--ingest",
        any_port,
        "--fanout",
        any_port,
        "--snapshot",
        any_port,
    )
    hall = None
    try:
        ingest = twin.wait_line(r"ingest (\S+) fan-out", STARTUP_S).group(1)
        hall = Proc("emulate", "--ingest", ingest, "--no-noise", "--seconds", "3")
        assert hall.popen.wait(timeout=STARTUP_S) == 0, "".join(hall.stderr)[-2000:]
        time.sleep(0.5)
        twin.popen.send_signal(signal.SIGTERM)
        twin.popen.wait(timeout=30.0)
        done = twin.wait_line(r"received (\d+) messages \((\d+) accepted\)", 5.0)
        twin.wait_line(r"recorded \d+ messages to", 5.0)
    finally:
        twin.stop()
        if hall is not None:
            hall.stop()
    accepted = int(done.group(2))
    assert accepted > 0
    recording = open_recording(path)
    assert recording.complete
    counts = state_counts(recording)
    raw_total = sum(n for t, n in counts.items() if t.startswith("/raw/"))
    joint_states = sum(n for t, n in counts.items() if t.startswith("/joints/"))
    canonical_total = sum(
        n for t, n in counts.items() if re.match(r"/(joints|heartbeat|base|crane)/", t)
    )
    # the raw joint frames only with --raw; every state is in a /joints block
    assert raw_total + joint_states == canonical_total == accepted
    assert not any(t.startswith("/raw/js/") for t in counts)
    for robot in load_scene().robots:
        assert counts.get(f"/joints/{robot.id}", 0) > 0, robot.id
    first = next(recording.iter_messages([f"/joints/{load_scene().robots[0].id}"]))
    assert first.schema_name == "hall_twin.JointBlock"


def test_a_bare_record_means_a_timestamped_file_under_recordings() -> None:
    from twin.cli.record_path import expand_bare_record

    now_ns = 1_795_569_300_000_000_000  # 2026-11-25 01:15:00 UTC
    auto = "--record=recordings/20261125T011500Z.mcap"
    assert expand_bare_record(["live", "--record"], now_ns) == ["live", auto]
    assert expand_bare_record(["-v", "demo", "--record", "--seconds", "3"], now_ns) == [
        "-v", "demo", auto, "--seconds", "3",
    ]  # fmt: skip
    for given in (
        ["live", "--record", "x.mcap"],
        ["live", "--record=x.mcap"],
        ["resim", "r.mcap", "--record"],  # resim has its own default beside the input
        ["live", "--", "--record"],
    ):
        assert expand_bare_record(given, now_ns) == given


def _twin_in(
    folder: Path, *args: str, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m twin ARGS`` run in ``folder``, without a display."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=env,
    )


def test_twin_live_bare_record_writes_recordings_utc_stamp(tmp_path: Path) -> None:
    any_port = "tcp://127.0.0.1:*"
    before = time.time()
    result = _twin_in(
        tmp_path, "live", "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port,
        "--seconds", "0.5", "--record",
    )  # fmt: skip
    after = time.time()
    assert result.returncode == 0, result.stderr[-2000:]
    files = list((tmp_path / "recordings").iterdir())
    assert len(files) == 1
    path = files[0]
    assert re.fullmatch(r"\d{8}T\d{6}Z\.mcap", path.name), path.name
    stamp = datetime.strptime(path.stem, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    assert math.floor(before) <= stamp <= after
    assert f"recording to {path}" in result.stderr
    recording = open_recording(path)
    assert recording.complete
    assert recording.scene_text == scene_text()


def test_record_refuses_to_overwrite_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    hall = tmp_path / "my_hall.yaml"
    hall.write_text(scene_text(), encoding="utf-8")
    result = _twin_in(tmp_path, "live", "--record", "my_hall.yaml", "--seconds", "0.1")
    assert result.returncode == 1
    assert "my_hall.yaml exists and is not an MCAP recording; not overwriting it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert hall.read_text(encoding="utf-8") == scene_text()


def test_twin_demo_bare_record_records_the_demo_under_recordings(tmp_path: Path) -> None:
    result = _twin_in(
        tmp_path, "demo", "--headless", "--seconds", "1", "--out", "out", "--record",
        "--incidents-every", "0", timeout_s=300.0,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "recordings").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z\.mcap", path.name), path.name
    assert f"demo: the twin records to {path}" in result.stderr
    recording = open_recording(path)
    assert recording.complete
    counts = recording.summary()["message_counts"]
    for robot in load_scene().robots:
        assert counts.get(f"/joints/{robot.id}", 0) > 0, robot.id
