"""Where everything else is during a preview: the other robots and the cranes.

A preview runs in the hall as the scene describes it (every other robot standing at its
station, cranes at home) or as the live twin reports it right now (``twin preview --live``):
each robot at its reported pelvis pose, each crane at its reported axes (a robot that never
reported a pose stands at its station). Plain data, so trials in other processes get it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from robots import get_model
from scenes.model import Scene
from sync.fanout import Snapshot
from twin.preview.kinematics import heading_quaternion

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


@dataclass(frozen=True)
class Surroundings:
    """Pelvis pose (position m, orientation x, y, z, w) of each robot; each crane's bridge,
    trolley and hoist (m); and where this came from (said in the report)."""

    robots: Mapping[str, tuple[Vec3, Quat]]
    cranes: Mapping[str, Vec3]
    source: str

    @classmethod
    def from_scene(cls, scene: Scene) -> Surroundings:
        """Every robot standing at its station, every crane at home."""
        robots: dict[str, tuple[Vec3, Quat]] = {}
        for robot in scene.robots:
            model = get_model(robot.model)
            pose = scene.station(robot.station).pose
            x, y, z = pose.xyz
            robots[robot.id] = (
                (x, y, z + model.base_height_m),
                heading_quaternion(model, pose.yaw_rad),
            )
        cranes = {c.id: (c.home.bridge, c.home.trolley, c.home.hoist) for c in scene.cranes}
        return cls(robots, cranes, "scene")

    @classmethod
    def from_snapshot(cls, scene: Scene, snapshot: Snapshot, endpoint: str) -> Surroundings:
        """The live twin's state: each robot where the twin places it (its newest reported pose,
        or its station until it reports one), each crane at its reported axes."""
        base = cls.from_scene(scene)
        robots = dict(base.robots)
        live = 0
        for view in snapshot.robots:
            if view.robot_id in robots:
                robots[view.robot_id] = (view.base_position_m, view.base_orientation_xyzw)
                live += view.liveness == "LIVE"
        cranes = dict(base.cranes)
        for crane in snapshot.cranes:
            if crane.crane_id in cranes and crane.stamp_ns > 0:
                cranes[crane.crane_id] = (crane.bridge_m, crane.trolley_m, crane.hoist_m)
        source = f"live twin at {endpoint} (snapshot {snapshot.seq}, {live} robots LIVE)"
        return cls(robots, cranes, source)
