"""The Foxglove channels of a real ``twin live --record`` (fed by the emulator), read back with
the plain ``mcap`` reader and decoded with the FileDescriptorSets stored in the file (protobuf's
own descriptor pool, not foxglove-sdk): Foxglove schemas in protobuf, the hall and every robot
link in the scene, every link's transform at the display rate in one tree rooted at ``hall``,
posed as the robots' joint states and base poses pose them."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from foxglove.messages import (
    FrameTransform,
    FrameTransforms,
    JointStates,
    Log,
    Quaternion,
    SceneUpdate,
    Timestamp,
    Vector3,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from mcap.reader import make_reader

from scenes import load_scene
from scenes.loader import parse_scene
from scenes.model import Scene
from twin.record.foxglove_channels import (
    DISPLAY_HZ,
    JOINTS_TOPIC,
    LOG_TOPIC,
    SCENE_TOPIC,
    TF_TOPIC,
)
from twin.record.foxglove_hall import FoxgloveHall
from twin.record.joint_blocks import decode_block
from twin.record.schemas import EventMsg, JointMsg, PoseInFrame
from twin.world.world import World

FALLEN_ROBOT = "T3-04"  # falls at 4 s in the fall_recording fixture (tests/conftest.py)


@dataclass
class Read:
    """A recording's Foxglove messages, decoded, and its canonical joints and bases."""

    scene: Scene
    urdfs: dict[str, bytes]
    channels: dict[str, tuple[str, str, str]]  # topic -> schema name, schema enc., msg enc.
    scenes: list[tuple[int, Any]]
    transforms: list[tuple[int, Any]]
    joints: dict[str, list[tuple[int, JointMsg]]]
    bases: dict[str, list[tuple[int, PoseInFrame]]]
    joint_states: dict[str, list[tuple[int, Any]]]  # /foxglove/joints/<robot>, decoded
    logs: list[tuple[int, Any]]  # /foxglove/log, decoded
    events: list[tuple[int, EventMsg]]  # /events


def _classes(schema_data: bytes) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(schema_data).file:
        pool.Add(file)
    return pool


def _decode(pool: descriptor_pool.DescriptorPool, name: str, data: bytes) -> Message:
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))()
    message.ParseFromString(data)
    return message


def _unknown_fields(message: Message) -> Iterator[Message]:
    """Messages (this one and every one inside) with fields their schema does not know."""
    if len(UnknownFieldSet(message)):
        yield message
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in value if field.is_repeated else [value]:
            yield from _unknown_fields(item)


@pytest.fixture(scope="module")
def read(fall_recording: Path) -> Read:
    channels: dict[str, tuple[str, str, str]] = {}
    pools: dict[str, descriptor_pool.DescriptorPool] = {}
    scenes: list[tuple[int, Any]] = []
    transforms: list[tuple[int, Any]] = []
    joints: dict[str, list[tuple[int, JointMsg]]] = {}
    bases: dict[str, list[tuple[int, PoseInFrame]]] = {}
    joint_states: dict[str, list[tuple[int, Any]]] = {}
    logs: list[tuple[int, Any]] = []
    events: list[tuple[int, EventMsg]] = []
    urdfs: dict[str, bytes] = {}
    scene_text = ""
    with fall_recording.open("rb") as stream:
        reader = make_reader(stream)
        for attachment in reader.iter_attachments():
            if attachment.name == "scene.yaml":
                scene_text = attachment.data.decode()
            elif attachment.name.startswith("robots/"):
                urdfs[attachment.name.removeprefix("robots/").removesuffix(".urdf")] = (
                    attachment.data
                )
        stream.seek(0)
        for schema, channel, message in make_reader(stream).iter_messages(log_time_order=True):
            topic = channel.topic
            if topic.startswith("/foxglove/"):
                assert schema is not None
                channels[topic] = (schema.name, schema.encoding, channel.message_encoding)
                pool = pools.setdefault(schema.name, _classes(schema.data))
                decoded = _decode(pool, schema.name, message.data)
                assert not list(_unknown_fields(decoded)), topic
                if topic.startswith(JOINTS_TOPIC):
                    target = joint_states.setdefault(topic.removeprefix(JOINTS_TOPIC), [])
                else:
                    target = {SCENE_TOPIC: scenes, TF_TOPIC: transforms, LOG_TOPIC: logs}[topic]
                target.append((message.log_time, decoded))
            elif topic == "/events":
                events.append((message.log_time, msgspec.json.decode(message.data, type=EventMsg)))
            elif topic.startswith("/joints/"):  # a block of states, each at its receive time
                rows = decode_block(message.data)
                for row, t in enumerate(rows.log_time_ns.tolist()):
                    joints.setdefault(rows.robot, []).append((t, rows.message(row)))
            elif topic.startswith("/base/"):
                pose = msgspec.json.decode(message.data, type=PoseInFrame)
                bases.setdefault(topic.removeprefix("/base/"), []).append((message.log_time, pose))
    for states in joints.values():
        states.sort(key=lambda state: state[0])
    scene = parse_scene(scene_text, "scene.yaml")
    return Read(
        scene, urdfs, channels, scenes, transforms, joints, bases, joint_states, logs, events
    )


def _urdf_links(urdf: bytes) -> tuple[list[str], set[str]]:
    """Every link of a URDF, and those with a visual."""
    root = ET.fromstring(urdf)
    links = [link.attrib["name"] for link in root.iter("link")]
    visual = {link.attrib["name"] for link in root.iter("link") if link.find("visual") is not None}
    return links, visual


def _link_frames(read: Read) -> set[str]:
    """Every robot link's frame, by the URDFs the recording carries (not by PyBullet)."""
    frames = set()
    for robot in read.scene.robots:
        links, _ = _urdf_links(read.urdfs[robot.model])
        frames |= {f"robot:{robot.id}/{link}" for link in links}
    return frames


def test_the_foxglove_channels_are_foxglove_schemas_in_protobuf(read: Read) -> None:
    assert read.channels == {
        SCENE_TOPIC: ("foxglove.SceneUpdate", "protobuf", "protobuf"),
        TF_TOPIC: ("foxglove.FrameTransforms", "protobuf", "protobuf"),
        LOG_TOPIC: ("foxglove.Log", "protobuf", "protobuf"),
        **{
            JOINTS_TOPIC + robot.id: ("foxglove.JointStates", "protobuf", "protobuf")
            for robot in read.scene.robots
        },
    }
    # and every one of them decoded, nothing unknown
    assert read.scenes and read.transforms and read.logs
    assert set(read.joint_states) == {robot.id for robot in read.scene.robots}


def test_the_file_carries_foxglove_sdks_own_descriptors(fall_recording: Path) -> None:
    with fall_recording.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None
    stored = {s.name: s.data for s in summary.schemas.values() if s.encoding == "protobuf"}
    for message in (SceneUpdate, FrameTransforms, JointStates, Log):
        schema = message.get_schema()
        assert stored[schema.name] == schema.data


def _ns(stamp: Any) -> int:
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def test_joint_states_are_each_robots_newest_canonical_joints_at_display_ticks(
    read: Read,
) -> None:
    ticks = {log_ns for log_ns, _ in read.transforms}
    for robot in read.scene.robots:
        states = read.joint_states[robot.id]
        recorded = read.joints[robot.id]
        times = [log_ns for log_ns, _ in recorded]
        assert len(states) >= 2 * DISPLAY_HZ  # the 8 s recording: seconds of them
        assert len({log_ns for log_ns, _ in states}) == len(states)  # at most one a tick
        for log_ns, message in states:
            assert log_ns in ticks and _ns(message.timestamp) == log_ns
            # the newest /joints message received by then: one of those received last
            # (messages received together may be shipped in two groups around an event)
            last = times[np.searchsorted(times, log_ns, side="right") - 1]
            shown = (
                [j.name for j in message.joints],
                [j.position for j in message.joints],
                [j.velocity for j in message.joints],
                [j.effort for j in message.joints],
            )
            assert shown in [
                (m.name, m.position, m.velocity, m.effort) for t, m in recorded if t == last
            ]


def test_every_event_is_a_log_line_and_failures_are_at_their_severity(read: Read) -> None:
    assert [log_ns for log_ns, _ in read.logs] == [log_ns for log_ns, _ in read.events]
    levels = {"warning": "WARNING", "error": "ERROR", "critical": "FATAL"}
    falls = 0
    for (_, line), (_, event) in zip(read.logs, read.events, strict=True):
        assert line.name == event.source and _ns(line.timestamp) == event.stamp_ns
        level = line.DESCRIPTOR.fields_by_name["level"].enum_type.values_by_number[line.level]
        if event.kind == "failure":
            failure = msgspec.json.decode(event.detail)
            assert level.name == levels[failure["severity"]]
            assert line.message == f"{failure['kind']}: {failure['details']} ({failure['id']})"
            falls += failure["kind"] == "fall" and event.source == FALLEN_ROBOT
        else:
            assert line.message == f"{event.kind}: {event.detail}"
            assert level.name in ("INFO", "WARNING")
    assert falls >= 1


def test_the_scene_has_an_entity_per_link_and_per_bench(read: Read) -> None:
    _, last = read.scenes[-1]  # what Foxglove shows after a seek: the last one, whole
    entities = {entity.id: entity for entity in last.entities}
    assert len(entities) == len(last.entities)
    for robot in read.scene.robots:
        links, visual = _urdf_links(read.urdfs[robot.model])
        for link in links:
            entity = entities[f"robot:{robot.id}/{link}"]
            assert entity.frame_id == entity.id and entity.frame_locked
            drawn = len(entity.cubes) + len(entity.spheres) + len(entity.cylinders)
            assert (drawn + len(entity.models) > 0) == (link in visual), entity.id
    for bench in read.scene.benches:
        entity = entities[f"bench:{bench.id}"]
        assert entity.frame_id == "hall" and len(entity.cubes) == 5  # a top and four legs
        top = max(entity.cubes, key=lambda cube: cube.pose.position.z)
        assert top.pose.position.z + top.size.z / 2 == pytest.approx(bench.height, abs=1e-6)
        for item in bench.items:
            assert f"item:{item.id}" in entities
    assert {"floor", f"hub:{read.scene.hub.id}"} <= set(entities)
    for crane in read.scene.cranes:
        assert f"crane:{crane.id}/hook" in entities
    for _, update in read.scenes:  # each one whole
        assert {entity.id for entity in update.entities} == set(entities)


def test_every_link_has_a_transform_at_each_tick_in_one_tree_rooted_at_the_hall(
    read: Read,
) -> None:
    robot_frames = _link_frames(read)
    first_frames: set[str] | None = None
    for _, message in read.transforms:
        parents = {t.child_frame_id: t.parent_frame_id for t in message.transforms}
        assert len(parents) == len(message.transforms)  # each frame once
        assert robot_frames <= set(parents)
        first_frames = first_frames or set(parents)
        assert set(parents) == first_frames
        for frame in parents:  # up to the hall, never round in a circle
            seen = {frame}
            while frame != "hall":
                frame = parents[frame]
                assert frame not in seen
                seen.add(frame)
    # the display rate of receive time: every robot message at most a display period after
    # the last transforms (where the twin received nothing, a stalled machine, there is
    # nothing new to show), and never more than the display rate
    times = [t for t, _ in read.transforms]
    robot_times = np.sort([t for series in read.joints.values() for t, _ in series])
    assert (robot_times[-1] - robot_times[0]) / 1e9 > 5.0
    robot_times = robot_times[robot_times >= times[0]]
    last_tick = np.asarray(times)[np.searchsorted(times, robot_times, side="right") - 1]
    assert (robot_times - last_tick).max() < 1e9 / DISPLAY_HZ
    per_second = np.searchsorted(times, np.asarray(times) + 1_000_000_000) - np.arange(len(times))
    assert per_second.max() <= DISPLAY_HZ + 1  # a late tick is followed by one on time, no burst
    stamps = [
        m.transforms[0].timestamp.seconds * 10**9 + m.transforms[0].timestamp.nanos
        for _, m in read.transforms
    ]
    assert stamps == times  # stamped with the receive time they were computed at


def _matrix(translation: tuple[float, ...], rotation: tuple[float, ...]) -> np.ndarray:
    """A 4x4 transform from a translation and a quaternion (x, y, z, w): composed here, by
    matrices, independently of the recorder's quaternion arithmetic."""
    x, y, z, w = rotation
    out = np.eye(4)
    out[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    out[:3, 3] = translation
    return out


def _frame_matrix(t: Any) -> np.ndarray:
    """A decoded FrameTransform's 4x4 transform (the child in its parent)."""
    return _matrix(
        (t.translation.x, t.translation.y, t.translation.z),
        (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w),
    )


def _in_hall(message: Any) -> dict[str, np.ndarray]:
    """Every frame's pose in the hall, composed up the tree."""
    by_child = {t.child_frame_id: t for t in message.transforms}
    out: dict[str, np.ndarray] = {"hall": np.eye(4)}

    def pose(frame: str) -> np.ndarray:
        if frame not in out:
            t = by_child[frame]
            out[frame] = pose(t.parent_frame_id) @ _frame_matrix(t)
        return out[frame]

    for frame in by_child:
        pose(frame)
    return out


def _latest(series: list[tuple[int, Any]], t_ns: int) -> Any:
    found = None
    for log_ns, value in series:
        if log_ns > t_ns:
            break
        found = value
    return found


def test_the_transforms_pose_every_robot_as_its_joint_states_and_base_do(read: Read) -> None:
    """At ticks through the recording, each robot link's pose composed from the transforms is
    the link's pose in a world of our own set from the canonical JSON of that instant."""
    ticks = read.transforms[:: max(1, len(read.transforms) // 6)]
    with World(read.scene) as world:
        for t_ns, message in ticks:
            hall = _in_hall(message)
            for robot in read.scene.robots:
                joints = _latest(read.joints.get(robot.id, []), t_ns)
                base = _latest(read.bases.get(robot.id, []), t_ns)
                if joints is not None:
                    world.set_joint_positions(
                        robot.id, dict(zip(joints.name, joints.position, strict=True))
                    )
                if base is not None:
                    p, q = base.pose.position, base.pose.orientation
                    world.set_base_pose(robot.id, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
                handle = world.robot(robot.id)
                for link, index in handle.link_index.items():
                    if index == -1:  # the world gives the base's inertial frame, not its URDF's
                        continue
                    position, orientation = world.link_pose(f"robot:{robot.id}/{link}")
                    got = hall[f"robot:{robot.id}/{link}"]
                    expected = _matrix(position, orientation)
                    # float32 precision in each transform, composed up to ten links deep
                    assert np.abs(got[:3, 3] - expected[:3, 3]).max() < 5e-5, (robot.id, link)
                    assert np.abs(got[:3, :3] - expected[:3, :3]).max() < 1e-5, (robot.id, link)


def test_a_robot_that_moves_in_the_emulator_moves_in_the_transforms(read: Read) -> None:
    fallen_base = next(
        f"robot:{FALLEN_ROBOT}/{link}"
        for link in _urdf_links(read.urdfs[read.scene.robot(FALLEN_ROBOT).model])[0][:1]
    )

    def tilt_deg(message: Any) -> float:
        up = _in_hall(message)[fallen_base][:3, 2]
        return math.degrees(math.acos(max(-1.0, min(1.0, float(up[2])))))

    assert tilt_deg(read.transforms[0][1]) < 10.0
    assert tilt_deg(read.transforms[-1][1]) > 45.0  # it lies on the floor
    moved = 0
    for robot in read.scene.robots:  # joints that move are links that move
        positions = {tuple(j.position) for _, j in read.joints.get(robot.id, [])}
        rotations = {
            tuple(
                round(v, 9)
                for t in message.transforms
                if t.child_frame_id.startswith(f"robot:{robot.id}/") and t.parent_frame_id != "hall"
                for v in (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w)
            )
            for _, message in read.transforms
        }
        assert (len(positions) > 1) == (len(rotations) > 1), robot.id
        moved += len(positions) > 1
    assert moved >= len(read.scene.robots) // 2  # the hall is at work


def test_the_transforms_decode_as_foxglove_sdks_own_encoding() -> None:
    """The hand-made encoding against foxglove-sdk's for the same values, both decoded."""
    scene = load_scene()
    with World(scene) as world:
        hall = FoxgloveHall(world)
        robot = scene.robots[0]
        hall.set_base(robot.id, (3.0, 4.0, 1.0), (0.0, 0.0, math.sin(0.3), math.cos(0.3)))
        stamp_ns = 1_700_000_123_456_789_012
        ours = hall.transforms(stamp_ns)
    pool = _classes(FrameTransforms.get_schema().data)
    decoded = _decode(pool, "foxglove.FrameTransforms", ours)
    sdk = FrameTransforms(
        transforms=[
            FrameTransform(
                timestamp=Timestamp(*divmod(stamp_ns, 1_000_000_000)),
                parent_frame_id=t.parent_frame_id,
                child_frame_id=t.child_frame_id,
                translation=Vector3(x=t.translation.x, y=t.translation.y, z=t.translation.z),
                rotation=Quaternion(x=t.rotation.x, y=t.rotation.y, z=t.rotation.z, w=t.rotation.w),
            )
            for t in decoded.transforms
        ]
    ).encode()
    assert _decode(pool, "foxglove.FrameTransforms", sdk) == decoded
    first = decoded.transforms[0]
    assert (first.parent_frame_id, first.translation.x, first.translation.y) == ("hall", 3.0, 4.0)
