"""Fault injection for the hall emulator: parse ``--fault`` specs and decide per message.

Spec grammar (one per ``--fault``)::

    ROBOT:drop=0.05        drop each message with probability 0.05 (sequence numbers advance)
    ROBOT:delay=50ms       send every message 50 ms after it was stamped
    ROBOT:garbage=0.01     after a message, with probability 0.01, send a malformed frame
    ROBOT:freeze@10s       from t = 10 s the process stays alive but sends nothing more
    ROBOT:disconnect@5s    at t = 5 s the gateway closes its socket for good
    ROBOT:restart@8s       at t = 8 s the gateway restarts: 0.5 s silent, new epoch, seq from 0
    ROBOT:fall@12s         at t = 12 s the robot physically falls
    ROBOT:estop@3s         from t = 3 s its emergency stop is engaged: it holds still, its
                           heartbeats say estop (mode 'stopped'), it rejects commands
    ROBOT:lie@4s           from t = 4 s its reported joints lie: every position is off by
                           +-LIE_RAD, the sign flipping every LIE_PERIOD_S (a jump no motor
                           makes, so the twin's divergence detector fires and stays raised)
    ROBOT:lose_grip@9s     from t = 9 s, an item the robot has held for 0.5 s slips out of its
                           gripper: the grip stays closed, its heartbeats' object sensor says
                           it holds nothing (the twin's grasp_dropped detector fires)
    ROBOT:rate=2Hz         joint states at 2 Hz instead of the profile's rate (a robot that
                           is STALE between messages, yet never GONE)

Times are seconds (``s`` or ``ms``) since the emulator started, or since ``--t0-ns`` when given
(``twin demo --record`` passes its recording's start); probabilities in 0..1.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from sync.protocol import Kind, pack_header, topic

RESTART_SILENCE_S: Final = 0.5
LIE_RAD: Final = 1.0
LIE_PERIOD_S: Final = 0.25

_RATE = re.compile(r"^(drop|garbage)=(\d*\.?\d+)$")
_DELAY = re.compile(r"^delay=(\d*\.?\d+)(ms|s)$")
_AT = re.compile(r"^(freeze|disconnect|restart|fall|estop|lie|lose_grip)@(\d*\.?\d+)(ms|s)?$")
_JS_RATE = re.compile(r"^rate=(\d*\.?\d+)Hz$")


class FaultSpecError(ValueError):
    """A ``--fault`` value that does not parse, or names no robot of the scene."""


@dataclass
class RobotFaults:
    """The faults injected into one robot (all optional)."""

    drop_p: float = 0.0
    garbage_p: float = 0.0
    delay_s: float = 0.0
    freeze_at_s: float | None = None
    disconnect_at_s: float | None = None
    restart_at_s: list[float] = field(default_factory=list)
    fall_at_s: float | None = None
    estop_at_s: float | None = None
    lie_at_s: float | None = None
    lose_grip_at_s: float | None = None
    js_rate_hz: float | None = None

    def lie_rad(self, t_s: float) -> float:
        """What the lie adds to every reported joint position at ``t_s`` (0: honest)."""
        if self.lie_at_s is None or t_s < self.lie_at_s:
            return 0.0
        flips = int((t_s - self.lie_at_s) / LIE_PERIOD_S)
        return LIE_RAD if flips % 2 == 0 else -LIE_RAD


def _seconds(number: str, unit: str | None) -> float:
    value = float(number)
    return value / 1000.0 if unit == "ms" else value


def parse_faults(specs: Iterable[str], robot_ids: Iterable[str]) -> dict[str, RobotFaults]:
    """Parse ``--fault`` values; FaultSpecError names the bad spec and why."""
    known = set(robot_ids)
    faults: dict[str, RobotFaults] = {}
    for spec in specs:
        robot, sep, rule = spec.partition(":")
        if not sep or not robot or not rule:
            raise FaultSpecError(f"--fault {spec!r}: expected ROBOT:RULE, e.g. K1-03:drop=0.05")
        if robot not in known:
            raise FaultSpecError(
                f"--fault {spec!r}: no robot {robot!r} in the scene "
                f"(robots: {', '.join(sorted(known))})"
            )
        entry = faults.setdefault(robot, RobotFaults())
        if match := _RATE.match(rule):
            probability = float(match.group(2))
            if not 0.0 <= probability <= 1.0:
                raise FaultSpecError(f"--fault {spec!r}: probability must be within 0..1")
            if match.group(1) == "drop":
                entry.drop_p = probability
            else:
                entry.garbage_p = probability
        elif match := _JS_RATE.match(rule):
            rate_hz = float(match.group(1))
            if rate_hz <= 0.0:
                raise FaultSpecError(f"--fault {spec!r}: the rate must be above 0 Hz")
            entry.js_rate_hz = rate_hz
        elif match := _DELAY.match(rule):
            entry.delay_s = _seconds(match.group(1), match.group(2))
        elif match := _AT.match(rule):
            at_s = _seconds(match.group(2), match.group(3))
            what = match.group(1)
            if what == "freeze":
                entry.freeze_at_s = at_s
            elif what == "disconnect":
                entry.disconnect_at_s = at_s
            elif what == "restart":
                entry.restart_at_s.append(at_s)
                entry.restart_at_s.sort()
            elif what == "estop":
                entry.estop_at_s = at_s
            elif what == "lie":
                entry.lie_at_s = at_s
            elif what == "lose_grip":
                entry.lose_grip_at_s = at_s
            else:
                entry.fall_at_s = at_s
        else:
            raise FaultSpecError(
                f"--fault {spec!r}: unknown rule {rule!r} (drop=P, garbage=P, delay=Nms, "
                "rate=NHz, freeze@Ts, disconnect@Ts, restart@Ts, fall@Ts, estop@Ts, lie@Ts, "
                "lose_grip@Ts)"
            )
    return faults


def garbage_frames(
    rng: random.Random, kind: Kind, robot_id: str, seq: int, epoch: int
) -> tuple[bytes, ...]:
    """A malformed message of one of six sorts (random payload, cut header, wrong version,
    oversized payload, missing frames, bad topic) for the ``garbage`` fault."""
    good_topic = topic(kind, robot_id)
    header = pack_header(kind, seq, time.time_ns(), epoch)
    choice = rng.randrange(6)
    if choice == 0:
        return (good_topic, header, rng.randbytes(rng.randrange(1, 300)))
    if choice == 1:
        return (good_topic, header[: rng.randrange(1, 31)], b"")
    if choice == 2:  # wrong protocol version
        return (good_topic, bytes([header[0], header[1], 99]) + header[3:], b"")
    if choice == 3:
        return (good_topic, header, b"\x00" * (64 * 1024 + 1))
    if choice == 4:
        return (good_topic,)
    return (rng.randbytes(16), header, b"")
