"""A recording's Foxglove channels: the hall and the robots moving, drawn by Foxglove's 3D panel.

Written beside the raw and canonical JSON channels (which stay as they are), in protobuf with
Foxglove's own schemas (the FileDescriptorSets foxglove-sdk ships, stored as each channel's
schema), so Foxglove and Lichtblick draw a recording from the file alone:

- ``/foxglove/scene`` (``foxglove.SceneUpdate``): the hall's shapes, an entity per static body
  (floor, hub, benches, items, panels) and per link of every robot and crane
  (:class:`twin.record.foxglove_hall.FoxgloveHall`). Written at the start and again at the
  first display tick after a robot was first heard from, each time whole, so the last one
  before any instant (what Foxglove reads when it seeks) draws everything.
- ``/foxglove/tf`` (``foxglove.FrameTransforms``): every robot and crane link in its parent
  link's frame, the bases in ``hall``, at the display rate (:data:`DISPLAY_HZ` by default) of
  the messages' receive times, posed by a kinematic world of the recorder's own from the
  newest joint states, base poses and crane positions.
- ``/foxglove/joints/<robot>`` (``foxglove.JointStates``): the robot's newest canonical joint
  state (names, positions, velocities, efforts; SI) at each display tick where it changed:
  Foxglove's native joint view, at display rate (every state, at the robot's own rate, is on
  ``/joints/<robot>``).
- ``/foxglove/log`` (``foxglove.Log``): every ``/events`` event as a log line, its level from
  what it is (a failure's severity; a lesson, a takeover or a robot gone STALE or GONE a
  warning, and so is what a preview found; the rest info), named by its source, for
  Foxglove's Log panel.

Cost: the recorder keeps each route's newest state (one reference per message, already
decoded for the canonical channel); the kinematics and the encoding run once a display tick
(:meth:`FoxgloveChannels.tick`), never per message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import msgspec
from foxglove.messages import (
    FrameTransforms,
    JointState,
    JointStates,
    Log,
    LogLevel,
    SceneUpdate,
    Timestamp,
)

from scenes.model import Scene
from twin.record.foxglove_hall import FoxgloveHall
from twin.record.mcap_writer import ChunkedMcapWriter
from twin.world.world import World

log = logging.getLogger(__name__)

DISPLAY_HZ: Final = 30.0
"""Transforms a second of receive time, by default."""
SCENE_TOPIC: Final = "/foxglove/scene"
TF_TOPIC: Final = "/foxglove/tf"
JOINTS_TOPIC: Final = "/foxglove/joints/"
"""A robot's ``foxglove.JointStates``: this, then its id."""
LOG_TOPIC: Final = "/foxglove/log"
_SEVERITY_LEVEL: Final = {
    "warning": LogLevel.Warning,
    "error": LogLevel.Error,
    "critical": LogLevel.Fatal,
}
_WARNING_KINDS: Final = frozenset({"lesson", "takeover"})
ENCODING: Final = "protobuf"
JointValues = tuple[Sequence[float], Sequence[float], Sequence[float]]
"""A joint state's positions, velocities and efforts (SI, wire order)."""


class FoxgloveChannels:
    """The Foxglove channels of one recording; owns a kinematic world of the scene."""

    def __init__(self, scene: Scene, *, display_hz: float) -> None:
        """Builds the kinematic world (a few hundred ms: the recorder does it before it
        takes its time zero); :meth:`attach` then registers the channels in a file."""
        if not display_hz > 0:
            raise ValueError(f"display_hz must be positive, got {display_hz}")
        self._tick_ns = round(1e9 / display_hz)
        self.next_tick_ns = 0
        self._world = World(scene)
        try:
            self.hall = FoxgloveHall(self._world)
        except BaseException:
            self._world.close()
            raise
        self._writer: ChunkedMcapWriter | None = None
        self._channels: dict[str, int] = {}
        self._robots = {robot.id for robot in scene.robots}
        self._heard: set[str] = set()
        self._scene_due = False
        self._sequence: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        # per robot, changed since the last tick: its canonical names and (p, v, e)
        self._joints: dict[str, tuple[Sequence[str], JointValues]] = {}

    def attach(self, writer: ChunkedMcapWriter, start_ns: int) -> None:
        """Register the schemas and channels in ``writer``'s file; the first display tick is
        at ``start_ns`` at the earliest. The owner writes the first scene
        (:meth:`write_scene`)."""
        self._writer = writer
        self.next_tick_ns = start_ns
        for schema in (SceneUpdate, FrameTransforms, JointStates, Log):
            described = schema.get_schema()
            self._schemas[described.name] = writer.register_schema(
                described.name, described.encoding, described.data
            )
        for topic, name in (
            (SCENE_TOPIC, "foxglove.SceneUpdate"),
            (TF_TOPIC, "foxglove.FrameTransforms"),
            (LOG_TOPIC, "foxglove.Log"),
        ):
            self._channels[topic] = writer.register_channel(topic, ENCODING, self._schemas[name])
        for robot_id in sorted(self._robots):
            topic = JOINTS_TOPIC + robot_id
            self._channels[topic] = writer.register_channel(
                topic, ENCODING, self._schemas["foxglove.JointStates"]
            )

    def heard(self, robot_id: str) -> None:
        """A robot's first message: the scene is written again at the next tick."""
        if robot_id not in self._heard and robot_id in self._robots:
            self._heard.add(robot_id)
            self._scene_due = True

    def set_joints(
        self,
        robot_id: str,
        names: Sequence[str],
        state: JointValues,
    ) -> None:
        """A robot's newest canonical joint state (positions, velocities, efforts; SI, wire
        order): it poses the robot, and is written on its JointStates channel at the next
        tick."""
        self.hall.set_joints(robot_id, state[0])
        if JOINTS_TOPIC + robot_id in self._channels and len(names) == len(state[0]):
            self._joints[robot_id] = (names, state)

    def log(self, stamp_ns: int, kind: str, source_id: str, detail: str) -> None:
        """An event (as on ``/events``) as a ``foxglove.Log`` line."""
        self._add(LOG_TOPIC, stamp_ns, log_message(stamp_ns, kind, source_id, detail))

    def write_scene(self, log_ns: int) -> None:
        """The whole scene on ``/foxglove/scene``."""
        self._add(SCENE_TOPIC, log_ns, self.hall.scene_update(log_ns))
        self._scene_due = False

    def tick(self, log_ns: int) -> None:
        """One display tick at ``log_ns`` (the receive time that reached it): the scene if a
        robot appeared, then every frame's transform. Ticks a slow stream skipped are not
        made up: the next is a tick period after this one."""
        if self._scene_due:
            self.write_scene(log_ns)
        self._add(TF_TOPIC, log_ns, self.hall.transforms(log_ns))
        for robot_id, (names, state) in self._joints.items():
            self._add(JOINTS_TOPIC + robot_id, log_ns, joint_states_message(log_ns, names, *state))
        self._joints = {}
        following = self.next_tick_ns + self._tick_ns
        self.next_tick_ns = following if following > log_ns else log_ns + self._tick_ns

    def _add(self, topic: str, log_ns: int, data: bytes) -> None:
        if self._writer is None:
            raise RuntimeError("FoxgloveChannels.attach was not called")
        sequence = self._sequence[topic] = self._sequence.get(topic, 0) + 1
        self._writer.add_message(self._channels[topic], log_ns, data, log_ns, sequence & 0xFFFFFFFF)

    def close(self) -> None:
        """Release the kinematic world."""
        self._world.close()


def joint_states_message(
    stamp_ns: int,
    names: Sequence[str],
    position: Sequence[float],
    velocity: Sequence[float],
    effort: Sequence[float],
) -> bytes:
    """A ``foxglove.JointStates`` (protobuf) of one robot's joints, stamped ``stamp_ns``."""
    return JointStates(
        timestamp=Timestamp(*divmod(stamp_ns, 1_000_000_000)),
        joints=[
            JointState(name=name, position=p, velocity=v, effort=e)
            for name, p, v, e in zip(names, position, velocity, effort, strict=True)
        ],
    ).encode()


def log_message(stamp_ns: int, kind: str, source_id: str, detail: str) -> bytes:
    """A ``foxglove.Log`` (protobuf) of one event, named by its source."""
    level, text = _log_line(kind, detail)
    return Log(
        timestamp=Timestamp(*divmod(stamp_ns, 1_000_000_000)),
        level=level,
        message=text,
        name=source_id,
    ).encode()


def _log_line(kind: str, detail: str) -> tuple[LogLevel, str]:
    """An event's log level and text: a failure (its JSON detail) by its severity."""
    if kind == "failure":
        try:
            failure = msgspec.json.decode(detail)
            severity = str(failure["severity"])
            text = f"{failure['kind']}: {failure['details']} ({failure['id']})"
        except (msgspec.DecodeError, KeyError, TypeError):
            return LogLevel.Error, f"failure: {detail}"
        return _SEVERITY_LEVEL.get(severity, LogLevel.Error), text
    if (
        kind in _WARNING_KINDS
        or kind.startswith("preview:")
        or (kind == "liveness" and detail.endswith(("-> STALE", "-> GONE")))
    ):
        return LogLevel.Warning, f"{kind}: {detail}"
    return LogLevel.Info, f"{kind}: {detail}"
