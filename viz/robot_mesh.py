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

The triangles per link and their frames come from :mod:`viz.link_geometry` (shared with the
web viewer).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyvista as pv

from robots.bullet import pb
from twin.world.world import World
from viz.link_geometry import (
    BASE_LINK,
    F32,
    F64,
    I64,
    MIN_RESOLUTION,
    LinkGeometry,
    merge_templates,
    rotation_matrices,
)
from viz.mesh_assets import TRIANGLES_PER_ROBOT

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class _LinkRange:
    """Where one link's geometry lies in the merged mesh (point rows start:stop)."""

    link: int
    start: int
    stop: int


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
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
        geometry = LinkGeometry(
            world, resolution=resolution, triangles_per_robot=triangles_per_robot
        )
        self._world = world
        self.robot_ids: tuple[str, ...] = tuple(world.robots if robot_ids is None else robot_ids)
        self._bodies = [world.robot(robot_id).body for robot_id in self.robot_ids]
        self._index = {robot_id: i for i, robot_id in enumerate(self.robot_ids)}
        if len(self._index) != len(self.robot_ids):
            raise ValueError(f"robot ids repeat: {list(self.robot_ids)}")
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
            by_link = geometry.parts(robot_id, body)
            ranges: list[_LinkRange] = []
            for link in sorted(by_link):
                link_points, link_triangles = merge_templates([(p, t) for p, t, _ in by_link[link]])
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
        frames[:, :3, :] = rotation_matrices(poses[:, 3:]).transpose(0, 2, 1)
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
