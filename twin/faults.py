"""Fault injection for the hall emulator: parse ``--fault`` specs and decide per message.

Spec grammar (one per ``--fault``)::

    ROBOT:drop=0.05        drop each message with probability 0.05 (sequence numbers advance)
    ROBOT:delay=50ms       send every message 50 ms after it was stamped
    ROBOT:garbage=0.01     after a message, with probability 0.01, send a malformed frame
    ROBOT:freeze@10s       from t = 10 s the process stays alive but sends nothing more
    ROBOT:disconnect@5s    at t = 5 s the gateway closes its socket for good
    ROBOT:restart@8s       at t = 8 s the gateway restarts: 0.5 s silent, new epoch, seq from 0
    ROBOT:fall@12s         at t = 12 s the robot physically falls

Times are seconds since the emulator started (``s`` or ``ms``); probabilities in 0..1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

RESTART_SILENCE_S: Final = 0.5

_RATE = re.compile(r"^(drop|garbage)=(\d*\.?\d+)$")
_DELAY = re.compile(r"^delay=(\d*\.?\d+)(ms|s)$")
_AT = re.compile(r"^(freeze|disconnect|restart|fall)@(\d*\.?\d+)(ms|s)?$")


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
            else:
                entry.fall_at_s = at_s
        else:
            raise FaultSpecError(
                f"--fault {spec!r}: unknown rule {rule!r} (drop=P, garbage=P, delay=Nms, "
                "freeze@Ts, disconnect@Ts, restart@Ts, fall@Ts)"
            )
    return faults
