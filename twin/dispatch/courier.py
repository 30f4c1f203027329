"""Lessons to gateways: the twin sends each new or strengthened lesson to the gateways of the
robots it concerns over the command channel, and counts their acknowledgements.

``twin live --keys`` publishes a lesson on the fan-out (viewers draw it) and hands it to
:meth:`LessonCourier.send`, which sends a ``lesson`` notice (:class:`sync.command.LessonNotice`,
with advice on how to act on it) to every concerned robot whose gateway is on the command
channel, across manufacturers. A gateway answers ``ack`` (:class:`sync.command.LessonAck`, what
it now does differently); the acknowledgement is kept with the lesson in the lessons database
(``twin lessons`` shows who received it), counted per robot in ``twin status``, and is an event
(``lesson_ack``) on the fan-out and in the recording, like each send (``lesson_sent``). A robot
whose gateway is not connected is counted ``not_connected`` and sent nothing.

The courier runs in the mirror's thread, like the gate whose socket it shares.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import zmq

from sync.command import ACK_DECODER, ENCODER, LESSON, LessonAdvice, LessonNotice
from twin.lessons.concern import advice_for
from twin.lessons.store import Ack, LessonStore, LessonStoreError

log = logging.getLogger(__name__)

_RECENT_KEPT: Final = 20

Note = Callable[[str, str, str], None]
"""``note(kind, robot_id, detail JSON)``: an event on the fan-out and in the recording."""


@dataclass
class _Sent:
    """A lesson sent to one robot, waiting for its acknowledgement."""

    lesson_id: str
    robot_id: str
    sent_mono_ns: int


@dataclass
class CourierCounts:
    """Per robot: lessons sent, acknowledged, not sent (gateway not connected), and
    acknowledgements that matched nothing sent."""

    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    not_connected: Counter[str] = field(default_factory=Counter)
    unexpected_ack: Counter[str] = field(default_factory=Counter)
    ack_latency_s: dict[str, float] = field(default_factory=dict)
    """Robot -> seconds from its newest send to its acknowledgement."""


class LessonCourier:
    """Lessons out over the command channel, acknowledgements in (see the module docstring)."""

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        routing_of: Callable[[str], bytes | None],
        identity_of: Callable[[str], tuple[str, str] | None],
        note: Note,
    ) -> None:
        """``routing_of(robot)``: the routing id of its connected gateway, or None;
        ``identity_of(robot)``: its (model, manufacturer), or None for an unknown robot."""
        self._socket = socket
        self._routing_of = routing_of
        self._identity_of = identity_of
        self._note = note
        self.store: LessonStore | None = None
        self.counts = CourierCounts()
        self._waiting: dict[tuple[str, str], _Sent] = {}
        self.recent: list[dict[str, Any]] = []

    def send(self, detail: dict[str, Any]) -> list[str]:
        """Send the lesson of a ``lesson`` event's ``detail`` to every robot it concerns whose
        gateway is connected; the robots it went to."""
        lesson_id = str(detail["lesson"])
        kind = str(detail.get("kind", ""))
        pace, grip = advice_for(kind)
        sent: list[str] = []
        missed: list[str] = []
        for robot_id in detail.get("concerns", []):
            routing = self._routing_of(robot_id)
            if routing is None:
                self.counts.not_connected[robot_id] += 1
                missed.append(robot_id)
                continue
            notice = LessonNotice(
                lesson_id=lesson_id,
                robot_id=robot_id,
                kind=kind,
                task=str(detail.get("task", "")),
                summary=str(detail.get("summary", "")),
                robot=str(detail.get("robot", "")),
                manufacturer=str(detail.get("manufacturer", "")),
                advice=LessonAdvice(pace=pace, grip_force_scale=grip),
                step=str(detail.get("step") or ""),
                condition=json.dumps(detail.get("condition", {}), sort_keys=True),
            )
            try:
                self._socket.send_multipart([routing, LESSON, ENCODER.encode(notice)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the gateway went away since its last hello
                log.warning("lesson %s: could not send to %s: %s", lesson_id, robot_id, exc)
                self.counts.not_connected[robot_id] += 1
                missed.append(robot_id)
                continue
            self.counts.sent[robot_id] += 1
            self._waiting[(lesson_id, robot_id)] = _Sent(lesson_id, robot_id, time.monotonic_ns())
            sent.append(robot_id)
        self._event(
            "lesson_sent",
            str(detail.get("robot", "")),
            {"lesson": lesson_id, "to": sent, "not_connected": missed},
        )
        return sent

    def on_ack(self, routing: bytes, body: bytes) -> None:
        """A gateway's ``ack`` (raises msgspec errors for a bad body; the gate counts those)."""
        ack = ACK_DECODER.decode(body)
        waiting = self._waiting.get((ack.lesson_id, ack.robot_id))
        if waiting is None or self._routing_of(ack.robot_id) != routing:
            self.counts.unexpected_ack[ack.robot_id[:64]] += 1
            log.warning("command channel: ack of %r for %r matches nothing sent", ack.lesson_id,
                        ack.robot_id[:64])  # fmt: skip
            return
        del self._waiting[(ack.lesson_id, ack.robot_id)]
        now_ns = time.monotonic_ns()
        self.counts.acked[ack.robot_id] += 1
        self.counts.ack_latency_s[ack.robot_id] = round((now_ns - waiting.sent_mono_ns) / 1e9, 4)
        identity = self._identity_of(ack.robot_id) or ("", "")
        if self.store is not None:
            try:
                self.store.acknowledged(
                    ack.lesson_id,
                    Ack(ack.robot_id, identity[0], identity[1], time.time_ns(), ack.applied[:200]),
                )
            except LessonStoreError as exc:
                log.warning("lesson acknowledgements not kept: %s", exc)
                self.store = None
        self._event(
            "lesson_ack",
            ack.robot_id,
            {"lesson": ack.lesson_id, "manufacturer": identity[1], "applied": ack.applied[:200]},
        )

    def _event(self, kind: str, robot_id: str, row: dict[str, Any]) -> None:
        text = json.dumps(row, sort_keys=True)
        self.recent = [*self.recent[-(_RECENT_KEPT - 1) :], {"what": kind, **row}]
        self._note(kind, robot_id, text)

    def status(self) -> dict[str, Any]:
        """The ``lessons`` part of the command channel's status: per robot sent and acked."""
        robots = sorted(set(self.counts.sent) | set(self.counts.not_connected))
        by_robot: dict[str, dict[str, Any]] = {}
        by_manufacturer: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for robot_id in robots:
            row = {
                "sent": self.counts.sent[robot_id],
                "acked": self.counts.acked[robot_id],
                "not_connected": self.counts.not_connected[robot_id],
                "ack_latency_s": self.counts.ack_latency_s.get(robot_id),
            }
            by_robot[robot_id] = row
            identity = self._identity_of(robot_id)
            maker = identity[1] if identity is not None else "?"
            by_manufacturer[maker].update({"sent": row["sent"], "acked": row["acked"]})
        return {
            "sent": sum(self.counts.sent.values()),
            "acked": sum(self.counts.acked.values()),
            "waiting": len(self._waiting),
            "not_connected": sum(self.counts.not_connected.values()),
            "unexpected_acks": sum(self.counts.unexpected_ack.values()),
            "by_robot": by_robot,
            "by_manufacturer": {m: dict(c) for m, c in sorted(by_manufacturer.items())},
            "recent": self.recent[-5:],
        }
