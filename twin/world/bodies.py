"""The hall's fixed furniture as PyBullet bodies: floor, hub, workbenches, items, panels.

Benches collide as one solid block from the floor to their top (what a robot must
not walk into) and look like a top slab on four legs. Items lie on the bench top at
their offset (rotated with the bench); fixed items are static, the rest are dynamic.
"""

from __future__ import annotations

import math
from typing import Final

from robots.bullet import pb
from scenes.model import Bench, Scene

_FLOOR_THICKNESS_M: Final = 0.1
_PANEL_DEPTH_M: Final = 0.08
_TOP_THICKNESS_M: Final = 0.05
_LEG_SIDE_M: Final = 0.06
_FRICTION: Final = 0.8

_FLOOR_RGBA: Final = (0.78, 0.8, 0.83, 1.0)
_BENCH_RGBA: Final = (0.55, 0.6, 0.66, 1.0)
_HUB_RGBA: Final = (0.15, 0.35, 0.75, 1.0)
_PANEL_RGBA: Final = (0.05, 0.07, 0.1, 1.0)
_ITEM_RGBA: Final = {
    "torque_wrench": (0.8, 0.1, 0.1, 1.0),
    "sensor_array": (0.1, 0.6, 0.3, 1.0),
    "precision_component": (0.85, 0.75, 0.3, 1.0),
    "fixture": (0.3, 0.3, 0.35, 1.0),
    "part_bin": (0.2, 0.4, 0.8, 1.0),
}


def _box(
    client: int,
    half_extents: tuple[float, float, float],
    position: tuple[float, float, float],
    yaw_rad: float,
    rgba: tuple[float, float, float, float],
    mass_kg: float = 0.0,
) -> int:
    collision = pb.createCollisionShape(
        pb.GEOM_BOX, halfExtents=half_extents, physicsClientId=client
    )
    visual = pb.createVisualShape(
        pb.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=client
    )
    body = pb.createMultiBody(
        baseMass=mass_kg,
        baseCollisionShapeIndex=collision,
        baseVisualShapeIndex=visual,
        basePosition=position,
        baseOrientation=pb.getQuaternionFromEuler((0.0, 0.0, yaw_rad)),
        physicsClientId=client,
    )
    pb.changeDynamics(body, -1, lateralFriction=_FRICTION, physicsClientId=client)
    return int(body)


def _bench(client: int, bench: Bench) -> int:
    length, depth = bench.size
    height = bench.height
    collision = pb.createCollisionShape(
        pb.GEOM_BOX, halfExtents=(length / 2, depth / 2, height / 2), physicsClientId=client
    )
    # visual: a top slab and four legs, all relative to the block's centre
    leg_h = height - _TOP_THICKNESS_M
    inset_x, inset_y = length / 2 - _LEG_SIDE_M, depth / 2 - _LEG_SIDE_M
    half_extents = [(length / 2, depth / 2, _TOP_THICKNESS_M / 2)] + [
        (_LEG_SIDE_M / 2, _LEG_SIDE_M / 2, leg_h / 2)
    ] * 4
    positions = [(0.0, 0.0, height / 2 - _TOP_THICKNESS_M / 2)] + [
        (sx * inset_x, sy * inset_y, -height / 2 + leg_h / 2) for sx in (-1, 1) for sy in (-1, 1)
    ]
    visual = pb.createVisualShapeArray(
        shapeTypes=[pb.GEOM_BOX] * 5,
        halfExtents=half_extents,
        visualFramePositions=positions,
        rgbaColors=[_BENCH_RGBA] * 5,
        physicsClientId=client,
    )
    x, y, z = bench.pose.xyz
    body = pb.createMultiBody(
        baseMass=0.0,
        baseCollisionShapeIndex=collision,
        baseVisualShapeIndex=visual,
        basePosition=(x, y, z + height / 2),
        baseOrientation=pb.getQuaternionFromEuler((0.0, 0.0, bench.pose.yaw_rad)),
        physicsClientId=client,
    )
    pb.changeDynamics(body, -1, lateralFriction=_FRICTION, physicsClientId=client)
    return int(body)


def build_static_bodies(scene: Scene, client: int) -> dict[str, int]:
    """Create floor, hub, benches with their items, and panels; returns name -> body id."""
    bodies: dict[str, int] = {}
    sx, sy = scene.floor.size
    bodies["floor"] = _box(
        client,
        (sx / 2, sy / 2, _FLOOR_THICKNESS_M / 2),
        (sx / 2, sy / 2, -_FLOOR_THICKNESS_M / 2),
        0.0,
        _FLOOR_RGBA,
    )
    hub = scene.hub
    hx, hy, hz = hub.size
    bodies[f"hub:{hub.id}"] = _box(
        client,
        (hx / 2, hy / 2, hz / 2),
        (hub.pose.xyz[0], hub.pose.xyz[1], hub.pose.xyz[2] + hz / 2),
        hub.pose.yaw_rad,
        _HUB_RGBA,
    )
    for bench in scene.benches:
        bodies[f"bench:{bench.id}"] = _bench(client, bench)
        yaw = bench.pose.yaw_rad
        c, s = math.cos(yaw), math.sin(yaw)
        top_z = bench.pose.xyz[2] + bench.height
        for item in bench.items:
            ox, oy = item.offset
            ix, iy, iz = item.size
            position = (
                bench.pose.xyz[0] + c * ox - s * oy,
                bench.pose.xyz[1] + s * ox + c * oy,
                top_z + iz / 2,
            )
            bodies[f"item:{item.id}"] = _box(
                client,
                (ix / 2, iy / 2, iz / 2),
                position,
                yaw,
                _ITEM_RGBA[item.kind],
                0.0 if item.fixed else item.mass,
            )
    for panel in scene.panels:
        width, height = panel.size
        # the panel's face looks along its yaw; its width runs across that direction
        bodies[f"panel:{panel.id}"] = _box(
            client,
            (_PANEL_DEPTH_M / 2, width / 2, height / 2),
            panel.pose.xyz,
            panel.pose.yaw_rad,
            _PANEL_RGBA,
        )
    return bodies
