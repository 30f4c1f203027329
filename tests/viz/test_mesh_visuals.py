"""Mesh visuals: a robot drawn from its own STL, OBJ and DAE files, scaled, placed, coloured,
decimated to the triangle budget, and rendered off screen where PyBullet puts it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pybullet_data
import pytest
import pyvista as pv
import trimesh

from robots import get_model
from robots.bullet import pb
from scenes import load_scene
from tests.viz.rendering import BACKGROUND, frame, pixel_of, plotter_for, points_of
from twin.world.world import RobotHandle, World
from viz.mesh_assets import MeshAssetError, decimate, load_mesh, triangle_budget
from viz.robot_mesh import RobotBatch

pv.OFF_SCREEN = True

LAIKAGO = Path(pybullet_data.getDataPath()) / "laikago" / "laikago_toes_zup.urdf"
AABB_MARGIN_M = 0.01  # PyBullet pads AABBs by its collision margin

MESH_URDF = """<robot name="meshes">
  <link name="base">
    <inertial><mass value="1"/>
      <inertia ixx="0.1" ixy="0" ixz="0" iyy="0.1" iyz="0" izz="0.1"/></inertial>
    <visual><origin xyz="0 0 0.5" rpy="0 0 0"/>
      <geometry><mesh filename="box.dae" scale="2 1 1"/></geometry></visual>
    <visual><origin xyz="1 0 0" rpy="0 0 1.5707963"/>
      <geometry><mesh filename="package://meshes/box.stl"/></geometry>
      <material name="green"><color rgba="0 1 0 1"/></material></visual>
    <collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision>
  </link>
</robot>
"""


@pytest.fixture
def world() -> Iterator[World]:
    with World(load_scene()) as built:
        yield built


def add_body(world: World, robot_id: str, urdf: Path, position: tuple[float, float, float]) -> int:
    """A URDF loaded into the world's client and known to it as robot ``robot_id``."""
    body = int(
        pb.loadURDF(
            str(urdf), basePosition=position, useFixedBase=True, physicsClientId=world.client
        )
    )
    world.robots[robot_id] = RobotHandle(robot_id, get_model("kestrel_k1"), body, {}, {})
    return body


def dae_bytes(mesh: trimesh.Trimesh) -> bytes:
    """The mesh as a Collada document (trimesh's exporter, through pycollada)."""
    data: bytes = trimesh.exchange.dae.export_collada(mesh)  # type: ignore[no-untyped-call]
    return data


def file_triangles(body: int, client: int) -> int:
    return sum(
        len(load_mesh(Path(s[4].decode()), (1.0, 1.0, 1.0))[1])
        for s in pb.getVisualShapeData(body, physicsClientId=client)
        if s[2] == pb.GEOM_MESH
    )


def test_a_mesh_robot_from_pybullet_data_is_drawn_inside_its_links(world: World) -> None:
    body = add_body(world, "L", LAIKAGO, (3.0, 3.0, 0.6))
    batch = RobotBatch(world, robot_ids=["L"])
    drawn = {int(link) for link in np.unique(batch.mesh.point_data["link"])}
    meshed = {
        int(s[1]) for s in pb.getVisualShapeData(body, physicsClientId=world.client) if s[2] == 5
    }
    assert meshed and meshed <= drawn  # every link with a mesh visual has geometry
    for link in meshed:
        points = points_of(batch, "L", link)
        low, high = (np.asarray(v) for v in pb.getAABB(body, link, physicsClientId=world.client))
        assert (points.min(axis=0) >= low - AABB_MARGIN_M).all(), link
        assert (points.max(axis=0) <= high + AABB_MARGIN_M).all(), link
        # the mesh fills its link's box: a wrong scale or frame leaves centimetres of gap
        assert np.abs(points.min(axis=0) - low).max() < 0.02, link
        assert np.abs(points.max(axis=0) - high).max() < 0.02, link


def test_a_robots_meshes_are_decimated_to_its_triangle_budget(world: World) -> None:
    body = add_body(world, "L", LAIKAGO, (3.0, 3.0, 0.6))
    raw = file_triangles(body, world.client)
    assert raw > 30_000  # laikago's meshes are finer than the budget
    full = RobotBatch(world, robot_ids=["L"], triangles_per_robot=10**9)
    budget = RobotBatch(world, robot_ids=["L"], triangles_per_robot=8_000)
    primitives = full.mesh.n_cells - raw  # the toes are spheres
    assert full.mesh.n_cells >= raw
    assert budget.mesh.n_cells <= 8_000 * 1.05 + primitives
    # decimated, it still fills the same space
    assert np.allclose(budget.mesh.bounds, full.mesh.bounds, atol=0.02)


def test_stl_and_dae_visuals_take_their_scale_origin_and_colour(
    world: World, tmp_path: Path
) -> None:
    box = trimesh.creation.box(extents=(0.2, 0.4, 0.6))
    box.visual = trimesh.visual.ColorVisuals(box, face_colors=np.tile([200, 30, 30, 255], (12, 1)))
    (tmp_path / "box.dae").write_bytes(dae_bytes(box))
    (tmp_path / "meshes").mkdir()
    box.export(tmp_path / "meshes" / "box.stl")
    urdf = tmp_path / "meshes.urdf"
    urdf.write_text(MESH_URDF, encoding="utf-8")
    pb.setAdditionalSearchPath(str(tmp_path), physicsClientId=world.client)  # package://meshes
    add_body(world, "M", urdf, (5.0, 5.0, 1.0))
    batch = RobotBatch(world, robot_ids=["M"])
    points = points_of(batch, "M")
    rgb = batch.mesh.point_data["rgb"][batch.mesh.point_data["robot"] == 0]
    red = (rgb == (200, 30, 30)).all(axis=1)  # the DAE's own colour: the URDF gives none
    green = (rgb == (0, 255, 0)).all(axis=1)  # the STL takes the URDF's material
    assert red.any() and green.any() and (red | green).all()
    dae, stl = points[red], points[green]
    # DAE: scaled x2 in x, 0.5 m up
    assert np.allclose(dae.min(axis=0), (5.0 - 0.2, 5.0 - 0.2, 1.5 - 0.3), atol=1e-4)
    assert np.allclose(dae.max(axis=0), (5.0 + 0.2, 5.0 + 0.2, 1.5 + 0.3), atol=1e-4)
    # STL: 1 m along x, turned 90 degrees about z (its 0.4 m side now along x)
    assert np.allclose(stl.min(axis=0), (6.0 - 0.2, 5.0 - 0.1, 1.0 - 0.3), atol=1e-4)
    assert np.allclose(stl.max(axis=0), (6.0 + 0.2, 5.0 + 0.1, 1.0 + 0.3), atol=1e-4)


def test_a_mesh_robot_renders_where_its_links_are(world: World) -> None:
    body = add_body(world, "L", LAIKAGO, (3.0, 3.0, 0.6))
    batch = RobotBatch(world, robot_ids=["L"])
    plotter = plotter_for(batch)
    try:
        plotter.camera.focal_point = (3.0, 3.0, 0.5)
        plotter.camera.position = (5.0, 3.5, 1.2)
        plotter.camera.up = (0.0, 0.0, 1.0)
        plotter.reset_camera_clipping_range()
        image = frame(plotter)
        background = np.asarray(BACKGROUND)
        for link in (-1, 2, 6):  # the chassis and two lower legs
            centre = np.mean(pb.getAABB(body, link, physicsClientId=world.client), axis=0)
            row, col = pixel_of(plotter, (float(centre[0]), float(centre[1]), float(centre[2])))
            assert np.abs(image[row, col] - background).sum() > 30, link
        assert np.array_equal(image[2, 2], background)
    finally:
        plotter.close()


def test_bad_mesh_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MeshAssetError, match=r"gone\.stl: mesh file not found"):
        load_mesh(tmp_path / "gone.stl", (1.0, 1.0, 1.0))
    (tmp_path / "broken.stl").write_bytes(b"solid x\nfacet normal oops\n")
    with pytest.raises(MeshAssetError, match=r"broken\.stl"):
        load_mesh(tmp_path / "broken.stl", (1.0, 1.0, 1.0))
    (tmp_path / "texture.png").write_bytes(b"\x89PNG")
    with pytest.raises(MeshAssetError, match="not a mesh the viewer draws"):
        load_mesh(tmp_path / "texture.png", (1.0, 1.0, 1.0))


def test_a_robot_with_an_unreadable_mesh_draws_the_rest(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = trimesh.creation.box(extents=(0.2, 0.4, 0.6))
    (tmp_path / "meshes").mkdir()
    box.export(tmp_path / "meshes" / "box.stl")
    (tmp_path / "box.dae").write_bytes(dae_bytes(box))
    urdf = tmp_path / "meshes.urdf"
    urdf.write_text(MESH_URDF, encoding="utf-8")
    pb.setAdditionalSearchPath(str(tmp_path), physicsClientId=world.client)
    add_body(world, "M", urdf, (5.0, 5.0, 1.0))
    (tmp_path / "box.dae").write_bytes(b"<COLLADA>not closed")  # damaged after PyBullet read it
    from viz import mesh_assets

    mesh_assets._read.cache_clear()
    with caplog.at_level(logging.WARNING, logger="viz.robot_mesh"):
        batch = RobotBatch(world, robot_ids=["M"])
    assert any(
        "box.dae" in r.getMessage() and "not drawn" in r.getMessage() for r in caplog.records
    )
    assert batch.mesh.n_cells == 12  # the STL box is still drawn


def test_triangle_budget_shares_in_proportion_and_decimate_keeps_small_meshes() -> None:
    assert triangle_budget([100, 300], budget=1000) == [100, 300]
    assert triangle_budget([1000, 3000], budget=1000) == [250, 750]
    box = trimesh.creation.box()
    points, triangles = np.asarray(box.vertices), np.asarray(box.faces)
    same_points, same_triangles = decimate(points, triangles, 4)  # never below 12
    assert len(same_triangles) == 12 and np.array_equal(same_points, points)
