"""A simulated LiDAR in the hall twin: Open3D raycasting against the world's collision geometry.

The world's collision shapes (boxes, spheres, cylinders, capsules and convex meshes) are
turned into triangles at their current poses, and a spinning multi-beam LiDAR (a VLP-16 by
default: 16 beams from -15 deg to +15 deg, 720 columns over 360 deg) casts every ray at once
with :class:`open3d.t.geometry.RaycastingScene`. Each hit keeps the PyBullet body id of what
it hit. The sensor's own mount is not in the world, so it never sees itself.

Frames: PyBullet reports a shape's local frame relative to its link's centre of mass
(inertial frame), so shapes are placed from the COM pose (``getBasePositionAndOrientation``
for the base, ``getLinkState(...)[0:2]`` for links). SI units; quaternions are (x, y, z, w).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import open3d as o3d

from robots.bullet import pb
from scenes.model import Sensor
from twin.world.world import World

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]

VLP16_ELEVATIONS_RAD: Final[tuple[float, ...]] = tuple(
    math.radians(-15.0 + 2.0 * beam) for beam in range(16)
)
_SPHERE_RESOLUTION: Final = 10  # even, so the mesh reaches the full radius on every axis
_CYLINDER_RESOLUTION: Final = 24  # a multiple of 4, for the same reason


@dataclass(frozen=True)
class LidarSpec:
    """Where a spinning LiDAR sits and how it samples (m, rad)."""

    position_m: tuple[float, float, float]
    orientation_xyzw: tuple[float, float, float, float]
    range_m: float
    horizontal_rays: int = 720  # 0.5 deg resolution over 360 deg
    vertical_angles_rad: tuple[float, ...] = VLP16_ELEVATIONS_RAD

    def __post_init__(self) -> None:
        if not (self.range_m > 0.0 and self.horizontal_rays > 0 and self.vertical_angles_rad):
            raise ValueError("a LiDAR needs a positive range, rays and at least one beam")

    @classmethod
    def from_sensor(cls, sensor: Sensor) -> LidarSpec:
        """The spec of a scene's LiDAR (its pose and range; the 360 deg sweep is fixed)."""
        if sensor.kind != "lidar":
            raise ValueError(f"sensor {sensor.id} is a {sensor.kind}, not a lidar")
        x, y, z = sensor.pose.xyz
        q = pb.getQuaternionFromEuler(sensor.pose.euler_rad)
        return cls((x, y, z), (q[0], q[1], q[2], q[3]), float(sensor.range))

    def ray_directions(self) -> F64:
        """Unit ray directions in the hall frame, (beams * horizontal_rays, 3), beam-major."""
        azimuth = np.arange(self.horizontal_rays) * (2.0 * math.pi / self.horizontal_rays)
        elevation = np.asarray(self.vertical_angles_rad, dtype=np.float64)[:, None]
        local = np.stack(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.cos(elevation) * np.sin(azimuth),
                np.broadcast_to(np.sin(elevation), (elevation.size, azimuth.size)),
            ],
            axis=-1,
        ).reshape(-1, 3)
        directions: F64 = local @ _rotation(self.orientation_xyzw).T
        return directions


@dataclass(frozen=True)
class LidarScan:
    """The hits of one scan: points (hall frame), ranges and the body each one hit."""

    points_m: F32  # (N, 3)
    ranges_m: F32  # (N,)
    body_ids: I32  # (N,) PyBullet body ids
    rays: int  # rays cast, hits or not

    def points_on(self, world: World, body_name: str) -> F32:
        """The points that hit a named body (a link name selects its whole body)."""
        body = world.resolve(body_name).body
        selected: F32 = self.points_m[self.body_ids == body]
        return selected


@dataclass(frozen=True)
class _LinkGeometry:
    """Triangles of one link's collision shapes, in the link's centre-of-mass frame."""

    body: int
    link: int  # -1 = base
    vertices_m: F64
    triangles: I32


def _rotation(quat_xyzw: Sequence[float]) -> F64:
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64) / np.linalg.norm(quat_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _primitive(
    client: int, body: int, link: int, index: int, shape: int, dims: Sequence[float]
) -> o3d.geometry.TriangleMesh | None:
    """One collision shape as an Open3D mesh in its own frame (None: not supported)."""
    mesh_type = o3d.geometry.TriangleMesh
    if shape == pb.GEOM_BOX:
        box = mesh_type.create_box(dims[0], dims[1], dims[2])
        box.translate((-dims[0] / 2, -dims[1] / 2, -dims[2] / 2))  # create_box: corner at 0
        return box
    if shape == pb.GEOM_SPHERE:
        return mesh_type.create_sphere(radius=dims[0], resolution=_SPHERE_RESOLUTION)
    if shape in (pb.GEOM_CYLINDER, pb.GEOM_CAPSULE):
        length, radius = dims[0], dims[1]
        mesh = mesh_type.create_cylinder(radius, length, _CYLINDER_RESOLUTION, 1)
        if shape == pb.GEOM_CAPSULE:
            for end in (-length / 2, length / 2):
                cap = mesh_type.create_sphere(radius=radius, resolution=_SPHERE_RESOLUTION)
                cap.translate((0.0, 0.0, end))
                mesh += cap
        return mesh
    if shape == pb.GEOM_MESH:  # URDF cylinders and convex meshes are convex hulls in PyBullet
        count, points = pb.getMeshData(
            body, link, collisionShapeIndex=index, physicsClientId=client
        )
        if count >= 4:
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points)))
            try:
                return cloud.compute_convex_hull()[0]
            except RuntimeError as error:  # flat or degenerate vertex set
                log.debug("body %d link %d shape %d: no hull (%s)", body, link, index, error)
    log.debug("body %d link %d shape %d: geometry type %d skipped", body, link, index, shape)
    return None


def _body_ids(client: int) -> tuple[int, ...]:
    count = pb.getNumBodies(physicsClientId=client)
    return tuple(int(pb.getBodyUniqueId(i, physicsClientId=client)) for i in range(count))


def _link_geometries(client: int, bodies: Sequence[int]) -> list[_LinkGeometry]:
    """Every link's collision triangles in its COM frame (pose-independent, so cacheable)."""
    out: list[_LinkGeometry] = []
    for body in bodies:
        for link in range(-1, pb.getNumJoints(body, physicsClientId=client)):
            vertices: list[F64] = []
            triangles: list[I32] = []
            count = 0
            shapes = pb.getCollisionShapeData(body, link, physicsClientId=client)
            for index, data in enumerate(shapes):
                mesh = _primitive(client, body, link, index, int(data[2]), data[3])
                if mesh is None:
                    continue
                local = np.asarray(mesh.vertices, dtype=np.float64)
                vertices.append(local @ _rotation(data[6]).T + np.asarray(data[5]))
                triangles.append(np.asarray(mesh.triangles, dtype=np.int32) + count)
                count += len(local)
            if vertices:
                out.append(
                    _LinkGeometry(body, link, np.concatenate(vertices), np.concatenate(triangles))
                )
    return out


def _posed(client: int, links: Sequence[_LinkGeometry]) -> tuple[F32, I32, I32]:
    """Place cached link geometry at the links' current centre-of-mass poses."""
    poses: dict[tuple[int, int], tuple[Sequence[float], Sequence[float]]] = {}
    for body in {part.body for part in links}:
        poses[body, -1] = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        indices = [part.link for part in links if part.body == body and part.link >= 0]
        if indices:
            states = pb.getLinkStates(
                body, indices, computeForwardKinematics=True, physicsClientId=client
            )
            poses.update({(body, i): (s[0], s[1]) for i, s in zip(indices, states, strict=True)})
    vertices: list[F64] = []
    triangles: list[I32] = []
    body_ids: list[I32] = []
    count = 0
    for part in links:
        position, orientation = poses[part.body, part.link]
        vertices.append(part.vertices_m @ _rotation(orientation).T + np.asarray(position))
        triangles.append(part.triangles + count)
        body_ids.append(np.full(len(part.triangles), part.body, dtype=np.int32))
        count += len(part.vertices_m)
    if not vertices:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.int32)
    return (
        np.concatenate(vertices).astype(np.float32),
        np.concatenate(triangles).astype(np.int32),
        np.concatenate(body_ids),
    )


def world_triangles(world: World) -> tuple[F32, I32, I32]:
    """The world's collision geometry at its current poses, as triangles in the hall frame.

    Returns vertices (V, 3) float32, triangles (T, 3) int32 and the PyBullet body id of
    each triangle (T,) int32. Planes and shapes that are not boxes, spheres, cylinders,
    capsules or convex meshes are skipped (logged at debug level).
    """
    return _posed(world.client, _link_geometries(world.client, _body_ids(world.client)))


class LidarScanner:
    """Scans a world with one LiDAR; every :meth:`scan` sees the bodies where they are now."""

    def __init__(self, world: World, spec: LidarSpec) -> None:
        self.world = world
        self.spec = spec
        directions = spec.ray_directions()
        origins = np.broadcast_to(np.asarray(spec.position_m, dtype=np.float64), directions.shape)
        self._directions = directions
        self._rays_array: F32 = np.hstack([origins, directions]).astype(np.float32)
        self._rays = o3d.core.Tensor.from_numpy(self._rays_array)  # shares the array's memory
        self._bodies: tuple[int, ...] = ()
        self._links: list[_LinkGeometry] = []

    def scan(self) -> LidarScan:
        """Cast every ray against the current geometry; keep hits within range."""
        client = self.world.client
        bodies = _body_ids(client)
        if bodies != self._bodies:  # shapes in link frames only change with the body set
            self._bodies, self._links = bodies, _link_geometries(client, bodies)
        vertices, triangles, triangle_bodies = _posed(client, self._links)
        rays = len(self._directions)
        if len(triangles) == 0:
            return LidarScan(
                np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), rays
            )
        scene = o3d.t.geometry.RaycastingScene()
        indices = triangles.astype(np.uint32)
        scene.add_triangles(
            o3d.core.Tensor.from_numpy(vertices), o3d.core.Tensor.from_numpy(indices)
        )
        result = scene.cast_rays(self._rays)
        t_hit = result["t_hit"].numpy().astype(np.float64)
        primitive = result["primitive_ids"].numpy()
        hit = np.isfinite(t_hit) & (t_hit <= self.spec.range_m)
        ranges = t_hit[hit]
        points = np.asarray(self.spec.position_m) + self._directions[hit] * ranges[:, None]
        log.debug("lidar scan: %d triangles, %d of %d rays hit", len(triangles), hit.sum(), rays)
        return LidarScan(
            points.astype(np.float32),
            ranges.astype(np.float32),
            triangle_bodies[primitive[hit].astype(np.int64)],
            rays,
        )
