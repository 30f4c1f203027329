"""Replay of recordings: seek, playback, events, no sockets, the ``twin replay`` command."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from scenes import DEFAULT_SCENE, load_scene
from scenes.model import Scene
from sync.protocol import Kind
from tests.helpers import run_replay
from tests.recordings import T0_NS, hall_messages
from twin.record.joint_blocks import decode_block, is_block
from twin.record.recorder import Recorder
from twin.record.recording import RecordedMessage, open_recording
from twin.record.replay_chunks import chunk_catalog
from twin.record.replay_source import REPLAY, STALE, ReplaySource

ROUNDS = 60
SPREAD_NS = 3_000_000_000  # 60 rounds over 3 s: a joint state per robot every 50 ms
EVENTS = ((1, 0.5, "fall"), (2, 1.25, "epoch"), (3, 2.0, "stale"))  # id, t after T0, kind


@pytest.fixture(scope="module")
def scene() -> Scene:
    return load_scene()


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory: pytest.TempPathFactory, scene: Scene) -> Path:
    path = tmp_path_factory.mktemp("replay") / "hall.mcap"
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    with Recorder(path, scene, text, twin_version="test") as recorder:
        for message in hall_messages(scene, ROUNDS, SPREAD_NS):
            recorder.sink(message)
        for _event_id, t_s, kind in EVENTS:
            recorder.event(kind, "K1-01", f"{kind} detail", T0_NS + int(t_s * 1e9))
    return path


@pytest.fixture(scope="module")
def source(rec_path: Path) -> ReplaySource:
    return ReplaySource(open_recording(rec_path))


def states_in(message: RecordedMessage) -> Iterator[tuple[int, dict[str, Any]]]:
    """The states a message holds with their receive times: a joint block's rows, each at
    its own receive time (as the JSON message a state of older recordings has it), else
    the one JSON message."""
    if not is_block(message.schema_name, message.message_encoding):
        yield message.log_time_ns, json.loads(message.data)
        return
    rows = decode_block(message.data)
    for row in range(len(rows)):
        yield (
            int(rows.log_time_ns[row]),
            {
                "robot": rows.robot,
                "name": rows.names,
                "stamp_ns": int(rows.stamp_ns[row]) % 2**64,
                "seq": int(rows.seq[row]) % 2**64,
                "epoch": int(rows.epoch[row]) % 2**64,
                "position": [float(v) for v in rows.position[row]],
                "velocity": [float(v) for v in rows.velocity[row]],
                "effort": [float(v) for v in rows.effort[row]],
            },
        )


def expected(rec_path: Path, topic: str, t_ns: int) -> dict[str, object] | None:
    """The newest state of ``topic`` logged at or before ``t_ns``, read plainly."""
    best: tuple[int, dict[str, object]] | None = None
    for message in open_recording(rec_path).iter_messages([topic]):
        for log_ns, body in states_in(message):
            if log_ns <= t_ns and (best is None or log_ns >= best[0]):
                best = (log_ns, body)
    return None if best is None else best[1]


def test_seek_gives_the_recorded_state_at_or_before(
    rec_path: Path, source: ReplaySource, scene: Scene
) -> None:
    rng = np.random.default_rng(7)
    times = [0.0, 0.049, 0.05, 1.0, 2.3333, source.duration_s, *rng.uniform(0, 3, 5)]
    for t_s in times:
        source.seek(float(t_s))
        t_ns = source.start_ns + round(float(t_s) * 1e9)
        for robot in scene.robots:
            view = source.robots[robot.id]
            joints = expected(rec_path, f"/joints/{robot.id}", t_ns)
            assert joints is not None
            assert view.positions == joints["position"]
            assert view.velocities == joints["velocity"]
            assert view.efforts == joints["effort"]
            assert view.stamp_ns == joints["stamp_ns"]
            assert view.joint_names == joints["name"]
            base = expected(rec_path, f"/base/{robot.id}", t_ns)
            assert base is not None
            position = base["pose"]["position"]  # type: ignore[index]
            assert view.base_position_m == (position["x"], position["y"], position["z"])
        crane = expected(rec_path, "/crane/C1", t_ns)
        assert crane is not None
        assert source.cranes["C1"].hoist_m == crane["hoist_m"]
        assert source.cranes["C1"].stamp_ns == crane["stamp_ns"]


def test_liveness_is_replay_or_stale(source: ReplaySource, scene: Scene) -> None:
    assert {r.id for r in scene.robots} == set(source.robots)
    # joint states every 50 ms, logged 250 us after their stamp: t = 0 is the first one
    assert source.start_ns == T0_NS + 250_000
    source.seek(1.0)  # exactly when round 20 was logged (at or before: included)
    assert source.poll()
    assert not source.poll()
    assert all(v.liveness == REPLAY for v in source.robots.values())
    source.seek(1.049)  # ~49 ms after it: within the default floor, still REPLAY
    assert all(v.liveness == REPLAY for v in source.robots.values())
    strict = ReplaySource(source.recording, stale_floor_s=0.0)  # three periods only
    strict.seek(1.049)  # older than 3 periods of even the 100 Hz Tessel
    assert all(v.liveness == STALE for v in strict.robots.values())


def states(source: ReplaySource, start_s: float, end_s: float) -> list[object]:
    source.playing = True
    source.seek(start_s)
    seen: list[object] = []
    while source.t_s < end_s and source.playing:
        source.advance(0.001)
        if source.poll():
            seen.append(
                (
                    source.t_s,
                    [(v.stamp_ns, v.positions, v.liveness) for v in source.robots.values()],
                    [(c.stamp_ns, c.hoist_m) for c in source.cranes.values()],
                )
            )
    return seen


def test_replaying_a_window_twice_gives_the_same_states(source: ReplaySource) -> None:
    first = states(source, 0.7, 1.9)
    second = states(source, 0.7, 1.9)
    assert len(first) > 20
    assert first == second


def test_playback_matches_seek_and_respects_speed_and_loop(source: ReplaySource) -> None:
    source.speed = 100.0
    assert source.speed == 10.0
    source.speed = 0.0
    assert source.speed == 0.1
    source.speed = 2.0
    source.playing = True
    source.seek(0.2)
    for _ in range(100):
        source.advance(0.005)
    assert source.t_s == pytest.approx(1.2)
    played = [(v.stamp_ns, v.positions) for v in source.robots.values()]
    source.seek(1.2)
    assert played == [(v.stamp_ns, v.positions) for v in source.robots.values()]
    source.loop = (1.0, 1.5)
    source.advance(0.2)  # 1.2 + 0.4 -> wraps to 1.1
    assert source.t_s == pytest.approx(1.1)
    source.loop = None
    source.advance(100.0)
    assert source.t_s == source.duration_s and not source.playing
    source.speed = 1.0


def test_events_on_the_timeline(source: ReplaySource) -> None:
    offset_s = (T0_NS - source.start_ns) / 1e9
    assert [(e.id, e.kind) for e in source.events] == [(str(i), k) for i, _, k in EVENTS]
    times = [e.t_s for e in source.events]
    assert times == pytest.approx([offset_s + t for _, t, _ in EVENTS])
    nxt = source.next_event(0.0)
    assert nxt is not None and nxt.id == "1"
    after_first = source.next_event(times[0])
    assert after_first is not None and after_first.id == "2"
    before_last = source.previous_event(times[2])
    assert before_last is not None and before_last.id == "2"
    assert source.previous_event(times[0]) is None
    assert source.next_event(times[2]) is None
    source.playing = True
    source.seek(0.0)
    list(source.new_events())
    source.advance(1.0)
    assert [e.seq for e in source.new_events()] == [1]


def test_replay_opens_no_socket(rec_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("replay must not open sockets")

    monkeypatch.setattr(zmq.Context, "socket", refuse)
    monkeypatch.setattr(zmq.Context, "__init__", refuse)
    replay = ReplaySource(open_recording(rec_path))
    replay.playing = True
    replay.advance(2.0)
    replay.seek(0.5)
    replay.close()


CHUNK_BYTES = 32 * 1024  # a recording of many small chunks
CHUNKED_ROUNDS = 20 * ROUNDS  # blocks are compact: the file must be big beside a few chunks
FLUSH_ROUNDS = 7  # its joint blocks are written every 7 rounds (17.5 ms)


def record_hall(path: Path, scene: Scene, rounds: int, flush_rounds: int, **kwargs: int) -> None:
    """The hall's messages recorded, flushed (blocks written, chunk closed) every
    ``flush_rounds`` rounds, right after the joint states of the round: so the chunks end
    before their blocks' last states, as a live recording's often do."""
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    last = scene.robots[-1].id
    with Recorder(path, scene, text, twin_version="test", **kwargs) as recorder:  # type: ignore[arg-type]
        for message in hall_messages(scene, rounds, SPREAD_NS):
            recorder.sink(message)
            header = message.header
            joints = header.kind == Kind.JOINT_STATE and message.source_id == last
            if joints and header.seq % flush_rounds == flush_rounds - 1:
                recorder.flush()
        for _event_id, t_s, kind in EVENTS:
            recorder.event(kind, "K1-01", f"{kind} detail", T0_NS + int(t_s * 1e9))


@pytest.fixture(scope="module")
def chunked_path(tmp_path_factory: pytest.TempPathFactory, scene: Scene) -> Path:
    path = tmp_path_factory.mktemp("chunked") / "hall.mcap"
    record_hall(path, scene, CHUNKED_ROUNDS, FLUSH_ROUNDS, chunk_size_bytes=CHUNK_BYTES)
    return path


Reference = dict[str, tuple[list[int], list[dict[str, Any]]]]


def reference(path: Path) -> Reference:
    """Every state of the file (a joint block's each), read plainly, per topic in log order
    (stable)."""
    out: Reference = {}
    for message in open_recording(path).iter_messages():
        if message.topic.split("/")[1] in ("joints", "base", "heartbeat", "crane"):
            times, bodies = out.setdefault(message.topic, ([], []))
            for log_ns, body in states_in(message):
                times.append(log_ns)
                bodies.append(body)
    for topic, (times, bodies) in out.items():
        order = sorted(range(len(times)), key=times.__getitem__)
        out[topic] = ([times[i] for i in order], [bodies[i] for i in order])
    return out


def newest(ref: Reference, topic: str, t_ns: int) -> dict[str, Any] | None:
    times, bodies = ref.get(topic, ([], []))
    at = bisect_right(times, t_ns) - 1
    return bodies[at] if at >= 0 else None


def assert_recorded(source: ReplaySource, ref: Reference, scene: Scene, t_s: float) -> None:
    """The source's state (at its current instant ``t_s``) is what the file holds."""
    t_ns = source.start_ns + round(t_s * 1e9)
    for robot in scene.robots:
        view = source.robots[robot.id]
        joints = newest(ref, f"/joints/{robot.id}", t_ns)
        assert joints is not None
        assert (view.positions, view.velocities, view.efforts) == (
            joints["position"],
            joints["velocity"],
            joints["effort"],
        )
        assert (view.stamp_ns, view.epoch, view.joint_names) == (
            joints["stamp_ns"],
            joints["epoch"],
            joints["name"],
        )
        base = newest(ref, f"/base/{robot.id}", t_ns)
        beat = newest(ref, f"/heartbeat/{robot.id}", t_ns)
        assert base is not None and beat is not None
        position = base["pose"]["position"]
        assert view.base_position_m == (position["x"], position["y"], position["z"])
        assert view.mode == beat["mode"]
    for crane_id, crane in source.cranes.items():
        state = newest(ref, f"/crane/{crane_id}", t_ns)
        assert state is not None
        assert (crane.hoist_m, crane.stamp_ns) == (state["hoist_m"], state["stamp_ns"])


def test_a_long_recording_is_read_a_chunk_at_a_time(chunked_path: Path, scene: Scene) -> None:
    chunks = chunk_catalog(open_recording(chunked_path)).chunks
    assert len(chunks) >= 40
    source = ReplaySource(open_recording(chunked_path), cache_bytes=4 * CHUNK_BYTES)
    # opening reads the chunks holding events, the first and the last ones: not the file
    assert source.chunks_read <= 2 * len(EVENTS) + 4
    held = source.index_bytes
    assert held < chunked_path.stat().st_size / 4
    ref = reference(chunked_path)
    rng = np.random.default_rng(5)
    for t_s in [0.0, source.duration_s, *rng.uniform(0.0, source.duration_s, 40)]:
        source.seek(float(t_s))
        assert_recorded(source, ref, scene, float(t_s))
    assert source.index_bytes < chunked_path.stat().st_size / 4  # a few chunks kept, no more
    assert [e.kind for e in source.events] == [kind for _, _, kind in EVENTS]


def test_playing_through_chunks_gives_what_seeking_gives(chunked_path: Path) -> None:
    played, sought = (
        ReplaySource(open_recording(chunked_path)),
        ReplaySource(open_recording(chunked_path)),
    )
    played.playing = True
    checked = 0
    while played.playing:
        played.advance(0.001)
        if round(played.t_s * 1000) % 97 == 0 or not played.playing:
            sought.seek(played.t_s)
            assert played.robots == sought.robots
            assert played.cranes == sought.cranes
            checked += 1
    assert checked > 20
    assert played.chunks_read >= len(chunk_catalog(played.recording).chunks)


def test_a_cut_recording_replays_its_complete_chunks(
    chunked_path: Path, scene: Scene, tmp_path: Path
) -> None:
    complete = ReplaySource(open_recording(chunked_path))
    chunks = chunk_catalog(complete.recording).chunks
    data = chunked_path.read_bytes()
    middle = chunks[len(chunks) // 2]
    cuts = {
        "inside a chunk": middle.offset + middle.length // 2,
        "after a chunk, before its indexes": middle.offset + middle.length,
        "inside its indexes": middle.index_offset + middle.index_length // 2,
    }
    for why, cut in cuts.items():
        path = tmp_path / f"cut-{cut}.mcap"
        path.write_bytes(data[:cut])
        recording = open_recording(path)
        assert not recording.complete, why
        source = ReplaySource(recording)
        assert source.start_ns == complete.start_ns, why
        assert 0.3 * complete.duration_s < source.duration_s < 0.7 * complete.duration_s, why
        ref = reference(path)
        for t_s in np.linspace(0.0, source.duration_s, 13):
            source.seek(float(t_s))
            assert_recorded(source, ref, scene, float(t_s))
            if t_s < 0.9 * source.duration_s:  # well before the cut: as the whole file has it
                complete.seek(float(t_s))
                assert source.robots == complete.robots, why


def test_clip_writes_an_mp4_of_the_window(rec_path: Path, tmp_path: Path) -> None:
    import imageio.v3 as iio

    clip = tmp_path / "out.mp4"
    done = run_replay(str(rec_path), "--clip", str(clip), "--at", "1", "--after", "1",
                    "--size", "320x240", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(clip) in done.stdout
    frames = iio.imread(clip, index=None)
    assert frames.shape[0] == 24  # 1 s at 24 fps, speed 1
    assert frames.shape[1:3] == (240, 320)


def test_bad_files_and_unknown_events_give_one_line_and_status_2(
    rec_path: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(b"")
    for path, words in (
        (junk, "not an MCAP file"),
        (empty, "empty file"),
        (tmp_path / "missing.mcap", "cannot read"),
    ):
        done = run_replay(str(path), "--clip", str(tmp_path / "x.mp4"), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.stderr
    done = run_replay(
        str(rec_path), "--event", "99", "--clip", str(tmp_path / "x.mp4"), cwd=tmp_path
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "no event 99" in line and "1 (fall K1-01)" in line and "3 (stale" in line
    assert not (tmp_path / "x.mp4").exists()
