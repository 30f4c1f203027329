"""The recorder in its own process: the same file as the in-thread recorder, every accepted
message of a live twin in it, events in their place, failures one line and never the twin's."""

from __future__ import annotations

import logging
import os
import resource
import signal
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from robots import get_model
from scenes import load_scene
from scenes.model import Scene
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import Kind, Received, pack_header
from tests.helpers import ThreadedMirror, wait_for
from tests.recordings import T0_NS, hall_messages, scene_text, state_counts
from twin.record.frame_groups import FastRoutes, group_frames
from twin.record.joint_blocks import recorded_states
from twin.record.recorder import Recorder, RecorderError
from twin.record.recorder_process import RecorderProcess
from twin.record.recording import RecordingError, open_recording

Ctx = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture(scope="module")
def scene() -> Scene:
    return load_scene()


def _frames(message: Received) -> list[bytes]:
    h = message.header
    return [message.topic, pack_header(h.kind, h.seq, h.stamp_ns, h.epoch), message.payload]


def _contents(path: Path) -> list[tuple[str, int, bytes]]:
    """Every message, a joint block's states each as its own (JSON): where the blocks end
    depends on when each recorder flushed, what they hold does not."""
    out = []
    for m in open_recording(path).iter_messages():
        if m.topic.startswith("/joints/"):
            out += [(m.topic, t, msgspec.json.encode(js)) for t, js in recorded_states(m)]
        else:
            out.append((m.topic, m.log_time_ns, m.data))
    return out


def test_the_process_writes_what_the_in_thread_recorder_writes(
    tmp_path: Path, scene: Scene
) -> None:
    messages = hall_messages(scene, 40)  # every kind: joints of each format, heartbeats, ...
    event_at = len(messages) // 2
    with RecorderProcess(
        tmp_path / "process.mcap", scene, scene_text(), twin_version="t", start_ns=T0_NS
    ) as process:
        for i, message in enumerate(messages):
            if i == event_at:  # in the middle of a receive batch: keeps its place
                process.event("epoch", "K1-01", "restarted", T0_NS + 5)
            process.frames(message.received_ns, _frames(message))
            if i % 7 == 6:
                process.ship_now()
    assert process.messages == process.handed == len(messages)
    assert process.dropped == 0 and process.error is None
    with Recorder(
        tmp_path / "thread.mcap", scene, scene_text(), twin_version="t", start_ns=T0_NS
    ) as thread:
        for i, message in enumerate(messages):
            if i == event_at:
                thread.event("epoch", "K1-01", "restarted", T0_NS + 5)
            thread.sink(message)
    got, expected = _contents(tmp_path / "process.mcap"), _contents(tmp_path / "thread.mcap")
    states = sum(1 for m in messages if m.header.kind == Kind.JOINT_STATE)
    assert len(got) == 2 * (len(messages) - states) + states + 1
    others = [m for m in got if not m[0].startswith("/joints/")]
    assert others == [m for m in expected if not m[0].startswith("/joints/")]  # in file order
    assert sorted(got) == sorted(expected)
    recording = open_recording(tmp_path / "process.mcap")
    assert recording.complete and recording.scene_text == scene_text()


def test_a_file_that_cannot_be_written_is_a_recorder_error(tmp_path: Path, scene: Scene) -> None:
    not_mcap = tmp_path / "hall.yaml"
    not_mcap.write_text("name: hall\n")
    with pytest.raises(RecorderError, match="exists and is not an MCAP recording"):
        RecorderProcess(not_mcap, scene, scene_text(), twin_version="t")
    assert not_mcap.read_text() == "name: hall\n"


def test_what_came_is_on_disk_within_a_second_without_more_traffic(
    tmp_path: Path, scene: Scene
) -> None:
    path = tmp_path / "idle.mcap"
    messages = hall_messages(scene, 5)
    with RecorderProcess(path, scene, scene_text(), twin_version="t") as process:
        for message in messages:
            process.frames(message.received_ns, _frames(message))
        process.ship_now()

        def on_disk() -> bool:  # the open file, read as a cut one
            try:
                found = [t for t, _, _ in _contents(path) if t.startswith(("/raw/", "/joints/"))]
            except RecordingError:  # no whole chunk yet
                return False
            return len(found) == len(messages)  # joint states in blocks, the rest raw

        wait_for(on_disk, timeout_s=10.0, interval_s=0.1, what="the idle flush")
    assert open_recording(path).complete


def _payloads(model: str, count: int) -> list[bytes]:
    codec = codec_for(get_model(model))
    n = len(codec.names)
    return [codec.encode(np.full(n, 0.001 * i), np.zeros(n), np.ones(n)) for i in range(count)]


def _send(gateway: Gateway, robot: str, payloads: list[bytes]) -> None:
    for payload in payloads:
        gateway.send(Kind.JOINT_STATE, robot, payload)


def test_a_live_twin_records_every_message_it_accepts(
    tmp_path: Path, context: Ctx, mirror: ThreadedMirror
) -> None:
    path = tmp_path / "live.mcap"
    recorder = RecorderProcess(path, mirror.scene, scene_text(), twin_version="t", raw_joints=True)
    try:
        mirror.frame_sinks.append(recorder)
        # the three formats: packed float32, MessagePack maps, packed float64 degrees
        robots = {"K1-01": "kestrel_k1", "T3-02": "tessel_t3", "H2-01": "orca_h2"}
        count = 2000
        payloads = {robot: _payloads(model, count) for robot, model in robots.items()}
        gateways = [Gateway(context, mirror.endpoints.ingest) for _ in robots]
        try:
            for gateway in gateways:
                assert gateway.wait_for_subscriber(5.0), "the twin never subscribed"
            for robot, gateway in zip(robots, gateways, strict=True):
                _send(gateway, robot, payloads[robot])
            gateways[0].socket.send_multipart([b"js/K1-01", b"short", b""])  # refused
            wait_for(
                lambda: mirror.ingest.accepted >= len(robots) * count,
                timeout_s=20.0,
                what="every message accepted",
            )
        finally:
            for gateway in gateways:
                gateway.close()
        mirror.stop_thread()
        accepted = mirror.ingest.accepted
    finally:
        recorder.close()
    assert accepted == len(robots) * count
    assert recorder.handed == recorder.messages == accepted and recorder.dropped == 0
    recording = open_recording(path)
    assert recording.complete
    counts = state_counts(recording)
    for robot in robots:
        assert counts[f"/raw/js/{robot}"] == counts[f"/joints/{robot}"] == count
        raw = [m.data[32:] for m in recording.iter_messages([f"/raw/js/{robot}"])]
        assert raw == payloads[robot]
        states = [js for m in recording.iter_messages([f"/joints/{robot}"])
                  for _, js in recorded_states(m)]  # fmt: skip
        assert [js.seq for js in states] == list(range(count))
        first = np.array(states[-1].position)  # the last payload: 0.001 * (count - 1) rad
        np.testing.assert_allclose(first, 0.001 * (count - 1), atol=1e-6)


def test_a_dead_recorder_is_one_line_and_the_twin_mirrors_on(
    tmp_path: Path, context: Ctx, mirror: ThreadedMirror, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RecorderProcess(tmp_path / "dies.mcap", mirror.scene, scene_text(), twin_version="t")
    try:
        mirror.frame_sinks.append(recorder)
        payloads = _payloads("kestrel_k1", 200)
        with Gateway(context, mirror.endpoints.ingest) as gateway:
            assert gateway.wait_for_subscriber(5.0), "the twin never subscribed"
            with caplog.at_level(logging.ERROR, logger="twin.record.recorder_process"):
                _send(gateway, "K1-05", payloads)
                wait_for(lambda: recorder.messages >= 200, timeout_s=10.0, what="recorded")
                assert recorder.pid is not None
                os.kill(recorder.pid, signal.SIGKILL)
                wait_for(lambda: recorder.error is not None, timeout_s=10.0, what="noticed")
                _send(gateway, "K1-05", payloads)  # the twin goes on
                wait_for(lambda: mirror.ingest.accepted >= 400, timeout_s=10.0, what="more")
        mirror.stop_thread()
    finally:
        recorder.close()
    lines = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert lines == [
        f"recording to {tmp_path / 'dies.mcap'} stopped: the recorder process exited "
        "unexpectedly (signal 9) (the twin mirrors on)"
    ]
    assert mirror.ingest.accepted == 400
    assert recorder.dropped > 0  # what came after it died is counted, not recorded


def test_a_write_error_in_the_recorder_is_one_clear_line(
    tmp_path: Path, scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "full.mcap"
    messages = hall_messages(scene, 50)
    with (
        caplog.at_level(logging.ERROR, logger="twin.record.recorder_process"),
        RecorderProcess(path, scene, scene_text(), twin_version="t") as process,
    ):
        assert process.pid is not None
        limit = path.stat().st_size + 4096  # as a full disk: the next chunk does not fit
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        for _ in range(20):
            for message in messages:
                process.frames(message.received_ns, _frames(message))
            process.ship_now()

        def reported() -> bool:
            process.ship_now()  # reads what the worker says
            return process.error is not None

        wait_for(reported, timeout_s=20.0, what="the error reported")
    assert process.error is not None
    assert "writing the recording failed: File too large" in process.error
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith(f"recording to {path} stopped: writing")


def test_a_killed_twin_leaves_a_complete_recording(tmp_path: Path) -> None:
    """SIGKILL of ``twin live --record``: its recorder process sees it gone, records what it
    had and closes the file (summary and footer)."""
    from tests.helpers import STARTUP_S, Proc

    path = tmp_path / "killed.mcap"
    any_port = "tcp://127.0.0.1:*"
    twin = Proc(
        "live", "--record", str(path), "--raw", "--no-lessons",
        "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port,
    )  # fmt: skip
    hall = None
    try:
        ingest = twin.wait_line(r"ingest (\S+) fan-out", STARTUP_S).group(1)
        hall = Proc("emulate", "--ingest", ingest, "--no-noise", "--seconds", "2")
        assert hall.popen.wait(timeout=STARTUP_S) == 0, "".join(hall.stderr)[-2000:]
        twin.popen.send_signal(signal.SIGKILL)
        twin.popen.wait(timeout=10.0)
    finally:
        twin.stop()
        if hall is not None:
            hall.stop()

    def complete() -> bool:
        try:
            return open_recording(path).complete
        except RecordingError:
            return False

    wait_for(complete, timeout_s=30.0, interval_s=0.1, what="the file closed by the worker")
    counts = state_counts(open_recording(path))  # --raw: every kind's frames
    robots = load_scene().robots
    assert all(counts.get(f"/joints/{r.id}", 0) > 0 for r in robots), counts
    assert all(counts.get(f"/raw/js/{r.id}", 0) > 0 for r in robots), counts
    raw = sum(n for t, n in counts.items() if t.startswith("/raw/"))
    canonical = ("/joints/", "/heartbeat/", "/base/", "/crane/")
    assert raw == sum(n for t, n in counts.items() if t.startswith(canonical))
    assert counts["/foxglove/tf"] > 0 and counts["/foxglove/scene"] > 0  # written on the way


def test_a_shipment_with_a_damaged_joint_state_keeps_each_robots_order(
    tmp_path: Path, scene: Scene
) -> None:
    """record_frames sorts a shipment into the robots' blocks; one joint state not of its
    robot's size (never from ingest, but a damaged frame) sends the shipment the one-by-one
    way: the robot's raw frames stay in the order received, the bad one kept raw only."""
    payloads = _payloads("kestrel_k1", 6)
    payloads[2] = payloads[2][:-4]  # four bytes short
    flat: list[bytes] = []
    for seq, payload in enumerate(payloads):
        flat += [b"js/K1-01", pack_header(Kind.JOINT_STATE, seq, T0_NS + seq, 1), payload]
    path = tmp_path / "damaged.mcap"
    with Recorder(
        path, scene, scene_text(), twin_version="t", start_ns=T0_NS, raw_joints=True
    ) as recorder:
        recorder.record_frames(T0_NS + 100, flat)
        with pytest.raises(ValueError, match="not three a message"):
            group_frames(flat[:-1], FastRoutes())
        recorder.record_frames(T0_NS + 200, flat[:-1])  # a frame short: counted, not fatal
        assert recorder.failed >= 2
    raw = [m for m in open_recording(path).iter_messages() if m.topic == "/raw/js/K1-01"]
    assert [int.from_bytes(m.data[8:16], "little") for m in raw] == [
        0,
        1,
        2,
        3,
        4,
        5,
        0,
        1,
        2,
        3,
        4,
    ]
    states = [
        js.seq
        for m in open_recording(path).iter_messages()
        if m.topic == "/joints/K1-01"
        for _, js in recorded_states(m)
    ]
    assert states == [0, 1, 3, 4, 5, 0, 1, 3, 4]
