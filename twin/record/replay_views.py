"""What a replay shows before any message, and how it decodes the messages it shows.

:func:`initial_views` gives the views of a scene's robots (at their stations, zero
joints) and cranes (at home) before the first message; the decoders turn the recorded
canonical JSON messages back into values, exactly as recorded. A ``/joints/<robot>``
message whose names are those of the one decoded before (the recorder writes the same
``{"robot": .., "name": [..],`` head every time) is decoded without them
(:class:`JointValues`). See :class:`twin.record.replay_source.ReplaySource`.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import msgspec

from robots import get_model
from scenes.model import Scene
from sync.fanout import CraneView, RobotView
from twin.record.schemas import CraneMsg, EventMsg, HeartbeatMsg, JointMsg, PoseInFrame

log = logging.getLogger(__name__)

AFTER_NAMES: Final = b'],"stamp_ns":'


class JointValues(msgspec.Struct, gc=False):
    """A ``/joints/<robot>`` message but its names (known to equal the last ones)."""

    stamp_ns: int
    epoch: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


decode_joint = msgspec.json.Decoder(JointMsg).decode
decode_values = msgspec.json.Decoder(JointValues).decode
decode_pose = msgspec.json.Decoder(PoseInFrame).decode
decode_beat = msgspec.json.Decoder(HeartbeatMsg).decode
decode_crane = msgspec.json.Decoder(CraneMsg).decode
decode_event = msgspec.json.Decoder(EventMsg).decode

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


def at_rest_pose(scene: Scene, robot_id: str) -> tuple[Vec3, Quat]:
    """Where the world puts a robot before any base message: its station, model height."""
    robot = next(r for r in scene.robots if r.id == robot_id)
    model = get_model(robot.model)
    station = scene.station(robot.station)
    x, y, z = station.pose.xyz
    half = station.pose.yaw_rad / 2.0
    aw, az = math.cos(half), math.sin(half)
    bx, by, bz, bw = model.base_orientation_xyzw
    quat = (aw * bx - az * by, aw * by + az * bx, aw * bz + az * bw, aw * bw - az * bz)
    return (x, y, z + model.base_height_m), quat


def initial_views(scene: Scene, liveness: str) -> tuple[dict[str, RobotView], dict[str, CraneView]]:
    """Every robot at its station with zero joints, every crane at home (``liveness``)."""
    robots: dict[str, RobotView] = {}
    cranes: dict[str, CraneView] = {}
    for robot in scene.robots:
        model = get_model(robot.model)
        names = list(model.profile.canonical_joint_names)
        position, orientation = at_rest_pose(scene, robot.id)
        robots[robot.id] = RobotView(
            robot_id=robot.id, manufacturer=model.manufacturer, model=model.name,
            task=robot.task, liveness=liveness, stamp_ns=0, epoch=0, joint_names=names,
            positions=[0.0] * len(names), velocities=[0.0] * len(names),
            efforts=[0.0] * len(names), base_position_m=position,
            base_orientation_xyzw=orientation, mode="unknown",
        )  # fmt: skip
    for crane in scene.cranes:
        cranes[crane.id] = CraneView(
            crane_id=crane.id, liveness=liveness, stamp_ns=0, bridge_m=crane.home.bridge,
            trolley_m=crane.home.trolley, hoist_m=crane.home.hoist, moving=False,
        )  # fmt: skip
    return robots, cranes
