"""``twin live --foxglove``: a real twin (fed by a real emulator) serves the hall over Foxglove's
WebSocket protocol (``foxglove.sdk.v1``), read by a plain WebSocket client and decoded with
the schema the server advertises (protobuf's own descriptor pool, not foxglove-sdk): every
robot link's transform arrives and moves with the robots; the server is read-only; a port in
use is one line and exit 2."""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.sync.client import connect
from websockets.sync.connection import Connection
from websockets.typing import Subprotocol

from robots import get_model
from scenes import load_scene
from tests.helpers import ROOT, STARTUP_S, Proc

SUBPROTOCOL = Subprotocol("foxglove.sdk.v1")
MESSAGE_DATA = 0x01
DATA_HEADER = struct.Struct("<BIQ")  # opcode, subscription id, log time (ns)
WRITE_CAPABILITIES = {"clientPublish", "services", "parameters", "parametersSubscribe"}
ARRIVE_S = 60.0  # every link moved, on a loaded 2-core machine
TF_SUB, SCENE_SUB, JOINTS_SUB, LOG_SUB = 1, 2, 3, 4


@pytest.fixture
def twin() -> Iterator[tuple[Proc, str, str]]:
    """A twin serving Foxglove on a free port; its ingest endpoint and Foxglove URL."""
    any_port = "tcp://127.0.0.1:*"
    proc = Proc(
        "live", "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port,
        "--foxglove", "0",
    )  # fmt: skip
    try:
        url = proc.wait_line(r"foxglove: (ws://127\.0\.0\.1:\d+) \(read-only\)", STARTUP_S)
        ingest = proc.wait_line(r"ingest (\S+) fan-out", STARTUP_S)
        yield proc, ingest.group(1), url.group(1)
    finally:
        proc.stop()


def _expected_frames() -> set[str]:
    """Every robot link's frame, by the robots' URDFs (not by PyBullet)."""
    frames: set[str] = set()
    for robot in load_scene().robots:
        root = ET.fromstring(get_model(robot.model).urdf_path.read_bytes())
        frames |= {f"robot:{robot.id}/{link.attrib['name']}" for link in root.iter("link")}
    return frames


def _message_class(channel: dict[str, Any]) -> Any:
    """The class of a channel's messages, from the FileDescriptorSet it advertised."""
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    pool = descriptor_pool.DescriptorPool()
    data = base64.b64decode(channel["schema"])
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def _json(ws: Connection, op: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, str) and (decoded := json.loads(message))["op"] == op:
            return dict(decoded)


def test_the_live_twin_serves_every_link_moving_read_only(twin: tuple[Proc, str, str]) -> None:
    proc, ingest, url = twin
    with connect(url, subprotocols=[SUBPROTOCOL], max_size=None, open_timeout=10) as ws:
        info = _json(ws, "serverInfo", 10.0)
        assert not set(info["capabilities"]) & WRITE_CAPABILITIES, info
        assert not info.get("supportedEncodings"), info  # nothing a client could publish in
        channels = {c["topic"]: c for c in _json(ws, "advertise", 10.0)["channels"]}
        assert channels["/foxglove/tf"]["schemaName"] == "foxglove.FrameTransforms"
        assert channels["/foxglove/scene"]["schemaName"] == "foxglove.SceneUpdate"
        robot = load_scene().robots[0]
        joints_topic = f"/foxglove/joints/{robot.id}"
        assert channels[joints_topic]["schemaName"] == "foxglove.JointStates"
        assert channels["/foxglove/log"]["schemaName"] == "foxglove.Log"
        transforms = _message_class(channels["/foxglove/tf"])
        scene_update = _message_class(channels["/foxglove/scene"])
        joint_states = _message_class(channels[joints_topic])
        log_line = _message_class(channels["/foxglove/log"])
        ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "subscriptions": [
                        {"id": TF_SUB, "channelId": channels["/foxglove/tf"]["id"]},
                        {"id": SCENE_SUB, "channelId": channels["/foxglove/scene"]["id"]},
                        {"id": JOINTS_SUB, "channelId": channels[joints_topic]["id"]},
                        {"id": LOG_SUB, "channelId": channels["/foxglove/log"]["id"]},
                    ],
                }
            )
        )
        expected = _expected_frames()
        emulator = Proc("emulate", "--ingest", ingest, "--no-noise")
        try:
            first: dict[str, tuple[float, ...]] = {}
            moved: set[str] = set()
            stamps: list[int] = []
            scene_ids: set[str] = set()
            deadline = time.monotonic() + ARRIVE_S
            robots = {frame.split("/")[0] for frame in expected}
            moved_robots: set[str] = set()
            joint_names: list[list[str]] = []
            live_lines: list[str] = []  # the robot's log lines
            while not (
                scene_ids
                and robots <= moved_robots
                and len(stamps) >= 10
                and joint_names
                and live_lines
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(
                        f"in {ARRIVE_S} s: {len(stamps)} transforms messages, scene "
                        f"{bool(scene_ids)}, robots not moving {sorted(robots - moved_robots)}, "
                        f"{len(joint_names)} joint states, log lines {live_lines}"
                    )
                message = ws.recv(timeout=remaining)
                if isinstance(message, str):
                    continue
                opcode, subscription, log_ns = DATA_HEADER.unpack_from(message)
                assert opcode == MESSAGE_DATA
                payload = message[DATA_HEADER.size :]
                if subscription == SCENE_SUB:
                    scene_ids = {e.id for e in scene_update.FromString(payload).entities}
                    continue
                if subscription == JOINTS_SUB:
                    states = joint_states.FromString(payload)
                    joint_names.append([j.name for j in states.joints])
                    continue
                if subscription == LOG_SUB:
                    line = log_line.FromString(payload)
                    if line.name == robot.id:
                        live_lines.append(line.message)
                    continue
                assert subscription == TF_SUB
                decoded = transforms.FromString(payload)
                poses = {
                    t.child_frame_id: (
                        t.translation.x, t.translation.y, t.translation.z,
                        t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w,
                    )
                    for t in decoded.transforms
                }  # fmt: skip
                assert expected <= poses.keys(), sorted(expected - poses.keys())[:5]
                stamps.append(log_ns)
                for frame in expected:
                    if frame not in first:
                        first[frame] = poses[frame]
                        continue
                    pairs = zip(poses[frame], first[frame], strict=True)
                    if max(abs(a - b) for a, b in pairs) > 1e-4:
                        moved.add(frame)
                moved_robots = {frame.split("/")[0] for frame in moved}
        finally:
            emulator.stop()
    assert expected <= scene_ids  # the scene names every link mesh
    # the robot's canonical joints, in wire order; the mirror's events as log lines
    model = get_model(robot.model)
    canonical = [model.profile.canonical_name(n) for n in model.profile.joint_names]
    assert all(names == canonical for names in joint_names)
    assert any(line.startswith("liveness: ") and line.endswith("-> LIVE") for line in live_lines)
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    # the robots walk and work: most of their links moved in their parents' frames
    assert len(moved) >= len(expected) // 2, f"{len(moved)} of {len(expected)} links moved"
    assert proc.popen.poll() is None


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        any_port = "tcp://127.0.0.1:*"
        result = subprocess.run(
            [sys.executable, "-m", "twin", "live", "--ingest", any_port, "--fanout", any_port,
             "--snapshot", any_port, "--foxglove", str(port), "--seconds", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=STARTUP_S * 2, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], result.stderr
    assert "Address already in use" in lines[0]


def test_a_bare_foxglove_takes_the_default_port() -> None:
    from twin.cli.record_path import expand_bare_foxglove

    assert expand_bare_foxglove(["live", "--foxglove"]) == ["live", "--foxglove=8765"]
    assert expand_bare_foxglove(["live", "--foxglove", "--seconds", "3"])[1] == "--foxglove=8765"
    assert expand_bare_foxglove(["live", "--foxglove", "9000"]) == ["live", "--foxglove", "9000"]
    assert expand_bare_foxglove(["live", "--foxglove", "hall.yaml"])[1] == "--foxglove=8765"
    assert expand_bare_foxglove(["emulate", "--foxglove"]) == ["emulate", "--foxglove"]
