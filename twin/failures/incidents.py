"""Incidents: a robot's failure events grouped into a cause and the consequences it brings.

One fall brings joints over their limits, divergences from the twin's prediction and a
dropped grasp in the seconds after it; listed one by one they are a flood no one can act on.
:func:`group_incidents` groups each robot's events in time order: an event joins the robot's
open incident when it comes within :data:`CONSEQUENCE_WINDOW_S` of that incident's previous
event, else it opens a new one. The incident's cause is its most causal event among those of
its first :data:`CAUSE_LEAD_S` (a joint limit a few milliseconds before the fall it belongs
to is a consequence of the same fall, not its cause); severity is the worst of its events.
A grasp dropped while the robot stood upright (the event's ``upright``) shortens that search to
:data:`UPRIGHT_DROP_LEAD_S` after it: a robot in its working posture was not falling, so only
a collision, which its detector sees later than the drop, can still explain the drop, and a
fall after that is one of its consequences. Its lesson then need not wait the full lead.
The same grouping runs offline (``twin failures``) and on a live event stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from twin.failures.events import FailureEvent, Severity
from twin.failures.monitors import DEFAULT_COLLISION_HZ, DEFAULT_RATE_HZ

CONSEQUENCE_WINDOW_S: Final = 5.0
"""An event this close after the previous one of a robot's incident belongs to it."""
CAUSE_LEAD_S: Final = 1.0
"""Events this close after an incident's first are candidates for its cause."""
WEAK_CAUSE_LEAD_S: Final = 2.5
"""While an incident holds only weak events (:data:`WEAK_RANK` and after: effort, joint limits,
divergence, stale data), a strong one this close after its first still becomes its cause: a
robot collapsing slowly hits joint limits well before its base is low enough to call a fall."""
UPRIGHT_DROP_LEAD_S: Final = 1.0 / DEFAULT_COLLISION_HZ + 1.0 / DEFAULT_RATE_HZ
"""After a grasp dropped by an upright robot, a stronger cause is looked for this long (0.3 s):
a collision that knocked the item out is seen up to one collision check (4 Hz) plus one
detector run (20 Hz) after the drop. A fall cannot have caused it: the robot was upright."""
WEAK_RANK: Final = 3
CAUSE_RANK: Final[dict[str, int]] = {
    "fall": 0,
    "collision": 1,
    "grasp_dropped": 2,
    "effort": 3,
    "joint_limit": 4,
    "divergence": 5,
    "stale": 6,
}
"""Which kind of event causes which: a fall explains the rest; stale data explains nothing."""
_SEVERITY: Final[dict[str, int]] = {"warning": 0, "error": 1, "critical": 2}
_NS: Final = 1_000_000_000


@dataclass
class Incident:
    """A cause and its consequences, on one robot."""

    robot_id: str
    events: list[FailureEvent] = field(default_factory=list)

    @property
    def cause(self) -> FailureEvent:
        """The most causal event of the incident's first :data:`CAUSE_LEAD_S`; if those are all
        weak, the most causal strong event within :data:`WEAK_CAUSE_LEAD_S`, if any. Either
        search ends :data:`UPRIGHT_DROP_LEAD_S` after a grasp an upright robot dropped."""
        return self._search()[0]

    def cause_settled(self, now_ns: int) -> bool:
        """Whether the cause can no longer change: a fall at once (nothing outranks it, so its
        lesson need not wait); any other once the search that found it has ended (a strong
        cause :data:`CAUSE_LEAD_S` after the first event, or :data:`UPRIGHT_DROP_LEAD_S` after a
        drop by an upright robot; a weak one :data:`WEAK_CAUSE_LEAD_S` after the first)."""
        cause, until_ns = self._search()
        return _rank(cause) == min(CAUSE_RANK.values()) or now_ns >= until_ns

    def _search(self) -> tuple[FailureEvent, int]:
        """The cause, and until when (ns) a later event could still have replaced it."""
        until_ns = self._search_end_ns(CAUSE_LEAD_S)
        best = min((e for e in self.events if e.stamp_ns <= until_ns), key=_causal)
        if _rank(best) >= WEAK_RANK:
            until_ns = self._search_end_ns(WEAK_CAUSE_LEAD_S)
            late = [e for e in self.events if e.stamp_ns <= until_ns and _rank(e) < WEAK_RANK]
            if late:
                best = min(late, key=_causal)
        return best, until_ns

    def _search_end_ns(self, lead_s: float) -> int:
        """``lead_s`` after the first event, or sooner after an upright robot's dropped grasp."""
        end_ns = self.start_ns + round(lead_s * _NS)
        for event in self.events:
            if event.stamp_ns > end_ns:
                break
            if event.kind == "grasp_dropped" and event.upright:
                return min(end_ns, event.stamp_ns + round(UPRIGHT_DROP_LEAD_S * _NS))
        return end_ns

    @property
    def consequences(self) -> list[FailureEvent]:
        """Every event but the cause, in time order."""
        cause = self.cause
        return [e for e in self.events if e is not cause]

    @property
    def severity(self) -> Severity:
        """The worst severity among the incident's events."""
        return max((e.severity for e in self.events), key=lambda s: _SEVERITY[s])

    @property
    def id(self) -> str:
        """The incident's id: its cause's event id."""
        return self.cause.id

    @property
    def start_ns(self) -> int:
        return self.events[0].stamp_ns

    @property
    def end_ns(self) -> int:
        return self.events[-1].stamp_ns

    def consequence_counts(self) -> dict[str, int]:
        """Consequences by kind."""
        counts: dict[str, int] = {}
        for event in self.consequences:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return counts


def _rank(event: FailureEvent) -> int:
    return CAUSE_RANK.get(event.kind, len(CAUSE_RANK))


def _causal(event: FailureEvent) -> tuple[int, int]:
    return _rank(event), event.stamp_ns


class IncidentGrouper:
    """Groups events as they come (live), or all at once (:func:`group_incidents`)."""

    def __init__(self, window_s: float = CONSEQUENCE_WINDOW_S, *, keep: int | None = None) -> None:
        """``keep``: hold at most this many incidents in :attr:`incidents` (a live twin runs
        for months; the oldest go), None: all (offline)."""
        self.window_ns = int(window_s * _NS)
        self.keep = keep
        self.incidents: list[Incident] = []
        self.opened = 0
        """Incidents opened so far (kept or not)."""
        self._open: dict[str, Incident] = {}

    def add(self, event: FailureEvent) -> tuple[Incident, bool]:
        """Put ``event`` in its incident; the incident, and whether the event opened it.
        Events of a robot must come in time order."""
        current = self._open.get(event.robot_id)
        if current is not None and event.stamp_ns - current.end_ns <= self.window_ns:
            current.events.append(event)
            return current, False
        incident = Incident(event.robot_id, [event])
        self._open[event.robot_id] = incident
        self.incidents.append(incident)
        self.opened += 1
        if self.keep is not None and len(self.incidents) > self.keep:
            del self.incidents[: len(self.incidents) - self.keep]
        return incident, True


def group_incidents(
    events: Iterable[FailureEvent], window_s: float = CONSEQUENCE_WINDOW_S
) -> list[Incident]:
    """Every incident of ``events`` (any order), ordered by when they started."""
    grouper = IncidentGrouper(window_s)
    for event in sorted(events, key=lambda e: (e.stamp_ns, e.id)):
        grouper.add(event)
    return sorted(grouper.incidents, key=lambda i: (i.start_ns, i.robot_id))


def incident_row(incident: Incident, t0_ns: int, manufacturer: str) -> dict[str, object]:
    """What ``twin failures --json`` says of an incident."""
    cause = incident.cause
    return {
        "id": incident.id,
        "robot": incident.robot_id,
        "manufacturer": manufacturer,
        "cause": cause.kind,
        "severity": incident.severity,
        "t_s": round((cause.stamp_ns - t0_ns) / 1e9, 3),
        "stamp_ns": cause.stamp_ns,
        "duration_s": round((incident.end_ns - incident.start_ns) / 1e9, 3),
        "details": cause.details,
        "consequences": incident.consequence_counts(),
        "events": [e.id for e in incident.events],
    }


def summary(incidents: Sequence[Incident]) -> str:
    """``3 incidents (1 critical)``."""
    critical = sum(1 for i in incidents if i.severity == "critical")
    noun = "incident" if len(incidents) == 1 else "incidents"
    return f"{len(incidents)} {noun} ({critical} critical)"
