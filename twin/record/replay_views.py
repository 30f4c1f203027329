"""What a replay shows before any message, and how it decodes the messages it shows.

:func:`initial_views` gives the views of a scene's robots (at their stations, zero
joints) and cranes (at home) before the first message; the decoders turn the recorded
canonical messages back into values, exactly as recorded. A robot's joint states
(:class:`JointDecoder`) are rows of ``/joints/<robot>`` blocks
(:mod:`twin.record.joint_blocks`): the block a state is in is decoded once and kept (the
last two a robot needed), so playing through it takes one row after the other. Older
recordings hold a JSON message a state; one whose names are those of the one decoded
before (the recorder wrote the same ``{"robot": .., "name": [..],`` head every time) is
decoded without them (:class:`JointValues`). See
:class:`twin.record.replay_source.ReplaySource`.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import msgspec

from robots import get_model
from scenes.model import Scene
from sync.fanout import CraneView, RobotView
from twin.record.joint_blocks import BlockError, JointRows, decode_block
from twin.record.replay_index import ChunkView, Key
from twin.record.schemas import CraneMsg, EventMsg, HeartbeatMsg, JointMsg, PoseInFrame

log = logging.getLogger(__name__)

AFTER_NAMES: Final = b'],"stamp_ns":'


class JointValues(msgspec.Struct, gc=False):
    """A ``/joints/<robot>`` message but its names (known to equal the last ones)."""

    stamp_ns: int
    epoch: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


decode_joint = msgspec.json.Decoder(JointMsg).decode
decode_values = msgspec.json.Decoder(JointValues).decode
decode_pose = msgspec.json.Decoder(PoseInFrame).decode
decode_beat = msgspec.json.Decoder(HeartbeatMsg).decode
decode_crane = msgspec.json.Decoder(CraneMsg).decode
decode_event = msgspec.json.Decoder(EventMsg).decode

_U64: Final = 1 << 64
BLOCKS_KEPT: Final = 2  # decoded blocks a robot keeps: the one shown, and one before


class JointDecoder:
    """One robot's joint states for the replay, from the data of the message a :data:`Key`
    names: a JSON message (row -1) or a row of a block.

    A block that does not decode raises :class:`BlockError` once; its rows are then
    ``None`` (nothing to show) while it is kept, so playing through it does not raise
    again at every state."""

    def __init__(self) -> None:
        self._head = b""  # JSON: the last names' head, '{"robot":..,"name":[..],"stamp_ns":'
        self._blocks: dict[tuple[int, int], JointRows | None] = {}  # (chunk, offset): rows
        self.until: tuple[int, int] | None = None
        """(chunk, last state's log time) of the block :meth:`state` took a row of last."""
        # the block state() took a row of last, as Python values: where it is, its rows,
        # its last state's log time, stamps and epochs (one tolist each, not one a row)
        self._shown: tuple[tuple[int, int], JointRows, int, list[int], list[int]] | None = None

    def block(self, key: Key, data: memoryview) -> JointRows | None:
        """The block holding the state ``key`` names (its message's ``data``), decoded or
        kept; None if it was found unreadable before. BlockError if it is found now."""
        at = (key[1], key[2])
        if at in self._blocks:
            return self._blocks[at]
        if len(self._blocks) >= BLOCKS_KEPT:
            del self._blocks[next(iter(self._blocks))]
        self._blocks[at] = None
        rows = decode_block(data)
        if not 0 <= key[3] < len(rows):
            raise BlockError(f"no row {key[3]} in a block of {len(rows)} states")
        self._blocks[at] = rows
        return rows

    def state(
        self, key: Key, chunk: ChunkView, start: int, end: int
    ) -> JointMsg | JointValues | None:
        """The joint state ``key`` names, its message at ``start:end`` in ``chunk``: a
        JointMsg, or JointValues where the names are the last ones; None from a block found
        unreadable before. msgspec.DecodeError or BlockError if it does not decode."""
        row = key[3]
        if row >= 0:
            shown = self._shown
            if shown is not None and shown[0] == (key[1], key[2]) and row < len(shown[1]):
                _, rows, last_ns, stamps, epochs = shown  # the block of the last state
                self.until = (key[1], last_ns)
                return JointValues(
                    stamps[row], epochs[row], rows.position[row].tolist(),
                    rows.velocity[row].tolist(), rows.effort[row].tolist(),
                )  # fmt: skip
            self.until = None
            found = self.block(key, chunk.records[start:end])
            if found is None:
                return None
            stamps = [t % _U64 for t in found.stamp_ns.tolist()]  # as JointRows.message
            epochs = [e % _U64 for e in found.epoch.tolist()]
            last_ns = int(found.log_time_ns[-1])
            self._shown = ((key[1], key[2]), found, last_ns, stamps, epochs)
            self.until = (key[1], last_ns)
            return found.message(row)  # the first of a block: with its names
        self.until = None
        raw, data = chunk.raw, chunk.records[start:end]
        head = self._head
        if head and raw.startswith(head, start):  # the names of the last one decoded
            return decode_values(data)
        js = decode_joint(data)
        cut = raw.find(AFTER_NAMES, start, end)
        self._head = raw[start : cut + len(AFTER_NAMES)] if cut > 0 else b""
        return js

    def positions(self, key: Key, data: memoryview) -> list[float] | None:
        """The positions of the joint state ``key`` names (its message's ``data``); None
        from a block found unreadable before. msgspec.DecodeError or BlockError if it does
        not decode."""
        if key[3] < 0:
            return decode_joint(data).position
        rows = self.block(key, data)
        return None if rows is None else rows.position[key[3]].tolist()

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks kept decoded."""
        arrays = ("log_time_ns", "stamp_ns", "seq", "epoch", "position", "velocity", "effort")
        return sum(
            getattr(rows, a).nbytes for rows in self._blocks.values() if rows for a in arrays
        )


Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


def at_rest_pose(scene: Scene, robot_id: str) -> tuple[Vec3, Quat]:
    """Where the world puts a robot before any base message: its station, model height."""
    robot = next(r for r in scene.robots if r.id == robot_id)
    model = get_model(robot.model)
    station = scene.station(robot.station)
    x, y, z = station.pose.xyz
    half = station.pose.yaw_rad / 2.0
    aw, az = math.cos(half), math.sin(half)
    bx, by, bz, bw = model.base_orientation_xyzw
    quat = (aw * bx - az * by, aw * by + az * bx, aw * bz + az * bw, aw * bw - az * bz)
    return (x, y, z + model.base_height_m), quat


def initial_views(scene: Scene, liveness: str) -> tuple[dict[str, RobotView], dict[str, CraneView]]:
    """Every robot at its station with zero joints, every crane at home (``liveness``)."""
    robots: dict[str, RobotView] = {}
    cranes: dict[str, CraneView] = {}
    for robot in scene.robots:
        model = get_model(robot.model)
        names = list(model.profile.canonical_joint_names)
        position, orientation = at_rest_pose(scene, robot.id)
        robots[robot.id] = RobotView(
            robot_id=robot.id, manufacturer=model.manufacturer, model=model.name,
            task=robot.task, liveness=liveness, stamp_ns=0, epoch=0, joint_names=names,
            positions=[0.0] * len(names), velocities=[0.0] * len(names),
            efforts=[0.0] * len(names), base_position_m=position,
            base_orientation_xyzw=orientation, mode="unknown",
        )  # fmt: skip
    for crane in scene.cranes:
        cranes[crane.id] = CraneView(
            crane_id=crane.id, liveness=liveness, stamp_ns=0, bridge_m=crane.home.bridge,
            trolley_m=crane.home.trolley, hoist_m=crane.home.hoist, moving=False,
        )  # fmt: skip
    return robots, cranes
