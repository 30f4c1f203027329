"""Every robot of a :class:`~twin.world.world.World` as one merged triangle mesh, posed in place.

A hall holds 8-24 robots of 25-35 links each; one VTK actor per link costs ~20 us a frame
in rendering overhead alone. :class:`RobotBatch` instead builds ONE :class:`pyvista.PolyData`
from every robot's PyBullet visual shapes (boxes, cylinders, capsules, spheres, and STL, OBJ
and DAE meshes through :mod:`viz.mesh_assets`, decimated to a triangle budget per robot;
planes are skipped with a warning) and, each frame, rewrites its points in place from the
links' world poses with a vectorised numpy transform. The viewer draws it as one actor.

Point arrays: ``"rgb"`` (uint8 URDF colours, drawn with ``rgb=True``), ``"robot"`` (index
into :attr:`RobotBatch.robot_ids`), ``"link"`` (PyBullet link index, -1 = base) and
``"quantity"`` (float, for colour-mapped per-link values). Points and cells are contiguous
per robot and, within a robot, per link.

Frames (verified with pybullet 3.2.7 against ``getAABB`` with an offset, rotated base inertial
frame; see ``tests/viz/test_robot_mesh.py``): ``getVisualShapeData``'s local frame is relative to
the link's URDF frame for every link, the base included. For links, ``getLinkState()[4:6]`` is
that URDF frame. For the base, ``getBasePositionAndOrientation`` is the base's *inertial*
frame (centre of mass), so the base's points are stored in that frame, pre-multiplied once
by the inverse of the local inertial frame (``getDynamicsInfo()[3:5]``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
Vec3 = tuple[float, float, float]

BASE_LINK: Final = -1
MIN_RESOLUTION: Final = 3
_Template = tuple[F64, I64]  # points (n, 3) and triangles (m, 3), in the shape's own frame


@dataclass(frozen=True)
class _LinkRange:
    """Where one link's geometry lies in the merged mesh (point rows start:stop)."""

    link: int
    start: int
    stop: int


def _rotation_matrices(quat_xyzw: F64) -> F64:
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
    rotation = _rotation_matrices(np.asarray([quat_xyzw], dtype=np.float64))[0]
    result: F64 = points @ rotation.T + np.asarray(position, dtype=np.float64)
    return result


def _inverse_transform(points: F64, position: Sequence[float], quat_xyzw: Sequence[float]) -> F64:
    """Points (n, 3) expressed in the frame given by (position, quaternion)."""
    rotation = _rotation_matrices(np.asarray([quat_xyzw], dtype=np.float64))[0]
    result: F64 = (points - np.asarray(position, dtype=np.float64)) @ rotation
    return result


def _template(surface: Any) -> _Template:
    """Points and triangles of a pyvista surface, every data array dropped."""
    tri = surface.triangulate().clean()
    faces = np.asarray(tri.faces, dtype=np.int64).reshape(-1, 4)
    return np.asarray(tri.points, dtype=np.float64), faces[:, 1:].copy()


def _merge(parts: Sequence[_Template]) -> _Template:
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
        return _merge([body, *ends])
    return None


class RobotBatch:
    """All robots of a World as one merged triangle mesh, posed from the world's link states."""

    def __init__(
        self,
        world: World,
        *,
        robot_ids: Sequence[str] | None = None,
        resolution: int = 12,
        triangles_per_robot: int = TRIANGLES_PER_ROBOT,
    ) -> None:
        """Build the mesh of ``robot_ids`` (default: every robot) and pose it once.

        ``resolution`` is the number of segments around cylinders, capsules and spheres;
        ``triangles_per_robot`` the budget a robot's mesh visuals are decimated to.
        """
        self._triangle_budget = triangles_per_robot
        self._mesh_cache: dict[tuple[Any, ...], dict[int, tuple[_Template, Any]]] = {}
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
        self._world = world
        self.robot_ids: tuple[str, ...] = tuple(world.robots if robot_ids is None else robot_ids)
        self._bodies = [world.robot(robot_id).body for robot_id in self.robot_ids]
        self._index = {robot_id: i for i, robot_id in enumerate(self.robot_ids)}
        if len(self._index) != len(self.robot_ids):
            raise ValueError(f"robot ids repeat: {list(self.robot_ids)}")
        cache: dict[tuple[int, tuple[float, ...]], _Template | None] = {}
        points: list[F64] = []
        triangles: list[I64] = []
        colours: list[npt.NDArray[np.uint8]] = []
        self._links: list[list[_LinkRange]] = []  # per robot, ascending link index
        self._has_base: list[bool] = []
        self._link_queries: list[list[int]] = []  # per robot: non-base links for getLinkStates
        self._point_offsets = [0]
        self._cell_offsets = [0]
        point_count = cell_count = 0
        for robot_id, body in zip(self.robot_ids, self._bodies, strict=True):
            by_link = self._visual_parts(robot_id, body, resolution, cache)
            ranges: list[_LinkRange] = []
            for link in sorted(by_link):
                link_points, link_triangles = _merge([(p, t) for p, t, _ in by_link[link]])
                triangles.append(link_triangles + point_count)
                points.append(link_points)
                colours.append(np.concatenate([c for _, _, c in by_link[link]]))
                ranges.append(_LinkRange(link, point_count, point_count + len(link_points)))
                point_count += len(link_points)
                cell_count += len(link_triangles)
            self._links.append(ranges)
            self._has_base.append(bool(ranges) and ranges[0].link == BASE_LINK)
            self._link_queries.append([r.link for r in ranges if r.link != BASE_LINK])
            self._point_offsets.append(point_count)
            self._cell_offsets.append(cell_count)
        slots = [r for ranges in self._links for r in ranges]
        self._owner = np.repeat(
            np.arange(len(slots), dtype=np.intp), [r.stop - r.start for r in slots]
        )
        local = np.concatenate(points) if points else np.zeros((0, 3))
        self._local_h = np.hstack([local, np.ones((len(local), 1))]).astype(np.float32)
        self._base_xyz = np.zeros((len(self._bodies), 3))
        self.mesh: pv.PolyData = pv.PolyData.from_regular_faces(
            local.astype(np.float32),
            np.concatenate(triangles) if triangles else np.zeros((0, 3), dtype=np.int64),
        )
        self._rgb = np.concatenate(colours) if colours else np.zeros((0, 3), dtype=np.uint8)
        link_of_slot = np.array([r.link for r in slots], dtype=np.int32)
        if point_count:  # a hall without robots (or without visuals) has no point arrays
            self.mesh.point_data["rgb"] = self._rgb.copy()
            self.mesh.point_data["robot"] = np.repeat(
                np.arange(len(self._bodies), dtype=np.int32), np.diff(self._point_offsets)
            )
            self.mesh.point_data["link"] = link_of_slot[self._owner]
            self.mesh.point_data["quantity"] = np.zeros(point_count, dtype=np.float32)
        self._points: F32 = self.mesh.points  # a view of the VTK array, written in place
        self._point_offsets_np = np.asarray(self._point_offsets)
        self._cell_offsets_np = np.asarray(self._cell_offsets)
        log.debug(
            "robot batch: %d robots, %d links, %d points, %d triangles",
            len(self._bodies),
            len(slots),
            point_count,
            cell_count,
        )
        self.update()

    def _visual_parts(
        self,
        robot_id: str,
        body: int,
        resolution: int,
        cache: dict[tuple[int, tuple[float, ...]], _Template | None],
    ) -> dict[int, list[tuple[F64, I64, npt.NDArray[np.uint8]]]]:
        """Per link: (points in the pose frame the update uses, triangles, rgb) of each shape."""
        client = self._world.client
        inertial = pb.getDynamicsInfo(body, BASE_LINK, physicsClientId=client)
        shapes = pb.getVisualShapeData(body, physicsClientId=client)
        meshes = self._meshes(robot_id, shapes)
        by_link: dict[int, list[tuple[F64, I64, npt.NDArray[np.uint8]]]] = {}
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

    # -- per frame --------------------------------------------------------------

    def update(self) -> None:
        """Pose every point from the links' current world poses (in place)."""
        client = self._world.client
        rows: list[tuple[float, ...]] = []
        for i, body in enumerate(self._bodies):
            position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
            self._base_xyz[i] = position
            if self._has_base[i]:
                rows.append((*position, *orientation))
            if self._link_queries[i]:
                states = pb.getLinkStates(
                    body, self._link_queries[i], computeForwardKinematics=1, physicsClientId=client
                )
                rows.extend((*s[4], *s[5]) for s in states)
        if not rows:
            return
        poses = np.asarray(rows, dtype=np.float64)
        frames = np.empty((len(poses), 4, 3), dtype=np.float32)  # row-vector homogeneous [R^T; t]
        frames[:, :3, :] = _rotation_matrices(poses[:, 3:]).transpose(0, 2, 1)
        frames[:, 3, :] = poses[:, :3]
        np.einsum("pk,pkj->pj", self._local_h, frames[self._owner], out=self._points)
        points = self.mesh.GetPoints()
        points.GetData().Modified()
        points.Modified()
        self.mesh.Modified()

    def _mark_modified(self, name: str) -> None:
        self.mesh.GetPointData().GetArray(name).Modified()
        self.mesh.Modified()

    # -- colours and values -----------------------------------------------------

    def _robot_slice(self, robot_id: str) -> slice:
        try:
            i = self._index[robot_id]
        except KeyError:
            known = ", ".join(self.robot_ids) or "none"
            raise KeyError(f"no robot {robot_id!r} in this batch (robots: {known})") from None
        return slice(self._point_offsets[i], self._point_offsets[i + 1])

    def set_link_values(self, robot_id: str, values_by_link: Mapping[int, float]) -> None:
        """Fill ``"quantity"`` for links of one robot; links without geometry are ignored."""
        self._robot_slice(robot_id)  # raises for an unknown robot
        quantity = self.mesh.point_data["quantity"]
        ranges = {r.link: r for r in self._links[self._index[robot_id]]}
        for link, value in values_by_link.items():
            if link in ranges:
                quantity[ranges[link].start : ranges[link].stop] = value
        self._mark_modified("quantity")

    def set_robot_colour(self, robot_id: str, rgb: tuple[int, int, int] | None) -> None:
        """Paint one robot a single colour (0-255 each), or restore its URDF colours (None)."""
        span = self._robot_slice(robot_id)
        colours = self.mesh.point_data["rgb"]
        if rgb is None:
            colours[span] = self._rgb[span]
        else:
            colours[span] = np.clip(np.asarray(rgb), 0, 255).astype(np.uint8)
        self._mark_modified("rgb")

    # -- queries ----------------------------------------------------------------

    def robot_of_point(self, point_id: int) -> str:
        """The robot a mesh point belongs to (for picking)."""
        return self._lookup(self._point_offsets_np, point_id, "point")

    def robot_of_cell(self, cell_id: int) -> str:
        """The robot a mesh triangle belongs to (for picking)."""
        return self._lookup(self._cell_offsets_np, cell_id, "cell")

    def _lookup(self, offsets: I64, item: int, kind: str) -> str:
        if not 0 <= item < int(offsets[-1]):
            raise IndexError(f"{kind} {item} is not in the batch (0..{int(offsets[-1]) - 1})")
        return self.robot_ids[int(np.searchsorted(offsets, item, side="right")) - 1]

    def head_position(self, robot_id: str) -> Vec3:
        """Top of a robot (m): the highest z of its points, above its base's x, y."""
        span = self._robot_slice(robot_id)
        x, y, _ = self._base_xyz[self._index[robot_id]]
        top = float(self._points[span, 2].max()) if span.stop > span.start else 0.0
        return (float(x), float(y), top)

    def link_centers(self, robot_id: str) -> dict[int, Vec3]:
        """Centre of each drawn link's bounding box (m, hall frame), by PyBullet link index."""
        self._robot_slice(robot_id)
        out: dict[int, Vec3] = {}
        for r in self._links[self._index[robot_id]]:
            block = self._points[r.start : r.stop]
            centre = 0.5 * (block.min(axis=0) + block.max(axis=0))
            out[r.link] = (float(centre[0]), float(centre[1]), float(centre[2]))
        return out
