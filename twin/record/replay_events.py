"""The events of a replay: ``/events`` messages placed on the timeline, and which are what.

:class:`ReplayEvent` is one event as :class:`twin.record.replay_source.ReplaySource` lists it; a
failure event's detail is the :class:`twin.failures.events.FailureEvent` as JSON, whose own id
(what ``twin failures`` lists) becomes the event's id, and whose kind says which detector
raised it (:func:`divergence_times` picks the divergences, for :mod:`viz.ghost`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayEvent:
    """One ``/events`` message, placed on the timeline."""

    t_s: float
    id: str  # a failure's own id ("F0003"), else the recorder's event number
    stamp_ns: int
    kind: str
    source: str
    detail: str


def event_id(number: int, kind: str, detail: str) -> str:
    """A failure event carries its own id (what ``twin failures`` lists); use it."""
    if kind == "failure":
        try:
            found = json.loads(detail).get("id")
        except (ValueError, AttributeError):
            found = None
        if isinstance(found, str) and found:
            return found
    return str(number)


def divergence_times(events: list[ReplayEvent]) -> dict[str, list[float]]:
    """Per robot, the timeline seconds of its divergence failures, ascending."""
    out: dict[str, list[float]] = {}
    for event in events:
        if event.kind != "failure":
            continue
        try:
            failure = json.loads(event.detail)
        except ValueError:
            continue
        if isinstance(failure, dict) and failure.get("kind") == "divergence":
            robot = failure.get("robot_id")
            out.setdefault(robot if isinstance(robot, str) else event.source, []).append(event.t_s)
    return {robot: sorted(times) for robot, times in out.items()}
