"""The emulator's per-robot channels and what happens to them in time.

A :class:`Channel` is one robot's gateway inside the hall emulator with its fault state
and counters; :func:`apply_timed_faults` injects the ``--fault`` rules that fire at a time
(freeze, disconnect, restart, e-stop, lose_grip, fall) and :class:`Incidents` makes a random
robot fall now and then (helping it up later), so a demo hall has failures to find.
Times are seconds on the emulator's fault clock (see ``HallEmulator(t0_ns=...)``).
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from robots import RobotModel
from scenes.model import Scene
from sync.codecs import VendorCodec
from sync.gateway import Gateway
from twin.emulator.faults import RESTART_SILENCE_S, RobotFaults
from twin.emulator.physics import EmulatedHall

log = logging.getLogger(__name__)

GET_UP_AFTER_S: Final = 15.0  # an incident's fallen robot is helped up after this long
CARRY_BEFORE_SLIP_S: Final = 0.5  # lose_grip: the item is carried this long before it slips
GRIP_CLOSED: Final = 0.5  # the grip channel (0 open .. 1 closed) above which the gripper is shut


@dataclass
class Channel:
    """One robot's gateway inside the emulator, with its fault state and counters."""

    robot_id: str
    model: RobotModel
    task: str
    codec: VendorCodec
    gateway: Gateway
    faults: RobotFaults
    rng: random.Random
    counts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "dropped": 0, "garbage": 0})
    frozen: bool = False
    connected: bool = True
    silent_until_ns: int = 0
    delayed: deque[tuple[int, tuple[bytes, bytes, bytes]]] = field(default_factory=deque)
    restarts_done: int = 0
    fell: bool = False
    estopped: bool = False
    item: str = "object"
    """What the robot picks up when its grip closes (its bench's first loose item)."""
    grip_lost: bool = False
    """The held item has slipped out (lose_grip fault); clears when the grip opens."""
    grip_lost_done: bool = False
    grip_closed_since_s: float | None = None


def apply_timed_faults(channel: Channel, hall: EmulatedHall, t_s: float, now_ns: int) -> None:
    """Fire the channel's timed faults that are due at ``t_s`` (each once)."""
    faults = channel.faults
    if faults.freeze_at_s is not None and t_s >= faults.freeze_at_s and not channel.frozen:
        channel.frozen = True
        log.info("%s: frozen at %.2f s (alive, silent)", channel.robot_id, t_s)
    if faults.disconnect_at_s is not None and t_s >= faults.disconnect_at_s and channel.connected:
        channel.connected = False
        channel.gateway.close()
        log.info("%s: disconnected at %.2f s", channel.robot_id, t_s)
    pending = faults.restart_at_s[channel.restarts_done :]
    if pending and t_s >= pending[0]:
        channel.restarts_done += 1
        channel.gateway.restart()
        channel.delayed.clear()
        channel.silent_until_ns = now_ns + int(RESTART_SILENCE_S * 1e9)
        log.info("%s: restarted at %.2f s (new epoch)", channel.robot_id, t_s)
    if faults.estop_at_s is not None and t_s >= faults.estop_at_s and not channel.estopped:
        channel.estopped = True
        hall.set_joint_targets(channel.robot_id, {})  # holds still where it is
        log.info("%s: e-stop at %.2f s", channel.robot_id, t_s)
    _lose_grip(channel, hall, t_s)
    if faults.fall_at_s is not None and t_s >= faults.fall_at_s and not channel.fell:
        channel.fell = True
        hall.inject_fall(channel.robot_id)
        log.info("%s: falls at %.2f s", channel.robot_id, t_s)


def _lose_grip(channel: Channel, hall: EmulatedHall, t_s: float) -> None:
    """lose_grip: once due, the next item carried for CARRY_BEFORE_SLIP_S slips out."""
    if hall.motion_target(channel.robot_id).grip < GRIP_CLOSED:
        channel.grip_closed_since_s = None
    elif channel.grip_closed_since_s is None:
        channel.grip_closed_since_s = t_s
    at_s = channel.faults.lose_grip_at_s
    if (
        at_s is not None
        and t_s >= at_s
        and not channel.grip_lost_done
        and channel.grip_closed_since_s is not None
        and t_s - channel.grip_closed_since_s >= CARRY_BEFORE_SLIP_S
    ):
        channel.grip_lost = channel.grip_lost_done = True
        log.info("%s: %s slips out of the gripper at %.2f s", channel.robot_id, channel.item, t_s)


def gripper_report(channel: Channel, hall: EmulatedHall, fallen: bool) -> tuple[bool, str]:
    """What the robot's gripper reports now: (closed, the item its object sensor senses)."""
    closed = hall.motion_target(channel.robot_id).grip >= GRIP_CLOSED
    if not closed:
        channel.grip_lost = False
    holding = channel.item if closed and not channel.grip_lost and not fallen else ""
    return closed, holding


class Incidents:
    """Every ``every_s`` seconds (0: never) a random standing robot falls; it is helped up
    GET_UP_AFTER_S later. ``log`` lists (t_s, robot) of each fall."""

    def __init__(self, every_s: float, seed: int) -> None:
        self.every_s = every_s
        self._rng = random.Random(f"{seed}:incidents")
        self._next_s = every_s if every_s > 0 else math.inf
        self._get_up_at_s: dict[str, float] = {}
        self.log: list[tuple[float, str]] = []

    def step(self, t_s: float, hall: EmulatedHall, channels: dict[str, Channel]) -> None:
        for robot_id, when in list(self._get_up_at_s.items()):
            if t_s >= when:
                del self._get_up_at_s[robot_id]
                hall.stand_up(robot_id)
                log.info("%s: helped up at %.2f s", robot_id, t_s)
        if t_s < self._next_s:
            return
        self._next_s += self.every_s
        standing = [r for r, c in channels.items() if not c.fell and r not in self._get_up_at_s]
        if not standing:
            return
        robot_id = self._rng.choice(sorted(standing))
        hall.inject_fall(robot_id)
        self._get_up_at_s[robot_id] = t_s + GET_UP_AFTER_S
        self.log.append((round(t_s, 3), robot_id))
        log.info("%s: incident, falls at %.2f s", robot_id, t_s)


def loose_item(scene: Scene, station_id: str) -> str:
    """The item the robot at this station picks up: its bench's first loose part, else its
    first loose item, else "object"."""
    station = next((s for s in scene.stations if s.id == station_id), None)
    bench = next((b for b in scene.benches if station and b.id == station.bench), None)
    loose = [item for item in (bench.items if bench else ()) if not item.fixed]
    loose.sort(key=lambda item: item.kind != "precision_component")  # parts before bins
    return loose[0].id if loose else "object"
