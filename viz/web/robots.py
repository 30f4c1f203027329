"""Every robot on a web page as instanced meshes: one batched node per link mesh kind.

A robot model's links (split by URDF colour) are mesh kinds; every robot of that model is
one instance of each. The geometry goes to a browser once; each frame only the instances'
poses change (``batched_positions`` shape (N, 3), ``batched_wxyzs`` shape (N, 4), hall frame),
and colours only when they change. One scene node per link would be one websocket message
per link per frame, which measured far too slow (viser 1.1, 8 robots, 10 clients: < 3 Hz).

Poses come from the viewer's kinematic :class:`~twin.world.world.World` (never stepped):
the same URDFs and kinematics as the twin, so the page shows what the twin computes.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import viser
from viser import _messages

from twin.world.world import World
from viz.link_geometry import (
    BASE_LINK,
    F64,
    I64,
    LinkGeometry,
    link_pose_rows,
    merge_templates,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
ROBOTS_NODE: Final = "/robots"
_WEB_TRIANGLES_PER_ROBOT: Final = 6000  # what a phone's browser draws at 30 Hz for a hall


@dataclass
class MeshKind:
    """One link of one model in one URDF colour, instanced once per robot of that model."""

    name: str  # scene node name
    model: str
    link: int  # PyBullet link index (-1 = base)
    vertices: F32  # (V, 3) in the link's pose frame
    faces: npt.NDArray[np.int32]  # (F, 3)
    rgb: tuple[int, int, int]
    robot_ids: list[str] = field(default_factory=list)  # instance i is robot_ids[i]
    row: list[int] = field(default_factory=list)  # instance i's row in the pose table


class RobotGeometry:
    """The mesh kinds of a world's robots and, each frame, every instance's pose."""

    def __init__(
        self, world: World, *, triangles_per_robot: int = _WEB_TRIANGLES_PER_ROBOT
    ) -> None:
        self.world = world
        self.robot_ids: tuple[str, ...] = tuple(world.robots)
        geometry = LinkGeometry(world, resolution=10, triangles_per_robot=triangles_per_robot)
        self.kinds: list[MeshKind] = []
        by_key: dict[tuple[str, int, tuple[int, int, int]], MeshKind] = {}
        self._queries: list[tuple[int, bool, list[int]]] = []  # body, with base, links
        self._row_of: dict[tuple[str, int], int] = {}  # (robot, link) -> pose row
        self._rows_of_robot: dict[str, slice] = {}
        row = 0
        for robot_id in self.robot_ids:
            handle = world.robot(robot_id)
            model = handle.model.name
            parts = geometry.parts(robot_id, handle.body)
            links = sorted(parts)
            start = row
            for link in links:
                self._row_of[(robot_id, link)] = row
                row += 1
            self._rows_of_robot[robot_id] = slice(start, row)
            self._queries.append(
                (handle.body, BASE_LINK in parts, [k for k in links if k != BASE_LINK])
            )
            for link in links:
                colours: dict[tuple[int, int, int], list[tuple[F64, I64]]] = {}
                for points, triangles, rgb in parts[link]:
                    key_rgb = (
                        (int(rgb[0, 0]), int(rgb[0, 1]), int(rgb[0, 2])) if len(rgb) else (0, 0, 0)
                    )
                    colours.setdefault(key_rgb, []).append((points, triangles))
                for rgb_key, shapes in colours.items():
                    key = (model, link, rgb_key)
                    kind = by_key.get(key)
                    if kind is None:
                        points, triangles = merge_templates(shapes)
                        kind = MeshKind(
                            name=f"{ROBOTS_NODE}/{model}/link{link + 1}_{len(by_key)}",
                            model=model,
                            link=link,
                            vertices=points.astype(np.float32),
                            faces=triangles.astype(np.int32),
                            rgb=rgb_key,
                        )
                        by_key[key] = kind
                        self.kinds.append(kind)
                    kind.robot_ids.append(robot_id)
                    kind.row.append(self._row_of[(robot_id, link)])
        self.poses = np.zeros((row, 7), dtype=np.float64)  # x y z qx qy qz qw per link
        self._kind_rows = [np.asarray(k.row, dtype=np.intp) for k in self.kinds]
        self._all_rows = np.concatenate([*self._kind_rows, np.zeros(0, dtype=np.intp)])
        self._kind_spans: list[tuple[int, int]] = []
        for rows in self._kind_rows:
            start = self._kind_spans[-1][1] if self._kind_spans else 0
            self._kind_spans.append((start, start + len(rows)))
        self.update()
        log.debug("web robots: %d robots, %d mesh kinds", len(self.robot_ids), len(self.kinds))

    def update(self) -> None:
        """Every link's world pose from the kinematic world."""
        rows: list[tuple[float, ...]] = []
        for body, with_base, links in self._queries:
            rows.extend(link_pose_rows(self.world, body, with_base=with_base, links=links))
        if rows:
            self.poses[:] = np.asarray(rows, dtype=np.float64)

    def instance_poses(self, kind_index: int) -> tuple[F32, F32]:
        """One kind's instances: positions (N, 3) and orientations (N, 4) as w, x, y, z."""
        poses = self.poses[self._kind_rows[kind_index]]
        positions = poses[:, :3].astype(np.float32)
        wxyzs = poses[:, [6, 3, 4, 5]].astype(np.float32)
        return positions, wxyzs

    def all_instance_poses(self) -> list[tuple[F32, F32]]:
        """:meth:`instance_poses` of every kind, in kind order, in two numpy conversions for
        all kinds (each kind's arrays are contiguous row slices of them)."""
        poses = self.poses[self._all_rows]
        positions = np.ascontiguousarray(poses[:, :3], dtype=np.float32)
        wxyzs = np.ascontiguousarray(poses[:, [6, 3, 4, 5]], dtype=np.float32)
        return [(positions[a:b], wxyzs[a:b]) for a, b in self._kind_spans]

    def link_rows(self, robot_id: str) -> slice:
        """A robot's rows in :attr:`poses`."""
        return self._rows_of_robot[robot_id]

    def head_position(self, robot_id: str) -> tuple[float, float, float]:
        """Above a robot: its base's x, y and its highest link origin's z (m)."""
        rows = self.poses[self._rows_of_robot[robot_id]]
        base, _ = self.world.base_pose(robot_id)
        return (float(base[0]), float(base[1]), float(rows[:, 2].max()) + 0.2)


class RobotNodes:
    """A :class:`RobotGeometry` drawn in one viser scene scope (the server's, shared by every
    page, or one client's, for a page that colours robots its own way)."""

    def __init__(self, scene: viser.SceneApi, geometry: RobotGeometry) -> None:
        self.scene = scene
        self.geometry = geometry
        self.handles: list[viser.BatchedMeshHandle] = []
        self._colours: list[U8] = []
        for i, kind in enumerate(geometry.kinds):
            positions, wxyzs = geometry.instance_poses(i)
            colours = np.tile(np.asarray(kind.rgb, dtype=np.uint8), (len(kind.robot_ids), 1))
            self.handles.append(
                scene.add_batched_meshes_simple(
                    kind.name,
                    vertices=kind.vertices,
                    faces=kind.faces,
                    batched_wxyzs=wxyzs,
                    batched_positions=positions,
                    batched_colors=colours,
                    lod="off",
                    cast_shadow=False,
                    receive_shadow=False,
                )
            )
            self._colours.append(colours)

    def push_poses(self, poses: Sequence[tuple[F32, F32]] | None = None) -> None:
        """Send every instance's pose (the only per-frame traffic of the robots): ``poses``
        as :meth:`RobotGeometry.all_instance_poses` gives them (computed before the frame's
        atomic block, which then only queues), or computed here."""
        if poses is None:
            poses = self.geometry.all_instance_poses()
        for handle, (positions, wxyzs) in zip(self.handles, poses, strict=True):
            send_instance_poses(handle, positions, wxyzs)

    def push_colours(self, colours: Sequence[U8]) -> None:
        """Per kind, each instance's colour (N, 3); sent only where it changed."""
        for i, (handle, new) in enumerate(zip(self.handles, colours, strict=True)):
            if not np.array_equal(new, self._colours[i]):
                self._colours[i] = new.copy()
                handle.batched_colors = new

    def colours(self) -> list[U8]:
        """What each kind's instances show now (N, 3 each)."""
        return [c.copy() for c in self._colours]

    def remove(self) -> None:
        """Take the nodes out of their scope."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def send_instance_poses(handle: viser.BatchedMeshHandle, positions: F32, wxyzs: F32) -> None:
    """Positions and orientations of a batched node's instances, in ONE update message.

    Assigning ``handle.batched_positions`` and ``handle.batched_wxyzs`` costs two messages
    and about 120 us of type-hint casting each (viser 1.1.1, profiled); with ~90 kinds a
    frame that was 20 ms. viser's own update message takes a dict of properties, so both go
    together, already float32; the handle's stored props are updated as viser does. Falls
    back to the public setters if viser's internals differ."""
    try:
        impl = handle._impl
        props = impl.props
        if props.batched_positions.shape != positions.shape:
            raise AttributeError("instance count changed")
        props.batched_positions[:] = positions
        props.batched_wxyzs[:] = wxyzs
        impl.api._queue_scene_message(pose_message(impl.name, positions, wxyzs))
    except AttributeError:
        handle.batched_positions = positions
        handle.batched_wxyzs = wxyzs


def pose_message(name: str, positions: F32, wxyzs: F32) -> _messages.SceneNodeUpdateMessage:
    """viser's update message of a batched node's instance poses, serialised without viser's
    generic walk.

    Every page's connection serialises each message of viser's shared buffer on its own, and
    viser's generic serialiser (a recursive walk over the fields with type-hint checks) was
    half of what serving a page cost (the default hall: ~90 of these a frame, 20 pages: 50k
    walks a second, profiled). This message's wire form is fixed (the node's name, the two
    float32 arrays as binary buffers, the scope's owner stamp), so the message gets its own
    ``as_serializable_dict`` that builds the same dict directly (the test compares it with
    viser's own output); without a buffer list (viser's scene serialiser) it is viser's."""
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    wxyzs = np.ascontiguousarray(wxyzs, dtype=np.float32)
    message = _messages.SceneNodeUpdateMessage(
        name, {"batched_positions": positions, "batched_wxyzs": wxyzs}
    )
    own = weakref.ref(message)  # no cycle: the message holds this function
    data = (positions.data, wxyzs.data)

    def serialize(binary_buffers: list[memoryview] | None = None) -> dict[str, Any]:
        held = own()
        assert held is not None  # only the message itself calls this
        if binary_buffers is None:
            return _messages.SceneNodeUpdateMessage.as_serializable_dict(held, None)
        i = len(binary_buffers)
        binary_buffers.extend(data)
        return {
            "name": name,
            "updates": {
                "batched_positions": {"__binary_index": i, "dtype": "<f4"},
                "batched_wxyzs": {"__binary_index": i + 1, "dtype": "<f4"},
            },
            "owner": held.owner,  # stamped when queued
            "type": "SceneNodeUpdateMessage",
        }

    message.as_serializable_dict = serialize  # type: ignore[method-assign]
    return message


def base_colours(geometry: RobotGeometry) -> list[U8]:
    """Each kind's URDF colour for every instance (the manufacturer colour mode)."""
    return [
        np.tile(np.asarray(k.rgb, dtype=np.uint8), (len(k.robot_ids), 1)) for k in geometry.kinds
    ]


def recoloured(
    geometry: RobotGeometry,
    colours: list[U8],
    *,
    grey: Mapping[str, bool],
    grey_rgb: tuple[int, int, int],
) -> list[U8]:
    """``colours`` with every instance of a robot marked in ``grey`` painted ``grey_rgb``."""
    out = []
    for kind, rgb in zip(geometry.kinds, colours, strict=True):
        rgb = rgb.copy()
        for i, robot_id in enumerate(kind.robot_ids):
            if grey.get(robot_id, False):
                rgb[i] = grey_rgb
        out.append(rgb)
    return out
