"""Where the viewer's state comes from: the scene at rest, or a live twin's fan-out.

Both sources hand the viewer the same canonical views (:class:`sync.fanout.RobotView`,
:class:`sync.fanout.CraneView`); the viewer never talks to hardware and never steps
physics. The live source is a Clone-pattern client: it subscribes, takes a snapshot,
then applies only newer updates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

import zmq

from robots import get_model
from scenes.model import Scene
from sync.fanout import CloneClient, CraneView, Event, RequestError, RobotView
from twin.world.world import World

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot deliver (no twin answering at the given address, ...)."""


class Source(Protocol):
    """What the viewer reads each frame."""

    @property
    def robots(self) -> dict[str, RobotView]:
        """The newest view of every robot."""
        ...

    @property
    def cranes(self) -> dict[str, CraneView]:
        """The newest view of every crane."""
        ...

    def poll(self) -> bool:
        """Take in whatever arrived; True if anything changed."""
        ...

    def new_events(self) -> Iterator[Event]:
        """Events since the last call."""
        ...

    def close(self) -> None:
        """Release sockets."""
        ...


class StaticSource:
    """The scene at rest: every robot at its station, joints at zero."""

    def __init__(self, scene: Scene) -> None:
        self.robots: dict[str, RobotView] = {}
        self.cranes: dict[str, CraneView] = {}
        with World(scene) as world:
            for robot in scene.robots:
                model = get_model(robot.model)
                names = [model.profile.canonical_name(n) for n in model.profile.joint_names]
                position, orientation = world.base_pose(robot.id)
                self.robots[robot.id] = RobotView(
                    robot_id=robot.id,
                    manufacturer=model.manufacturer,
                    model=model.name,
                    task=robot.task,
                    liveness="AT REST",
                    stamp_ns=0,
                    epoch=0,
                    joint_names=names,
                    positions=[0.0] * len(names),
                    velocities=[0.0] * len(names),
                    efforts=[0.0] * len(names),
                    base_position_m=position,
                    base_orientation_xyzw=orientation,
                    mode="idle",
                )
            for crane in scene.cranes:
                self.cranes[crane.id] = CraneView(
                    crane_id=crane.id,
                    liveness="AT REST",
                    stamp_ns=0,
                    bridge_m=crane.home.bridge,
                    trolley_m=crane.home.trolley,
                    hoist_m=crane.home.hoist,
                    moving=False,
                )
        self._fresh = True

    def poll(self) -> bool:
        fresh, self._fresh = self._fresh, False
        return fresh

    def new_events(self) -> Iterator[Event]:
        return iter(())

    def close(self) -> None:
        pass


class LiveSource:
    """A live twin's fan-out (``tcp://HOST:7702``) and snapshot endpoint (``:7703``)."""

    def __init__(
        self,
        fanout: str,
        snapshot: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self.client = CloneClient(self._context, fanout, snapshot)
        try:
            self.client.start(timeout_s=timeout_s)
        except RequestError as exc:
            self.close()
            raise SourceError(f"no twin at {snapshot}: {exc}") from None
        self._seen_events = 0
        self._events_run = self.client.run_id
        log.info("live view of %r: %d robots", self.client.scene, len(self.client.robots))

    @property
    def scene_name(self) -> str:
        return self.client.scene

    @property
    def robots(self) -> dict[str, RobotView]:
        return self.client.robots

    @property
    def cranes(self) -> dict[str, CraneView]:
        return self.client.cranes

    def poll(self) -> bool:
        return self.client.poll(0.0) > 0

    def new_events(self) -> Iterator[Event]:
        if self.client.run_id != self._events_run:  # a restarted twin counts from 1 again
            self._events_run = self.client.run_id
            self._seen_events = 0
        events = list(self.client.events)
        fresh = [e for e in events if e.seq > self._seen_events]
        if fresh:
            self._seen_events = fresh[-1].seq
        return iter(fresh)

    def close(self) -> None:
        self.client.close()
        if self._owns_context:
            self._context.destroy(linger=0)
