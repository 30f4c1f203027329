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

Cost: the recorder keeps each route's newest state (one reference per message, already
decoded for the canonical channel); the kinematics and the encoding run once a display tick
(:meth:`FoxgloveChannels.tick`), never per message.
"""

from __future__ import annotations

import logging
from typing import Final

from foxglove.messages import FrameTransforms, SceneUpdate

from scenes.model import Scene
from twin.record.foxglove_hall import FoxgloveHall
from twin.record.mcap_writer import ChunkedMcapWriter
from twin.world.world import World

log = logging.getLogger(__name__)

DISPLAY_HZ: Final = 30.0
"""Transforms a second of receive time, by default."""
SCENE_TOPIC: Final = "/foxglove/scene"
TF_TOPIC: Final = "/foxglove/tf"
ENCODING: Final = "protobuf"


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
        self._sequence = {SCENE_TOPIC: 0, TF_TOPIC: 0}

    def attach(self, writer: ChunkedMcapWriter, start_ns: int) -> None:
        """Register the schemas and channels in ``writer``'s file; the first display tick is
        at ``start_ns`` at the earliest. The owner writes the first scene
        (:meth:`write_scene`)."""
        self._writer = writer
        self.next_tick_ns = start_ns
        for topic, schema in ((SCENE_TOPIC, SceneUpdate), (TF_TOPIC, FrameTransforms)):
            described = schema.get_schema()
            schema_id = writer.register_schema(described.name, described.encoding, described.data)
            self._channels[topic] = writer.register_channel(topic, ENCODING, schema_id)

    def heard(self, robot_id: str) -> None:
        """A robot's first message: the scene is written again at the next tick."""
        if robot_id not in self._heard and robot_id in self._robots:
            self._heard.add(robot_id)
            self._scene_due = True

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
        following = self.next_tick_ns + self._tick_ns
        self.next_tick_ns = following if following > log_ns else log_ns + self._tick_ns

    def _add(self, topic: str, log_ns: int, data: bytes) -> None:
        if self._writer is None:
            raise RuntimeError("FoxgloveChannels.attach was not called")
        self._sequence[topic] += 1
        self._writer.add_message(
            self._channels[topic], log_ns, data, log_ns, self._sequence[topic] & 0xFFFFFFFF
        )

    def close(self) -> None:
        """Release the kinematic world."""
        self._world.close()
