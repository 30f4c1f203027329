"""The simulated LiDAR: triangles in the right frames, and scans of the default hall."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import pytest

from robots.bullet import pb
from scenes import load_scene
from twin import World
from viz.lidar import LidarScan, LidarScanner, LidarSpec, world_triangles

AABB_TOLERANCE_M = 0.02


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with World(load_scene()) as built:
        yield built


@pytest.fixture
def fresh_world() -> Iterator[World]:
    with World(load_scene()) as built:
        yield built


def lidar_spec(world: World) -> LidarSpec:
    sensor = next(s for s in world.scene.sensors if s.id == "LIDAR1")
    return LidarSpec.from_sensor(sensor)


def body_aabb(world: World, body: int) -> tuple[np.ndarray, np.ndarray]:
    """Union of PyBullet's AABBs of the base and every link."""
    links = range(-1, pb.getNumJoints(body, physicsClientId=world.client))
    boxes = [pb.getAABB(body, link, physicsClientId=world.client) for link in links]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def assert_triangles_match_aabb(world: World, bodies: list[int]) -> None:
    vertices, triangles, body_ids = world_triangles(world)
    for body in bodies:
        used = vertices[np.unique(triangles[body_ids == body])]
        assert len(used), f"body {body} has no triangles"
        low, high = body_aabb(world, body)
        np.testing.assert_allclose(used.min(axis=0), low, atol=AABB_TOLERANCE_M, err_msg=str(body))
        np.testing.assert_allclose(used.max(axis=0), high, atol=AABB_TOLERANCE_M, err_msg=str(body))


def ray_keys(scan: LidarScan, spec: LidarSpec, mask: np.ndarray) -> set[tuple[int, int]]:
    """(beam, column) of each selected hit, recovered from its direction (unrotated sensor)."""
    offsets = scan.points_m[mask].astype(np.float64) - np.asarray(spec.position_m)
    elevation = np.arcsin(offsets[:, 2] / np.linalg.norm(offsets, axis=1))
    azimuth = np.arctan2(offsets[:, 1], offsets[:, 0]) % (2 * math.pi)
    beam = np.rint((elevation - spec.vertical_angles_rad[0]) / math.radians(2.0)).astype(int)
    column = np.rint(azimuth / (2 * math.pi / spec.horizontal_rays)).astype(int)
    return set(zip(beam.tolist(), (column % spec.horizontal_rays).tolist(), strict=True))


def test_triangles_match_every_bodys_aabb(world: World) -> None:
    vertices, triangles, body_ids = world_triangles(world)
    assert vertices.dtype == np.float32 and vertices.shape[1] == 3
    assert triangles.dtype == np.int32 and triangles.shape == (len(body_ids), 3)
    assert body_ids.dtype == np.int32
    assert_triangles_match_aabb(world, [world.resolve(n).body for n in world.body_names()])


def test_primitives_placed_from_their_centre_of_mass_frames(
    fresh_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = fresh_world.client
    quarter_x = pb.getQuaternionFromEuler((math.pi / 2, 0.0, 0.0))
    shapes = [
        pb.createCollisionShape(pb.GEOM_CAPSULE, radius=0.1, height=0.5, physicsClientId=client),
        pb.createCollisionShape(pb.GEOM_CYLINDER, radius=0.2, height=0.3, physicsClientId=client),
        pb.createCollisionShapeArray(
            [pb.GEOM_BOX, pb.GEOM_SPHERE],
            halfExtents=[[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]],
            radii=[0.0, 0.15],
            collisionFramePositions=[[0.0, 0.0, 0.5], [0.4, 0.0, 0.0]],
            physicsClientId=client,
        ),
    ]
    bodies = [
        pb.createMultiBody(
            1.0,
            shape,
            basePosition=(5.0 + 2.0 * i, 20.0, 3.0),
            baseOrientation=quarter_x,
            baseInertialFramePosition=(0.1, 0.2, 0.3),
            physicsClientId=client,
        )
        for i, shape in enumerate(shapes)
    ]
    # an arm: links whose COM and collision frames are offset from their joint frames
    arm = pb.createMultiBody(
        baseMass=1.0,
        baseCollisionShapeIndex=shapes[1],
        basePosition=(12.0, 20.0, 2.0),
        linkMasses=[1.0, 1.0],
        linkCollisionShapeIndices=[shapes[0], shapes[2]],
        linkVisualShapeIndices=[-1, -1],
        linkPositions=[(0.0, 0.0, 0.5), (0.0, 0.0, 0.7)],
        linkOrientations=[(0, 0, 0, 1), quarter_x],
        linkInertialFramePositions=[(0.05, 0.0, 0.3), (0.0, -0.1, 0.2)],
        linkInertialFrameOrientations=[(0, 0, 0, 1), (0, 0, 0, 1)],
        linkParentIndices=[0, 1],
        linkJointTypes=[pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC],
        linkJointAxis=[(0, 1, 0), (0, 0, 1)],
        physicsClientId=client,
    )
    pb.resetJointState(arm, 0, math.pi / 2, physicsClientId=client)
    pb.resetJointState(arm, 1, 0.25, physicsClientId=client)
    plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client)
    plane_body = pb.createMultiBody(0.0, plane, physicsClientId=client)
    with caplog.at_level(logging.DEBUG, logger="viz.lidar"):
        assert_triangles_match_aabb(fresh_world, [*bodies, arm])
        _, _, body_ids = world_triangles(fresh_world)
    assert plane_body not in body_ids
    assert any("skipped" in record.getMessage() for record in caplog.records)


def test_scan_of_the_default_hall_hits_the_floor(world: World) -> None:
    spec = lidar_spec(world)
    scan = LidarScanner(world, spec).scan()
    assert scan.rays == 16 * 720
    assert len(scan.points_m) > 2000
    assert scan.points_m.dtype == np.float32 and scan.body_ids.dtype == np.int32
    assert np.all(scan.ranges_m <= spec.range_m)
    floor = world.resolve("floor").body
    on_floor = scan.body_ids == floor
    assert np.all(np.abs(scan.points_m[on_floor, 2]) < 0.01)
    downward = scan.points_m[:, 2] < spec.position_m[2] - 1e-3
    assert np.count_nonzero(on_floor & downward) > 0.5 * np.count_nonzero(downward)
    assert len(scan.points_on(world, "floor")) == np.count_nonzero(on_floor)


def test_ranges_are_distances_from_the_sensor(world: World) -> None:
    spec = lidar_spec(world)
    scan = LidarScanner(world, spec).scan()
    distances = np.linalg.norm(scan.points_m.astype(np.float64) - spec.position_m, axis=1)
    np.testing.assert_allclose(scan.ranges_m, distances, atol=1e-4)


def test_closest_robot_is_seen_inside_its_aabb(world: World) -> None:
    spec = lidar_spec(world)
    sensor = np.asarray(spec.position_m)
    closest = min(
        world.robots, key=lambda r: float(np.linalg.norm(world.base_pose(r)[0][:2] - sensor[:2]))
    )
    points = LidarScanner(world, spec).scan().points_on(world, f"robot:{closest}")
    assert len(points) > 5
    low, high = body_aabb(world, world.robot(closest).body)
    assert np.all(points >= low - 0.01) and np.all(points <= high + 0.01)


def test_a_robot_moved_in_front_occludes_what_is_behind(fresh_world: World) -> None:
    world = fresh_world
    spec = lidar_spec(world)
    scanner = LidarScanner(world, spec)
    before = scanner.scan()
    hub = world.resolve("hub:HUB").body
    robot_id = "T3-02"
    robot = world.robot(robot_id).body
    assert len(before.points_on(world, "hub:HUB")) > 100
    # halfway between the sensor (20, 9, 1.8) and the hub (y 11.6..12.4), torso at sensor height
    x, y, z = spec.position_m
    world.set_base_pose(robot_id, (x, y + 1.5, z), world.base_pose(robot_id)[1])
    after = scanner.scan()
    points = after.points_on(world, f"robot:{robot_id}")
    assert len(points) > 50
    low, high = body_aabb(world, robot)
    assert np.all(points >= low - 0.01) and np.all(points <= high + 0.01)
    ranges = after.ranges_m[after.body_ids == robot]
    assert low[1] - y - 0.01 <= ranges.min() <= high[1] - y
    assert abs(float(np.median(ranges)) - 1.5) < 0.3
    blocked = ray_keys(after, spec, after.body_ids == robot)
    hub_before = ray_keys(before, spec, before.body_ids == hub)
    hub_after = ray_keys(after, spec, after.body_ids == hub)
    assert len(hub_before & blocked) > 20  # the robot now stands in front of hub points
    assert hub_after == hub_before - blocked  # those disappear; the rest of the hub stays
    assert len(after.points_on(world, "hub:HUB")) < len(before.points_on(world, "hub:HUB"))


def test_spec_from_sensor_and_orientation() -> None:
    scene = load_scene()
    camera = next(s for s in scene.sensors if s.kind == "camera")
    with pytest.raises(ValueError, match="not a lidar"):
        LidarSpec.from_sensor(camera)
    yawed = LidarSpec((0.0, 0.0, 1.0), pb.getQuaternionFromEuler((0.0, 0.0, math.pi / 2)), 10.0)
    directions = yawed.ray_directions()
    assert directions.shape == (16 * 720, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-12)
    first = (0.0, math.cos(math.radians(15.0)), -math.sin(math.radians(15.0)))
    np.testing.assert_allclose(directions[0], first, atol=1e-9)
    with pytest.raises(ValueError):
        LidarSpec((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0.0)
