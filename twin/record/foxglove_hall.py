"""The hall as Foxglove draws it: a scene of shapes and a tree of frames, from a World.

:class:`FoxgloveHall` reads a kinematic :class:`~twin.world.world.World` (never stepped) for
the recording's Foxglove channels (:mod:`twin.record.foxglove_channels`):

- :meth:`FoxgloveHall.scene_update`: one ``foxglove.SceneUpdate`` with an entity per static
  body (floor, hub, each bench, item and panel: frame ``hall``) and per link of every robot
  and crane (frame ``robot:K1-03/pelvis``, ``crane:C1/bridge``: the world's names), each
  drawn from PyBullet's ``getVisualShapeData``: boxes, spheres, cylinders and capsules as
  primitives, mesh files (STL, OBJ, DAE, glTF) embedded whole as models. Link entities are
  ``frame_locked``, so they follow their frame's transform.
- :meth:`FoxgloveHall.transforms`: one ``foxglove.FrameTransforms`` with every robot and
  crane link in its parent link's frame (the kinematic tree; each body's base link in
  ``hall``), posed from the joint states, base poses and crane positions put in with
  :meth:`FoxgloveHall.set_joints`, :meth:`FoxgloveHall.set_base`, :meth:`FoxgloveHall.set_crane`.

Frames (as ``viz.link_geometry`` verified them): ``getVisualShapeData``'s local frame is the
link's URDF frame for every link, the base included; ``getLinkState()[4:6]`` is a link's URDF
frame in the world; ``getBasePositionAndOrientation`` is the base's *inertial* frame, so the
base's URDF frame is that times the inverse of the local inertial frame
(``getDynamicsInfo()[3:5]``). Metres, radians, quaternions (x, y, z, w).

The transforms are encoded here, not through foxglove-sdk's message classes: a tick's
message is the same few hundred links every time, so each link's frame names are encoded
once and the poses of all links in one numpy pass (about 0.5 us a link, against about 5 us
through the SDK's objects). ``tests/record/test_foxglove.py`` decodes them with the
FileDescriptorSet foxglove-sdk ships. The values are doubles, as the schema has them, rounded
to float32 precision (a few micrometres in the hall) so that they compress.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from foxglove.messages import (
    Color,
    CubePrimitive,
    CylinderPrimitive,
    ModelPrimitive,
    Pose,
    Quaternion,
    SceneEntity,
    SceneUpdate,
    SpherePrimitive,
    Timestamp,
    Vector3,
)

from robots.bullet import pb
from twin.world.crane import CraneLimitError
from twin.world.world import World

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

ROOT_FRAME: Final = "hall"
"""The frame every other frame hangs from (the hall's floor corner; ``/base/`` uses it too)."""
BASE_LINK: Final = -1
MEDIA_TYPES: Final = {
    ".stl": "model/stl",
    ".obj": "model/obj",
    ".dae": "model/vnd.collada+xml",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
}
"""Mesh files embedded as ``ModelPrimitive`` data, by suffix."""

# One FrameTransform's translation (field 4) and rotation (field 5), 67 bytes: each field's
# tag and length, then each double's tag and value (little-endian, as protobuf wants).
_POSE_FIELDS: Final = np.dtype(
    [("t4", "u1"), ("n4", "u1"), ("tx", "u1"), ("x", "<f8"), ("ty", "u1"), ("y", "<f8"),
     ("tz", "u1"), ("z", "<f8"), ("t5", "u1"), ("n5", "u1"), ("tqx", "u1"), ("qx", "<f8"),
     ("tqy", "u1"), ("qy", "<f8"), ("tqz", "u1"), ("qz", "<f8"), ("tqw", "u1"), ("qw", "<f8")]
)  # fmt: skip
_POSE_TAGS: Final = {
    "t4": 0x22, "n4": 27, "tx": 0x09, "ty": 0x11, "tz": 0x19,
    "t5": 0x2A, "n5": 36, "tqx": 0x09, "tqy": 0x11, "tqz": 0x19, "tqw": 0x21,
}  # fmt: skip
_POSE_VALUES: Final = ("x", "y", "z", "qx", "qy", "qz", "qw")
_POSE_BYTES: Final = _POSE_FIELDS.itemsize


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (``tag``: the field number << 3 | 2)."""
    return bytes((tag,)) + varint(len(payload)) + payload


def timestamp_field(stamp_ns: int) -> bytes:
    """A FrameTransform's ``timestamp`` (field 1, google.protobuf.Timestamp)."""
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return length_field(0x0A, b"\x08" + varint(sec) + b"\x10" + varint(nsec))


def quat_multiply(a: F64, b: F64) -> F64:
    """Products of quaternions (n, 4) (x, y, z, w), row by row."""
    ax, ay, az, aw = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    bx, by, bz, bw = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=1,
    )


def quat_rotate(q: F64, v: F64) -> F64:
    """Vectors (n, 3) rotated by unit quaternions (n, 4) (x, y, z, w)."""
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return np.stack(  # v + w t + u x t, t = 2 u x v (np.cross is slow on small arrays)
        [
            vx + w * tx + y * tz - z * ty,
            vy + w * ty + z * tx - x * tz,
            vz + w * tz + x * ty - y * tx,
        ],
        axis=1,
    )


def relative_poses(world_poses: F64, parents: npt.NDArray[np.int64]) -> F64:
    """Each pose (n, 7: x, y, z, qx, qy, qz, qw; in the hall) in its parent's frame
    (``parents[i]``, a row of ``world_poses``; -1: the hall itself)."""
    rooted = parents < 0
    parent = world_poses[np.where(rooted, 0, parents)]
    parent[rooted] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    inverse = parent[:, 3:] * np.array([-1.0, -1.0, -1.0, 1.0])
    out = np.empty_like(world_poses)
    out[:, :3] = quat_rotate(inverse, world_poses[:, :3] - parent[:, :3])
    q = quat_multiply(inverse, world_poses[:, 3:])
    out[:, 3:] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


@dataclass
class _Posed:
    """A robot or crane: its frames (base first, then links in PyBullet order) and where
    they are in the hall (refreshed when its state changed)."""

    body: int
    first_row: int  # its base's row in the hall's frame table
    links: list[int]  # PyBullet link indices, in row order after the base
    base_from_inertial: tuple[Sequence[float], Sequence[float]]  # inverse local inertial frame
    joint_indices: list[int]  # wire order (robots); empty for cranes
    dirty: bool = True


class FoxgloveHall:
    """The scene and the frame transforms of one scene's hall, from a world of its own."""

    def __init__(self, world: World) -> None:
        """``world``: a kinematic world of the scene (this object poses its robots)."""
        self.world = world
        client = world.client
        self.frames: list[str] = []  # every posed frame: robots' and cranes' links
        self.parent_frames: list[str] = []
        parents: list[int] = []
        self._posed: dict[str, _Posed] = {}
        posed_names = [
            *(f"robot:{r}" for r in world.robots),
            *(f"crane:{c}" for c in world.cranes),
        ]
        for name in posed_names:
            body = world.resolve(name).body
            first = len(self.frames)
            base_name = pb.getBodyInfo(body, physicsClientId=client)[0].decode()
            self.frames.append(f"{name}/{base_name}")
            self.parent_frames.append(ROOT_FRAME)
            parents.append(-1)
            links: list[int] = []
            for index in range(pb.getNumJoints(body, physicsClientId=client)):
                info = pb.getJointInfo(body, index, physicsClientId=client)
                links.append(index)
                parent_row = first + 1 + int(info[16]) if int(info[16]) >= 0 else first
                self.frames.append(f"{name}/{info[12].decode()}")
                self.parent_frames.append(self.frames[parent_row])
                parents.append(parent_row)
            inertial = pb.getDynamicsInfo(body, BASE_LINK, physicsClientId=client)
            inverse = pb.invertTransform(inertial[3], inertial[4], physicsClientId=client)
            joints: list[int] = []
            kind, _, key = name.partition(":")
            if kind == "robot":
                handle = world.robots[key]
                joints = [handle.joint_index[n] for n in handle.model.profile.joint_names]
            self._posed[name] = _Posed(body, first, links, inverse, joints)
        self._parents = np.asarray(parents, dtype=np.int64)
        self._world_poses = np.zeros((len(self.frames), 7))
        self._world_poses[:, 6] = 1.0
        # each transform's frame names, encoded once (fields 2 and 3)
        self._names = [
            length_field(0x12, parent.encode()) + length_field(0x1A, child.encode())
            for parent, child in zip(self.parent_frames, self.frames, strict=True)
        ]
        self._heads: dict[int, list[bytes]] = {}
        self._pose_table = np.zeros(len(self.frames), dtype=_POSE_FIELDS)
        for field, tag in _POSE_TAGS.items():
            self._pose_table[field] = tag

    # -- state in ---------------------------------------------------------------

    def set_joints(self, robot_id: str, positions: Sequence[float]) -> None:
        """A robot's joint positions in wire order (SI: rad, m)."""
        posed = self._posed.get(f"robot:{robot_id}")
        if posed is None or len(positions) != len(posed.joint_indices):
            return
        pb.resetJointStatesMultiDof(
            posed.body,
            posed.joint_indices,
            targetValues=[[value] for value in positions],
            physicsClientId=self.world.client,
        )
        posed.dirty = True

    def set_base(
        self, robot_id: str, position_m: Sequence[float], orientation_xyzw: Sequence[float]
    ) -> None:
        """A robot's base (pelvis) pose in the hall, as the mirror sets it."""
        posed = self._posed.get(f"robot:{robot_id}")
        if posed is None or not all(math.isfinite(v) for v in (*position_m, *orientation_xyzw)):
            return
        pb.resetBasePositionAndOrientation(
            posed.body, position_m, orientation_xyzw, physicsClientId=self.world.client
        )
        posed.dirty = True

    def set_crane(self, crane_id: str, bridge_m: float, trolley_m: float, hoist_m: float) -> None:
        """A crane's axes (hall positions, m); out of travel: kept where it was."""
        posed = self._posed.get(f"crane:{crane_id}")
        if posed is None:
            return
        try:
            self.world.set_crane(crane_id, bridge_m=bridge_m, trolley_m=trolley_m, hoist_m=hoist_m)
        except (CraneLimitError, ValueError):
            return
        posed.dirty = True

    # -- out: transforms --------------------------------------------------------

    def _refresh(self) -> None:
        client = self.world.client
        poses = self._world_poses
        for posed in self._posed.values():
            if not posed.dirty:
                continue
            posed.dirty = False
            position, orientation = pb.getBasePositionAndOrientation(
                posed.body, physicsClientId=client
            )
            base = pb.multiplyTransforms(
                position, orientation, *posed.base_from_inertial, physicsClientId=client
            )
            row = posed.first_row
            poses[row] = (*base[0], *base[1])
            if posed.links:
                states = pb.getLinkStates(
                    posed.body, posed.links, computeForwardKinematics=1, physicsClientId=client
                )
                poses[row + 1 : row + 1 + len(states)] = [(*s[4], *s[5]) for s in states]

    def transforms(self, stamp_ns: int) -> bytes:
        """A ``foxglove.FrameTransforms`` of every frame, stamped ``stamp_ns`` (ns)."""
        self._refresh()
        # to float32 precision (a few um at the hall's scale): zstd then compresses the
        # transforms by about a third more (the low mantissa bits are zeros, not noise)
        relative = relative_poses(self._world_poses, self._parents).astype(np.float32)
        table = self._pose_table
        for column, name in enumerate(_POSE_VALUES):
            table[name] = relative[:, column]
        poses = table.tobytes()
        stamp = timestamp_field(stamp_ns)
        heads = self._heads.get(len(stamp))
        if heads is None:  # each transform's tag, length and stamp: by the stamp's length
            heads = self._heads[len(stamp)] = [
                b"\x0a" + varint(len(stamp) + len(names) + _POSE_BYTES) for names in self._names
            ]
        size = _POSE_BYTES
        return b"".join(
            [
                part
                for i, (head, names) in enumerate(zip(heads, self._names, strict=True))
                for part in (head, stamp, names, poses[i * size : (i + 1) * size])
            ]
        )

    # -- out: the scene ---------------------------------------------------------

    def scene_update(self, stamp_ns: int) -> bytes:
        """A ``foxglove.SceneUpdate`` of the whole hall, stamped ``stamp_ns`` (ns)."""
        stamp = Timestamp(*divmod(stamp_ns, 1_000_000_000))
        entities: list[SceneEntity] = []
        for name in self.world.body_names():
            if name in self._posed:
                entities += self._link_entities(name, stamp)
            else:
                entities.append(self._static_entity(name, stamp))
        return SceneUpdate(entities=entities).encode()

    def _static_entity(self, name: str, stamp: Timestamp) -> SceneEntity:
        """A body that never moves, drawn in the hall's frame."""
        body = self.world.resolve(name).body
        client = self.world.client
        position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        inertial = pb.getDynamicsInfo(body, BASE_LINK, physicsClientId=client)
        inverse = pb.invertTransform(inertial[3], inertial[4], physicsClientId=client)
        frame = pb.multiplyTransforms(position, orientation, *inverse, physicsClientId=client)
        shapes = pb.getVisualShapeData(body, physicsClientId=client)
        return _entity(name, ROOT_FRAME, stamp, shapes, frame, frame_locked=False)

    def _link_entities(self, name: str, stamp: Timestamp) -> list[SceneEntity]:
        """A robot's or crane's links, each drawn in its own frame."""
        posed = self._posed[name]
        shapes = pb.getVisualShapeData(posed.body, physicsClientId=self.world.client)
        by_link: dict[int, list[Sequence[object]]] = {}
        for shape in shapes:
            by_link.setdefault(int(shape[1]), []).append(shape)
        identity = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
        out = []
        for offset, link in enumerate([BASE_LINK, *posed.links]):
            frame = self.frames[posed.first_row + offset]
            out.append(
                _entity(frame, frame, stamp, by_link.get(link, []), identity, frame_locked=True)
            )
        return out


def _entity(
    entity_id: str,
    frame_id: str,
    stamp: Timestamp,
    shapes: Sequence[Sequence[object]],
    frame: tuple[Sequence[float], Sequence[float]],
    *,
    frame_locked: bool,
) -> SceneEntity:
    """One entity of visual shapes (``getVisualShapeData`` rows), each placed by ``frame``
    (the shapes' URDF frame in ``frame_id``) times its own local frame."""
    cubes: list[CubePrimitive] = []
    spheres: list[SpherePrimitive] = []
    cylinders: list[CylinderPrimitive] = []
    models: list[ModelPrimitive] = []
    for shape in shapes:
        geometry = int(shape[2])  # type: ignore[call-overload]
        dims = [float(d) for d in shape[3]]  # type: ignore[attr-defined]
        rgba = [float(c) for c in shape[7]]  # type: ignore[attr-defined]
        position, orientation = pb.multiplyTransforms(*frame, shape[5], shape[6])
        color = Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
        pose = _pose(position, orientation)
        if geometry == pb.GEOM_BOX:
            size = Vector3(x=dims[0], y=dims[1], z=dims[2])
            cubes.append(CubePrimitive(pose=pose, size=size, color=color))
        elif geometry == pb.GEOM_SPHERE:
            d = 2.0 * dims[0]
            spheres.append(SpherePrimitive(pose=pose, size=Vector3(x=d, y=d, z=d), color=color))
        elif geometry in (pb.GEOM_CYLINDER, pb.GEOM_CAPSULE):
            length_m, radius_m = dims[0], dims[1]
            d = 2.0 * radius_m
            cylinders.append(
                CylinderPrimitive(
                    pose=pose,
                    size=Vector3(x=d, y=d, z=length_m),
                    bottom_scale=1.0,
                    top_scale=1.0,
                    color=color,
                )
            )
            if geometry == pb.GEOM_CAPSULE:  # two half-spheres' worth of caps
                for sign in (1.0, -1.0):
                    end, _ = pb.multiplyTransforms(
                        position, orientation, (0.0, 0.0, sign * 0.5 * length_m), (0, 0, 0, 1)
                    )
                    spheres.append(
                        SpherePrimitive(
                            pose=_pose(end, orientation), size=Vector3(x=d, y=d, z=d), color=color
                        )
                    )
        elif geometry == pb.GEOM_MESH:
            model = _model(entity_id, shape, pose, dims, rgba)
            if model is not None:
                models.append(model)
        else:
            log.warning("%s: visual geometry type %d not drawn in Foxglove", entity_id, geometry)
    return SceneEntity(
        timestamp=stamp,
        frame_id=frame_id,
        id=entity_id,
        frame_locked=frame_locked,
        cubes=cubes,
        spheres=spheres,
        cylinders=cylinders,
        models=models,
    )


def _model(
    entity_id: str, shape: Sequence[object], pose: Pose, scale: list[float], rgba: list[float]
) -> ModelPrimitive | None:
    """A mesh file embedded whole (Foxglove reads STL, OBJ, DAE and glTF itself)."""
    raw = shape[4]
    path = Path(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        log.warning(
            "%s: mesh %s not drawn in Foxglove (not STL, OBJ, DAE or glTF)", entity_id, path
        )
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("%s: mesh %s not drawn in Foxglove: %s", entity_id, path, exc.strerror)
        return None
    return ModelPrimitive(
        pose=pose,
        scale=Vector3(x=scale[0], y=scale[1], z=scale[2]),
        color=Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]),
        override_color=not all(c == 1.0 for c in rgba),  # the URDF gave a colour
        media_type=media_type,
        data=data,
    )


def _pose(position: Sequence[float], orientation: Sequence[float]) -> Pose:
    return Pose(
        position=Vector3(x=position[0], y=position[1], z=position[2]),
        orientation=Quaternion(
            x=orientation[0], y=orientation[1], z=orientation[2], w=orientation[3]
        ),
    )
