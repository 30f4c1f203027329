"""RobotBatch: one merged mesh for every robot, posed from PyBullet, rendered off screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvista as pv

from robots import get_model
from robots.bullet import pb
from scenes import load_scene, parse_scene
from tests.viz.rendering import (
    BACKGROUND,
    WINDOW,
    frame,
    pixel_of,
    plotter_for,
    points_of,
    robot_pixels,
)
from twin.world.world import RobotHandle, World
from viz.robot_mesh import RobotBatch

pv.OFF_SCREEN = True

AABB_MARGIN_M = 0.005  # PyBullet pads AABBs by a small collision margin; points may not exceed it
GREY = (128, 128, 128)

# A body whose inertial frames are offset and turned, with offset, turned visuals: wrong frame
# handling shows up as points displaced by decimetres from PyBullet's AABBs. Each box is turned
# like its link's inertial frame: PyBullet's AABB of a link is the box of its collision shapes
# in the inertial frame, turned to the world, so only then is it tight enough to compare.
OFFSET_URDF = """<robot name="offsets">
  <link name="base">
    <inertial><origin xyz="0.1 0.2 0.3" rpy="0 0 0.5"/><mass value="1"/>
      <inertia ixx="0.1" ixy="0" ixz="0" iyy="0.1" iyz="0" izz="0.1"/></inertial>
    <visual><origin xyz="0.5 0 0" rpy="0 0 0.5"/><geometry><box size="0.2 0.4 0.6"/></geometry>
    </visual>
    <collision><origin xyz="0.5 0 0" rpy="0 0 0.5"/><geometry><box size="0.2 0.4 0.6"/></geometry>
    </collision>
  </link>
  <joint name="j" type="revolute"><parent link="base"/><child link="arm"/>
    <origin xyz="0 0 1" rpy="0 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <link name="arm">
    <inertial><origin xyz="0 0.3 0" rpy="0 0.2 0"/><mass value="1"/>
      <inertia ixx="0.1" ixy="0" ixz="0" iyy="0.1" iyz="0" izz="0.1"/></inertial>
    <visual><origin xyz="0 0 0.5" rpy="0 0.2 0"/><geometry><box size="0.1 0.2 0.6"/></geometry>
    </visual>
    <collision><origin xyz="0 0 0.5" rpy="0 0.2 0"/><geometry><box size="0.1 0.2 0.6"/></geometry>
    </collision>
  </link>
  <joint name="k" type="revolute"><parent link="arm"/><child link="tip"/>
    <origin xyz="0 0 1" rpy="0 0 0"/><axis xyz="1 0 0"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <link name="tip">
    <inertial><origin xyz="0 0 0.2" rpy="0 0 0"/><mass value="1"/>
      <inertia ixx="0.1" ixy="0" ixz="0" iyy="0.1" iyz="0" izz="0.1"/></inertial>
    <visual><origin xyz="0 0 0.3" rpy="0 0 0"/><geometry><capsule radius="0.1" length="0.4"/>
    </geometry></visual>
    <collision><origin xyz="0 0 0.3" rpy="0 0 0"/><geometry><capsule radius="0.1" length="0.4"/>
    </geometry></collision>
  </link>
</robot>
"""


@pytest.fixture
def world() -> Iterator[World]:
    with World(load_scene()) as built:
        yield built


@pytest.fixture
def batch(world: World) -> RobotBatch:
    return RobotBatch(world)


def link_count(world: World, body: int) -> int:
    return int(pb.getNumJoints(body, physicsClientId=world.client))


def assert_inside_link_aabbs(world: World, batch: RobotBatch, robot_id: str) -> None:
    body = world.robots[robot_id].body
    for link in range(-1, link_count(world, body)):
        points = points_of(batch, robot_id, link)
        if len(points) == 0:
            continue
        low, high = (np.asarray(v) for v in pb.getAABB(body, link, physicsClientId=world.client))
        assert np.all(points >= low - AABB_MARGIN_M), (robot_id, link)
        assert np.all(points <= high + AABB_MARGIN_M), (robot_id, link)


def descendants(world: World, body: int, root: int) -> set[int]:
    parent = {
        i: int(pb.getJointInfo(body, i, physicsClientId=world.client)[16])
        for i in range(link_count(world, body))
    }
    out = {root}
    changed = True
    while changed:
        changed = False
        for child, up in parent.items():
            if up in out and child not in out:
                out.add(child)
                changed = True
    return out


# -- geometry and poses ---------------------------------------------------------------


def test_one_robot_index_per_robot_and_geometry_for_every_visual_link(
    world: World, batch: RobotBatch
) -> None:
    scene_ids = tuple(r.id for r in world.scene.robots)
    assert batch.robot_ids == scene_ids
    assert set(np.unique(batch.mesh.point_data["robot"])) == set(range(len(scene_ids)))
    assert batch.mesh.n_cells > 0 and batch.mesh.is_all_triangles
    assert batch.mesh.point_data["rgb"].dtype == np.uint8
    assert np.all(batch.mesh.point_data["quantity"] == 0.0)
    for robot_id in scene_ids:
        body = world.robots[robot_id].body
        visual_links = {
            int(s[1]) for s in pb.getVisualShapeData(body, physicsClientId=world.client)
        }
        assert visual_links, robot_id
        for link in visual_links:
            assert len(points_of(batch, robot_id, link)) >= 8, (robot_id, link)
        assert set(batch.link_centers(robot_id)) == visual_links


def test_points_lie_within_the_links_pybullet_aabbs(world: World, batch: RobotBatch) -> None:
    for robot_id in batch.robot_ids:
        assert_inside_link_aabbs(world, batch, robot_id)
        x, y, top = batch.head_position(robot_id)
        base, _ = world.base_pose(robot_id)
        assert (x, y) == pytest.approx(base[:2])
        assert top == pytest.approx(world.robots[robot_id].model.height_m, abs=0.01)


def test_bending_a_knee_moves_shank_and_foot_but_not_the_torso(
    world: World, batch: RobotBatch
) -> None:
    handle = world.robots["K1-03"]
    shank = world.resolve("robot:K1-03/left_knee").link
    assert shank is not None
    moving = descendants(world, handle.body, shank)
    before = {link: points_of(batch, "K1-03", link) for link in range(-1, 27)}
    others_before = points_of(batch, "K1-05")

    world.set_joint_positions("K1-03", {"left_knee": 1.2})
    batch.update()

    assert_inside_link_aabbs(world, batch, "K1-03")
    foot = handle.link_index["l_foot_link"]
    assert {shank, foot} <= moving
    for link, old in before.items():
        shift = np.abs(points_of(batch, "K1-03", link) - old).max()
        if link in moving:
            assert shift > 0.05, link
        else:
            assert shift < 1e-6, link
    assert handle.link_index["torso_link"] not in moving
    assert np.array_equal(points_of(batch, "K1-05"), others_before)


def test_frames_with_an_offset_base_inertia_and_offset_visuals(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "offsets.urdf"
    path.write_text(OFFSET_URDF, encoding="utf-8")
    body = pb.loadURDF(
        str(path),
        basePosition=(2.0, 3.0, 1.0),
        baseOrientation=pb.getQuaternionFromEuler((0.3, 0.2, 1.0)),
        useFixedBase=True,
        physicsClientId=world.client,
    )
    pb.resetJointState(body, 0, 0.7, physicsClientId=world.client)
    pb.resetJointState(body, 1, -0.4, physicsClientId=world.client)
    world.robots["X"] = RobotHandle("X", get_model("kestrel_k1"), body, {}, {})
    batch = RobotBatch(world, robot_ids=["X"], resolution=24)
    assert_inside_link_aabbs(world, batch, "X")
    for link in (-1, 0):  # boxes: PyBullet's AABB is tight but for its margin (~2 cm turned)
        points = points_of(batch, "X", link)
        low, high = (np.asarray(v) for v in pb.getAABB(body, link, physicsClientId=world.client))
        assert np.abs(points.min(axis=0) - low).max() < 0.03, link  # a wrong frame: >= 0.1 m
        assert np.abs(points.max(axis=0) - high).max() < 0.03, link
    # the capsule's drawn length (end to end along its axis) is 0.4 + 2 x 0.1
    tip = points_of(batch, "X", 1)
    axis = np.linalg.svd(tip - tip.mean(axis=0))[2][0]
    extent = (tip - tip.mean(axis=0)) @ axis
    assert extent.max() - extent.min() == pytest.approx(0.6, abs=0.005)


def test_the_external_humanoid_fits_its_aabbs() -> None:
    yaml = """name: One external humanoid
floor: {size: [10, 10]}
hub: {id: HUB, pose: {xyz: [1, 1, 0]}, size: [1, 1, 2]}
stations: [{id: S1, pose: {xyz: [5, 5, 0], yaw: 30 deg}}]
robots: [{id: HU-1, model: pybullet_humanoid, station: S1, task: idle}]
"""
    with World(parse_scene(yaml, "<humanoid>")) as world:
        batch = RobotBatch(world)
        handle = world.robots["HU-1"]
        # no <visual> in its URDF: PyBullet reports the collision shapes instead
        kinds = {
            int(s[2]) for s in pb.getVisualShapeData(handle.body, physicsClientId=world.client)
        }
        assert kinds == {pb.GEOM_SPHERE, pb.GEOM_CAPSULE, pb.GEOM_BOX}
        assert len(batch.link_centers("HU-1")) == link_count(world, handle.body)  # base: none
        assert_inside_link_aabbs(world, batch, "HU-1")
        assert batch.head_position("HU-1")[2] == pytest.approx(handle.model.height_m, abs=0.005)


# -- values, colours, picking ---------------------------------------------------------


def test_link_values_fill_quantity_for_one_robot_only(batch: RobotBatch) -> None:
    batch.set_link_values("K1-03", {-1: 2.5, 3: 7.0, 999: 1.0})
    robot = batch.mesh.point_data["robot"] == batch.robot_ids.index("K1-03")
    link = batch.mesh.point_data["link"]
    quantity = batch.mesh.point_data["quantity"]
    assert np.all(quantity[robot & (link == -1)] == 2.5)
    assert np.all(quantity[robot & (link == 3)] == 7.0)
    assert np.all(quantity[robot & (link != -1) & (link != 3)] == 0.0)
    assert np.all(quantity[~robot] == 0.0)
    with pytest.raises(KeyError):
        batch.set_link_values("nobody", {0: 1.0})


def test_robot_of_point_and_cell_map_back(batch: RobotBatch) -> None:
    robots = batch.mesh.point_data["robot"]
    for point_id in range(0, batch.mesh.n_points, 97):
        assert batch.robot_of_point(point_id) == batch.robot_ids[robots[point_id]]
    for i, robot_id in enumerate(batch.robot_ids):  # first and last point of every robot
        ids = np.flatnonzero(robots == i)
        assert batch.robot_of_point(int(ids[0])) == robot_id
        assert batch.robot_of_point(int(ids[-1])) == robot_id
    triangles = batch.mesh.regular_faces
    for cell_id in range(0, batch.mesh.n_cells, 89):
        assert batch.robot_of_cell(cell_id) == batch.robot_ids[robots[triangles[cell_id, 0]]]
    assert batch.robot_of_cell(batch.mesh.n_cells - 1) == batch.robot_ids[-1]
    with pytest.raises(IndexError):
        batch.robot_of_point(batch.mesh.n_points)


# -- rendering ------------------------------------------------------------------------


def look_at(plotter: pv.Plotter, world: World, robot_id: str) -> None:
    (x, y, _), _ = world.base_pose(robot_id)
    plotter.camera.focal_point = (x, y, 0.85)
    plotter.camera.position = (x + 3.0, y + 0.5, 1.2)
    plotter.camera.up = (0.0, 0.0, 1.0)
    plotter.camera.view_angle = 40.0
    plotter.reset_camera_clipping_range()


def test_a_known_link_renders_where_pybullet_puts_it(world: World, batch: RobotBatch) -> None:
    world.set_joint_positions("K1-03", {"left_knee": 1.2, "left_hip_pitch": -0.8})
    batch.update()
    plotter = plotter_for(batch)
    try:
        look_at(plotter, world, "K1-03")
        image = frame(plotter)
        assert robot_pixels(image).shape[0] > 1000
        background = np.asarray(BACKGROUND)
        assert np.array_equal(image[2, 2], background)
        for name in ("pelvis", "l_shank_link", "torso_link"):
            xyz, _ = world.link_pose(f"robot:K1-03/{name}")
            link = world.robots["K1-03"].link_index[name]
            centre = batch.link_centers("K1-03")[link]
            for point in (xyz, centre):
                row, col = pixel_of(plotter, point)
                assert 0 <= row < WINDOW[1] and 0 <= col < WINDOW[0]
                assert not np.array_equal(image[row, col], background), (name, point)
        row, col = pixel_of(plotter, batch.link_centers("K1-03")[-1])
        red, green, blue = image[row, col]
        assert red > blue + 80 and red > green  # the pelvis is Kestrel orange
    finally:
        plotter.close()


def test_grey_robot_renders_grey_while_another_keeps_its_colours(
    world: World, batch: RobotBatch
) -> None:
    plotter = plotter_for(batch)
    try:
        look_at(plotter, world, "K1-03")
        coloured = robot_pixels(frame(plotter))
        assert np.any(coloured[:, 0] - coloured[:, 2] > 80)  # orange before

        batch.set_robot_colour("K1-03", GREY)
        grey = robot_pixels(frame(plotter))
        assert grey.shape[0] > 1000
        assert np.all(np.ptp(grey, axis=1) <= 3)  # R = G = B everywhere on the robot

        look_at(plotter, world, "K1-05")
        other = robot_pixels(frame(plotter))
        assert np.any(other[:, 0] - other[:, 2] > 80)  # still orange

        batch.set_robot_colour("K1-03", None)
        look_at(plotter, world, "K1-03")
        restored = robot_pixels(frame(plotter))
        assert np.any(restored[:, 0] - restored[:, 2] > 80)
    finally:
        plotter.close()
