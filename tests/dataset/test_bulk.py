"""The export reads the recording's canonical joint values, whichever way they were written.

On the session's emulator recordings (all three manufacturers: Kestrel packed float32,
Orca packed float64 in degrees, Tessel MessagePack maps) a read through
:func:`twin.dataset.source.read_part` is compared, message for message, with the canonical
values as the independent ``mcap`` reader gives them (joint-state blocks decoded with
:func:`twin.record.joint_blocks.joint_states`, JSON with ``json``):

* recordings with joint-state blocks (the recorder's default) are read from the blocks,
  never from raw joint frames beside them (``--raw``);
* a copy of one as the recorder wrote it before the blocks (a JSON message per state beside
  its raw frame, :func:`tests.dataset.copies.legacy_copy`) is decoded in bulk from the raw
  frames, and where the bulk decode is wrong (a codec that changed) the JSON is read
  instead, with the same result; both ways give the block recording's values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from mcap.reader import make_reader

from robots import get_model
from scenes.loader import parse_scene
from sync import msgpack_layout as mp
from sync.codecs import codec_for
from sync.protocol import BaseState, encode_payload
from twin.dataset import bulk
from twin.dataset.series import Part, RobotSeries
from twin.dataset.source import layout, read_part
from twin.dataset.work import codecs
from twin.record.joint_blocks import is_block, joint_states
from twin.record.recording import open_recording


def canonical(path: Path) -> dict[str, dict[str, Any]]:
    """Every robot's joint states and base poses as recorded, in file order."""
    out: dict[str, dict[str, Any]] = {}
    with path.open("rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages(log_time_order=False):
            kind, _, robot_id = channel.topic[1:].partition("/")
            if kind not in ("joints", "base"):
                continue
            robot = out.setdefault(robot_id, {"joints": [], "base": []})
            if kind == "joints":
                block = is_block(schema.name if schema else "", channel.message_encoding)
                for log_ns, state in joint_states(message.data, message.log_time, block):
                    values = [state.position, state.velocity, state.effort]
                    robot["joints"].append((log_ns, state.stamp_ns, values))
            else:
                body = json.loads(message.data)
                p, q = body["pose"]["position"], body["pose"]["orientation"]
                pose = [p["x"], p["y"], p["z"], q["x"], q["y"], q["z"], q["w"]]
                robot["base"].append((message.log_time, pose))
    return out


def topics(path: Path) -> set[str]:
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None and summary.statistics is not None
    counts = summary.statistics.channel_message_counts
    return {c.topic for i, c in summary.channels.items() if counts.get(i, 0)}


def read(path: Path, with_codecs: bool = True) -> Part:
    plan = layout(path, 1)
    scene = parse_scene(open_recording(path).scene_text, "scene")
    models = {r.id: (r.manufacturer or "", r.model) for r in scene.robots}
    found = codecs(models) if with_codecs else {}
    return read_part(path, plan.spans[0], None, plan.complete, codecs=found, threads=2)


def joined(chunks: list[Any], shape: tuple[int, ...]) -> Any:
    return np.concatenate(chunks) if chunks else np.zeros((0, *shape))


def assert_same(series: RobotSeries, expected: dict[str, Any]) -> None:
    logs = joined(series.joint_log_ns, ())
    stamps = joined(series.joint_stamp_ns, ())
    values = joined(series.joint_values, (3, len(series.names)))
    assert logs.tolist() == [j[0] for j in expected["joints"]]
    assert stamps.tolist() == [j[1] for j in expected["joints"]]
    assert np.array_equal(values, np.array([j[2] for j in expected["joints"]]))
    assert joined(series.base_log_ns, ()).tolist() == [b[0] for b in expected["base"]]
    assert np.array_equal(
        joined(series.base_poses, (7,)), np.array([b[1] for b in expected["base"]])
    )


@pytest.mark.parametrize("name", ["fall_recording", "orca_drop_recording"])
def test_blocks_read_equal_the_recorded_values(name: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(name)
    assert not any(t.startswith("/raw/js/") for t in topics(path))  # the recorder's default
    expected = canonical(path)
    part = read(path)
    assert part.blocks > 0 and part.bulk > 0  # joint blocks; base poses in bulk from raw frames
    assert part.canonical == 0
    assert not part.problems
    models = {s.robot_id: s.names for s in part.robots.values()}
    assert set(models) == set(expected) and len(models) == 8
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_raw_joint_frames_beside_blocks_are_not_read(
    raw_fall_recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any(t.startswith("/raw/js/") for t in topics(raw_fall_recording))

    def refuse(self: bulk.JointDecoder, *args: Any) -> tuple[Any, Any]:
        raise AssertionError("a raw joint frame decoded beside the blocks")

    monkeypatch.setattr(bulk.JointDecoder, "decode", refuse)
    expected = canonical(raw_fall_recording)
    part = read(raw_fall_recording)
    assert part.blocks > 0 and part.canonical == 0 and not part.problems
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_bulk_decoded_frames_equal_the_canonical_json(legacy_fall_recording: Path) -> None:
    assert any(t.startswith("/raw/js/") for t in topics(legacy_fall_recording))
    expected = canonical(legacy_fall_recording)
    part = read(legacy_fall_recording)
    assert part.canonical == 0 and part.bulk > 0  # every chunk decoded in bulk
    assert part.blocks == 0
    assert not part.problems
    models = {s.robot_id: s.names for s in part.robots.values()}
    assert set(models) == set(expected) and len(models) == 8
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_a_block_recording_reads_as_its_json_copy(
    raw_fall_recording: Path, legacy_fall_recording: Path
) -> None:
    blocks, legacy = read(raw_fall_recording), read(legacy_fall_recording)
    assert blocks.blocks > 0 and legacy.blocks == 0 and legacy.bulk > 0
    assert set(blocks.robots) == set(legacy.robots)
    for robot_id, series in blocks.robots.items():
        other = legacy.robots[robot_id]
        assert series.names == other.names
        width = len(series.names)
        for got, want, shape in (
            (series.joint_log_ns, other.joint_log_ns, ()),
            (series.joint_stamp_ns, other.joint_stamp_ns, ()),
            (series.joint_values, other.joint_values, (3, width)),
            (series.base_log_ns, other.base_log_ns, ()),
            (series.base_poses, other.base_poses, (7,)),
        ):
            a, b = joined(got, shape), joined(want, shape)
            # equal values (a block's 0.0 is the raw frame's -0.0 where a value rounds to zero
            # from below: the blocks keep steps, not the sign of a zero)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_a_wrong_bulk_decode_falls_back_to_the_json(
    legacy_fall_recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = bulk.JointDecoder.decode

    def off(self: bulk.JointDecoder, *args: Any) -> tuple[Any, Any]:
        keep, values = decode(self, *args)
        return keep, values * 1.0000001  # a codec whose scale changed since the recording

    monkeypatch.setattr(bulk.JointDecoder, "decode", off)
    expected = canonical(legacy_fall_recording)
    part = read(legacy_fall_recording)
    assert part.canonical > 0
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_without_codecs_the_json_is_read(legacy_fall_recording: Path) -> None:
    expected = canonical(legacy_fall_recording)
    part = read(legacy_fall_recording, with_codecs=False)
    assert part.canonical > 0
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_a_msgpack_layout_reads_rows_of_its_shape_only() -> None:
    codec = codec_for(get_model("tessel_t3"))
    n = len(codec.names)
    rng = np.random.default_rng(1)
    frames = [codec.encode(*rng.standard_normal((3, n))) for _ in range(5)]
    layout = mp.layout_of(frames[0])
    assert layout is not None
    paths: list[mp.Path] = [(name, k) for k in range(3) for name in codec.names]
    how = mp.plan(layout, paths)
    odd = bytearray(frames[1])
    odd[1] ^= 0x01  # a key's first letter changed: another shape of the same size
    rows = np.frombuffer(b"".join([*frames, bytes(odd)]), dtype=np.uint8).reshape(6, -1)
    same, values = mp.extract(rows, how)
    assert same.tolist() == [True] * 5 + [False]
    for frame, row in zip(frames, values, strict=False):
        assert np.array_equal(row.reshape(3, n), codec.check(frame))
    # integers in a float field (a gateway sending 0 for 0.0) are constants of the layout
    pose = BaseState((1.5, 2, 0.9), (0, 0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 9.8))
    base = mp.layout_of(encode_payload(pose))
    assert base is not None
    got = mp.extract(
        np.frombuffer(encode_payload(pose), dtype=np.uint8)[None, :],
        mp.plan(base, [("position_m", 0), ("position_m", 1), ("orientation_xyzw", 3)]),
    )[1]
    assert got.tolist() == [[1.5, 2.0, 1.0]]
    assert msgspec.msgpack.decode(encode_payload(pose))["position_m"][1] == 2
