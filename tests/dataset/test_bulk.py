"""The export's bulk decoding of raw frames gives the recording's canonical JSON values.

On the session's emulator recordings (all three manufacturers: Kestrel packed float32,
Orca packed float64 in degrees, Tessel MessagePack maps) a read through
:func:`twin.dataset.source.read_part` is compared, message for message, with the canonical
JSON as the independent ``mcap`` reader and ``json`` give it; and where the bulk decode is
wrong (a codec that changed) the JSON is read instead, with the same result.
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
from sync.codecs import codec_for
from sync.protocol import BaseState, encode_payload
from twin.dataset import bulk
from twin.dataset import msgpack_layout as mp
from twin.dataset.series import Part, RobotSeries
from twin.dataset.source import layout, read_part
from twin.dataset.work import codecs
from twin.record.recording import open_recording


def canonical(path: Path) -> dict[str, dict[str, Any]]:
    """Every robot's joint states and base poses from their JSON, in file order."""
    out: dict[str, dict[str, Any]] = {}
    with path.open("rb") as stream:
        for _, channel, message in make_reader(stream).iter_messages():
            kind, _, robot_id = channel.topic[1:].partition("/")
            if kind not in ("joints", "base"):
                continue
            body = json.loads(message.data)
            robot = out.setdefault(robot_id, {"joints": [], "base": []})
            if kind == "joints":
                values = [body["position"], body["velocity"], body["effort"]]
                robot["joints"].append((message.log_time, body["stamp_ns"], values))
            else:
                p, q = body["pose"]["position"], body["pose"]["orientation"]
                pose = [p["x"], p["y"], p["z"], q["x"], q["y"], q["z"], q["w"]]
                robot["base"].append((message.log_time, pose))
    return out


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
def test_bulk_decoded_frames_equal_the_canonical_json(
    name: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(name)
    expected = canonical(path)
    part = read(path)
    assert part.canonical == 0 and part.bulk > 0  # every chunk decoded in bulk
    assert not part.problems
    models = {s.robot_id: s.names for s in part.robots.values()}
    assert set(models) == set(expected) and len(models) == 8
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_a_wrong_bulk_decode_falls_back_to_the_json(
    fall_recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = bulk.JointDecoder.decode

    def off(self: bulk.JointDecoder, *args: Any) -> tuple[Any, Any]:
        keep, values = decode(self, *args)
        return keep, values * 1.0000001  # a codec whose scale changed since the recording

    monkeypatch.setattr(bulk.JointDecoder, "decode", off)
    expected = canonical(fall_recording)
    part = read(fall_recording)
    assert part.canonical > 0
    for robot_id, series in part.robots.items():
        assert_same(series, expected[robot_id])


def test_without_codecs_the_json_is_read(orca_drop_recording: Path) -> None:
    expected = canonical(orca_drop_recording)
    part = read(orca_drop_recording, with_codecs=False)
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
