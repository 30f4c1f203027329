"""Robots' visual shapes as triangles per link, and the link poses that place them.

Shared by the desktop viewer (:mod:`viz.robot_mesh`: every robot merged into one mesh) and
the web viewer (:mod:`viz.web.robots`: one instanced mesh per link kind). Boxes, cylinders,
capsules and spheres become triangles here; STL, OBJ and DAE meshes come through
:mod:`viz.mesh_assets`, decimated to a triangle budget per robot; planes are skipped with a
warning.

Frames (verified with pybullet 3.2.7 against ``getAABB`` with an offset, rotated base inertial
frame; see ``tests/viz/test_robot_mesh.py``): ``getVisualShapeData``'s local frame is relative to
the link's URDF frame for every link, the base included. For links, ``getLinkState()[4:6]`` is
that URDF frame. For the base, ``getBasePositionAndOrientation`` is the base's *inertial*
frame (centre of mass), so the base's points are given in that frame, pre-multiplied once
by the inverse of the local inertial frame (``getDynamicsInfo()[3:5]``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyvista as pv

from robots.bullet import pb
from twin.world.world import World
from viz.mesh_assets import (
    TRIANGLES_PER_ROBOT,
    MeshAssetError,
    decimate,
    load_mesh,
    mesh_rgb,
    triangle_budget,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Part = tuple[F64, I64, U8]  # points (n, 3) in the link's pose frame, triangles (m, 3), rgb (n, 3)

BASE_LINK: Final = -1
MIN_RESOLUTION: Final = 3
_Template = tuple[F64, I64]  # points (n, 3) and triangles (m, 3), in the shape's own frame


def rotation_matrices(quat_xyzw: F64) -> F64:
    """Rotation matrices (n, 3, 3) of unit quaternions (n, 4) in PyBullet's (x, y, z, w) order."""
    x, y, z, w = quat_xyzw[:, 0], quat_xyzw[:, 1], quat_xyzw[:, 2], quat_xyzw[:, 3]
    out = np.empty((len(quat_xyzw), 3, 3))
    out[:, 0, 0] = 1 - 2 * (y * y + z * z)
    out[:, 0, 1] = 2 * (x * y - z * w)
    out[:, 0, 2] = 2 * (x * z + y * w)
    out[:, 1, 0] = 2 * (x * y + z * w)
    out[:, 1, 1] = 1 - 2 * (x * x + z * z)
    out[:, 1, 2] = 2 * (y * z - x * w)
    out[:, 2, 0] = 2 * (x * z - y * w)
    out[:, 2, 1] = 2 * (y * z + x * w)
    out[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def _transform(points: F64, position: Sequence[float], quat_xyzw: Sequence[float]) -> F64:
    """Points (n, 3) moved by a rigid transform (position, quaternion)."""
    rotation = rotation_matrices(np.asarray([quat_xyzw], dtype=np.float64))[0]
    result: F64 = points @ rotation.T + np.asarray(position, dtype=np.float64)
    return result


def _inverse_transform(points: F64, position: Sequence[float], quat_xyzw: Sequence[float]) -> F64:
    """Points (n, 3) expressed in the frame given by (position, quaternion)."""
    rotation = rotation_matrices(np.asarray([quat_xyzw], dtype=np.float64))[0]
    result: F64 = (points - np.asarray(position, dtype=np.float64)) @ rotation
    return result


def _template(surface: Any) -> _Template:
    """Points and triangles of a pyvista surface, every data array dropped."""
    tri = surface.triangulate().clean()
    faces = np.asarray(tri.faces, dtype=np.int64).reshape(-1, 4)
    return np.asarray(tri.points, dtype=np.float64), faces[:, 1:].copy()


def merge_templates(parts: Sequence[_Template]) -> _Template:
    points, triangles, offset = [], [], 0
    for part_points, part_triangles in parts:
        points.append(part_points)
        triangles.append(part_triangles + offset)
        offset += len(part_points)
    return np.concatenate(points), np.concatenate(triangles)


def _sphere(radius_m: float, resolution: int) -> _Template:
    return _template(
        pv.Sphere(
            radius=radius_m,
            theta_resolution=resolution,
            phi_resolution=max(MIN_RESOLUTION, resolution // 2 + 1),
        )
    )


def _cylinder(radius_m: float, length_m: float, resolution: int, capping: bool) -> _Template:
    return _template(
        pv.Cylinder(
            center=(0.0, 0.0, 0.0),
            direction=(0.0, 0.0, 1.0),  # URDF cylinders and capsules lie along local z
            radius=radius_m,
            height=length_m,
            resolution=resolution,
            capping=capping,
        )
    )


def _primitive(geometry: int, dims: Sequence[float], resolution: int) -> _Template | None:
    """A visual shape's triangles in its own frame; None for kinds not drawn (meshes, planes)."""
    if geometry == pb.GEOM_BOX:
        hx, hy, hz = (0.5 * float(d) for d in dims[:3])
        return _template(pv.Box(bounds=(-hx, hx, -hy, hy, -hz, hz)))
    if geometry == pb.GEOM_SPHERE:
        return _sphere(float(dims[0]), resolution)
    if geometry == pb.GEOM_CYLINDER:
        return _cylinder(float(dims[1]), float(dims[0]), resolution, capping=True)
    if geometry == pb.GEOM_CAPSULE:
        length_m, radius_m = float(dims[0]), float(dims[1])
        body = _cylinder(radius_m, length_m, resolution, capping=False)
        ends = []
        for sign in (1.0, -1.0):
            points, triangles = _sphere(radius_m, resolution)
            ends.append((points + np.array([0.0, 0.0, sign * 0.5 * length_m]), triangles))
        return merge_templates([body, *ends])
    return None


class LinkGeometry:
    """Each robot's visual shapes as triangles, per link; robots of one model share the
    mesh files (read and decimated once) and primitives of equal size."""

    def __init__(
        self,
        world: World,
        *,
        resolution: int = 12,
        triangles_per_robot: int = TRIANGLES_PER_ROBOT,
    ) -> None:
        """``resolution``: segments around cylinders, capsules and spheres;
        ``triangles_per_robot``: the budget a robot's mesh visuals are decimated to."""
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
        self._world = world
        self._resolution = resolution
        self._triangle_budget = triangles_per_robot
        self._mesh_cache: dict[tuple[Any, ...], dict[int, tuple[_Template, Any]]] = {}
        self._primitives: dict[tuple[int, tuple[float, ...]], _Template | None] = {}

    def parts(self, robot_id: str, body: int) -> dict[int, list[Part]]:
        """Per link: (points in the pose frame the update uses, triangles, rgb) of each shape."""
        resolution, cache = self._resolution, self._primitives
        client = self._world.client
        inertial = pb.getDynamicsInfo(body, BASE_LINK, physicsClientId=client)
        shapes = pb.getVisualShapeData(body, physicsClientId=client)
        meshes = self._meshes(robot_id, shapes)
        by_link: dict[int, list[Part]] = {}
        for i, shape in enumerate(shapes):
            link, geometry, dims = int(shape[1]), int(shape[2]), tuple(float(d) for d in shape[3])
            rgba = np.asarray(shape[7][:3], dtype=np.float64)
            if geometry == pb.GEOM_MESH:
                if i not in meshes:
                    continue  # said in _meshes
                template, file_rgb = meshes[i]
                if file_rgb is not None and np.allclose(rgba, 1.0):  # the URDF gave no colour
                    rgba = np.asarray(file_rgb, dtype=np.float64) / 255.0
            else:
                key = (geometry, dims)
                if key not in cache:
                    cache[key] = _primitive(geometry, dims, resolution)
                primitive = cache[key]
                if primitive is None:
                    log.warning(
                        "robot %s link %d: visual geometry type %d not drawn",
                        robot_id,
                        link,
                        geometry,
                    )
                    continue
                template = primitive
            points = _transform(template[0], shape[5], shape[6])  # the link's URDF frame
            if link == BASE_LINK:  # the base is posed by its inertial frame
                points = _inverse_transform(points, inertial[3], inertial[4])
            rgb8 = np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)
            rgb = np.repeat(rgb8[None, :], len(points), axis=0)
            by_link.setdefault(link, []).append((points, template[1], rgb))
        return by_link

    def _meshes(
        self, robot_id: str, shapes: Sequence[Any]
    ) -> dict[int, tuple[_Template, tuple[int, int, int] | None]]:
        """Each mesh visual's triangles (decimated to the robot's budget) and file colour;
        robots of one model share them (read and decimated once)."""
        key = tuple(
            (int(s[2]), s[4], tuple(float(v) for v in s[3]))
            for s in shapes
            if int(s[2]) == pb.GEOM_MESH
        )
        if not key:
            return {}
        cached = self._mesh_cache.get(key)
        if cached is None:
            cached = self._mesh_cache[key] = self._load_meshes(robot_id, shapes)
        return cached

    def _load_meshes(
        self, robot_id: str, shapes: Sequence[Any]
    ) -> dict[int, tuple[_Template, tuple[int, int, int] | None]]:
        loaded: dict[int, tuple[_Template, Path]] = {}
        for i, shape in enumerate(shapes):
            if int(shape[2]) != pb.GEOM_MESH:
                continue
            raw = shape[4]
            path = Path(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
            scale = (float(shape[3][0]), float(shape[3][1]), float(shape[3][2]))
            try:
                loaded[i] = (load_mesh(path, scale), path)
            except MeshAssetError as exc:
                log.warning("robot %s link %d: mesh not drawn: %s", robot_id, int(shape[1]), exc)
        order = sorted(loaded)
        targets = triangle_budget([len(loaded[i][0][1]) for i in order], self._triangle_budget)
        out: dict[int, tuple[_Template, tuple[int, int, int] | None]] = {}
        for i, target in zip(order, targets, strict=True):
            (points, triangles), path = loaded[i]
            out[i] = (decimate(points, triangles, target), mesh_rgb(path))
        return out


def link_pose_rows(
    world: World, body: int, *, with_base: bool, links: Sequence[int]
) -> list[tuple[float, ...]]:
    """World poses (x, y, z, qx, qy, qz, qw) of a body's base (its inertial frame, if
    ``with_base``) then of ``links`` (their URDF frames), from one ``getLinkStates`` call."""
    client = world.client
    rows: list[tuple[float, ...]] = []
    if with_base:
        position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        rows.append((*position, *orientation))
    if links:
        states = pb.getLinkStates(
            body, list(links), computeForwardKinematics=1, physicsClientId=client
        )
        rows.extend((*s[4], *s[5]) for s in states)
    return rows
