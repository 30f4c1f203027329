"""The dispatch gate: the twin decides which task may reach which robot, and sends it.

``twin live --keys DIR`` adds a :class:`DispatchGate` to the mirror. It binds two CurveZMQ
servers behind a ZAP authenticator (:mod:`sync.command`): the command channel, where robot
gateways connect (DEALER, routing id = robot id, gateway key) and say hello, and the control
endpoint, where ``twin dispatch`` (operator key) asks for a dispatch. Without keys there is
no gate and neither socket exists; viewers' endpoints (fan-out, snapshot/status) never
carry commands.

A dispatch request is checked against the twin's own state, in order, and refused naming
the first condition that fails (:mod:`twin.dispatch.checks`); nothing is sent unless all
pass. Then the compiled plan goes to the robot's gateway and the gate waits for its answer:
``accept``/``reject``, later ``done``/``failed``. Every request, refusal, send and answer
is an event (log, fan-out, the recording through :attr:`DispatchGate.listeners`) and is
counted in ``twin status``.

The gate runs inside the mirror's single thread (the mirror polls its sockets); compiling a
plan happens there too, so it holds the loop for as long as compiling takes.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import zmq

from sync.command import (
    ACK,
    ANSWER,
    ANSWER_DECODER,
    DISPATCH,
    ENCODER,
    HELLO,
    HELLO_DECODER,
    HELLO_PERIOD_S,
    OUTCOME,
    REQUEST_DECODER,
    Command,
    CommandAuth,
    DispatchOutcome,
    DispatchRequest,
    Outcome,
    curve_server,
    peer_key,
)
from sync.keys import GATEWAYS, OPERATORS, SHARED_GATEWAY_KEY, server_keys
from sync.protocol import Kind, Received
from twin.dispatch.checks import SILENCE_TOLERANCE_S, Refusal, check_request
from twin.dispatch.courier import LessonCourier
from twin.failures.events import FailureEvent
from twin.lessons.store import Lesson, LessonStore, LessonStoreError
from twin.plan.model import TaskPlan

if TYPE_CHECKING:
    from twin.live.mirror import Mirror

log = logging.getLogger(__name__)

GATEWAY_TIMEOUT_S: Final = 3 * HELLO_PERIOD_S
RUN_MARGIN_S: Final = 60.0
"""A dispatch not done this long after its plan should have ended is given up (robot freed)."""
_RECENT_KEPT: Final = 50

Listener = Callable[[str, str, str, int], None]
"""(kind, source id, detail, stamp_ns): what :meth:`twin.record.recorder.Recorder.event` takes."""


class GateError(RuntimeError):
    """The gate cannot start (said why, in one line)."""


@dataclass
class Pending:
    """A dispatch sent to a gateway and not finished."""

    dispatch_id: str
    robot_id: str
    task_name: str
    duration_s: float
    reply_to: list[bytes] | None  # the operator's envelope while it waits for an answer
    wait: bool
    reply_by_ns: int  # monotonic: answer the operator by then (timeout)
    give_up_ns: int  # monotonic: forget the dispatch by then
    accepted: bool = False


@dataclass
class GatewaySeen:
    """A gateway on the command channel: which key it used, when it last said hello, and the
    routing id ZeroMQ gave that connection (commands go there, and only its answers count)."""

    key_name: str
    last_hello_ns: int
    routing: bytes
    hellos: int = 0


@dataclass
class _Counts:
    by_outcome: Counter[str] = field(default_factory=Counter)
    refused_by: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


class DispatchGate:
    """The twin's command channel and dispatch control (see the module docstring)."""

    def __init__(self, mirror: Mirror, key_dir: Path, command: str, control: str) -> None:
        self.mirror = mirror
        self.lesson_store: LessonStore | None = None
        """The twin's lessons (``twin live`` sets it): a preview that did not run the task under
        one that concerns it (older than it, or not checking it in this database) is refused."""
        self.listeners: list[Listener] = []
        self.requests = 0
        self.sent = 0
        self.counts = _Counts()
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT_KEPT)
        self.gateways: dict[str, GatewaySeen] = {}
        self.pending: dict[str, Pending] = {}
        self._heartbeat_ns: dict[str, int] = {}
        self._divergence_ns: dict[str, int] = {}
        self._joints_ns: dict[str, int] = {}  # robot -> arrival of its newest joint state
        self._long_gap_ns: dict[str, int] = {}  # robot -> end of its newest long gap
        context = mirror.context
        self.auth = CommandAuth(context, key_dir)  # KeyDirError for a bad directory
        keys = server_keys(key_dir)
        self.auth.start()
        self._command = context.socket(zmq.ROUTER)
        self._control = context.socket(zmq.ROUTER)
        try:
            curve_server(self._command, keys, GATEWAYS)
            self._command.setsockopt(zmq.ROUTER_MANDATORY, 1)
            curve_server(self._control, keys, OPERATORS)
            if not self.auth.is_alive():  # fail closed: never a CURVE server without ZAP
                raise GateError("the ZAP authenticator is not running")
            self.command_endpoint = _bind(self._command, command, "command")
            self.control_endpoint = _bind(self._control, control, "control")
        except BaseException:
            self.close()
            raise
        mirror.on_failure.append(self._on_failure)
        mirror.sinks.append(self._on_received)
        self.courier = LessonCourier(self._command, self._routing_of, self._identity_of,
                                     self._lesson_note)  # fmt: skip
        """Lessons to the gateways of the robots they concern (``twin live`` hands them)."""

    @property
    def sockets(self) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """(command, control): the mirror polls both."""
        return self._command, self._control

    def close(self) -> None:
        for socket in (self._command, self._control):
            socket.close(linger=0)
        self.auth.stop()

    # -- what the gate learns from the mirror -----------------------------------

    def _on_failure(self, failure: FailureEvent) -> None:
        if failure.kind == "divergence":
            self._divergence_ns[failure.robot_id] = time.monotonic_ns()

    def _on_received(self, record: Received) -> None:
        kind = record.header.kind
        if kind == Kind.JOINT_STATE:
            now = time.monotonic_ns()
            before = self._joints_ns.get(record.source_id)
            if before is None or now - before > SILENCE_TOLERANCE_S * 1e9:
                self._long_gap_ns[record.source_id] = now
            self._joints_ns[record.source_id] = now
        elif kind == Kind.HEARTBEAT:
            self._heartbeat_ns[record.source_id] = time.monotonic_ns()

    # -- events -----------------------------------------------------------------

    def _note(self, what: str, robot_id: str, **detail: Any) -> None:
        """One dispatch event: log, fan-out + event list (the mirror), recording, status."""
        row = {"what": what, "robot": robot_id, **detail}
        text = json.dumps(row, sort_keys=True)
        self.recent.append({"stamp_ns": time.time_ns(), **row})
        self.mirror.event("dispatch", robot_id, text)
        stamp_ns = time.time_ns()
        for listener in self.listeners:
            listener("dispatch", robot_id, text, stamp_ns)

    def _lesson_note(self, kind: str, robot_id: str, text: str) -> None:
        self.mirror.event(kind, robot_id, text)
        stamp_ns = time.time_ns()
        for listener in self.listeners:
            listener(kind, robot_id, text, stamp_ns)

    def _routing_of(self, robot_id: str) -> bytes | None:
        """The routing id of the robot's gateway if it is connected now, else None."""
        seen = self.gateways.get(robot_id)
        if seen is None or time.monotonic_ns() - seen.last_hello_ns > GATEWAY_TIMEOUT_S * 1e9:
            return None
        return seen.routing

    def _identity_of(self, robot_id: str) -> tuple[str, str] | None:
        link = self.mirror.robots.get(robot_id)
        return (link.model.name, link.model.manufacturer) if link is not None else None

    # -- the command channel (gateways) -----------------------------------------

    def serve_command(self) -> None:
        """Handle every waiting message from gateways."""
        while True:
            try:
                frames = self._command.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._gateway_message(frames)
            except Exception:  # a bug here must never end the twin: count it, log it
                self.counts.dropped["internal_error"] += 1
                log.exception("command channel: a gateway message could not be handled")

    def _gateway_message(self, frames: list[zmq.Frame]) -> None:
        key = peer_key(frames[-1])
        key_name = self.auth.gateways.get(key) if key is not None else None
        if key_name is None:  # no ZAP-approved key on this connection: fail closed
            self.counts.dropped["unauthenticated"] += 1
            log.warning("command channel: message without an allowed key dropped")
            return
        routing = frames[0].bytes
        routing_id = routing.hex()
        if len(frames) != 3:
            self.counts.dropped["bad_framing"] += 1
            return
        kind, body = frames[1].bytes, frames[2].bytes
        try:
            if kind == HELLO:
                hello = HELLO_DECODER.decode(body)
                self._hello(routing, hello.robot_id, key_name)
            elif kind == ANSWER:
                answer = ANSWER_DECODER.decode(body)
                self._answer(routing, answer.dispatch_id, answer.status, answer.reason)
            elif kind == ACK:
                self.courier.on_ack(routing, body)
            else:
                self.counts.dropped["unknown_kind"] += 1
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counts.dropped["bad_payload"] += 1
            log.warning("command channel: bad %r from %r: %s", kind[:16], routing_id, exc)

    def _hello(self, routing: bytes, robot_id: str, key_name: str) -> None:
        """A gateway says which robot it speaks for; its key must be that robot's or the shared
        gateway key. The connection's routing id (ZeroMQ's, not the peer's choice: gateways
        set none) becomes where that robot's commands go."""
        if robot_id not in self.mirror.robots:
            self.counts.dropped["unknown_robot"] += 1
            log.warning("command channel: hello as %r: no such robot", robot_id)
            return
        if key_name not in (robot_id, SHARED_GATEWAY_KEY):
            self.counts.dropped["wrong_key"] += 1
            log.warning("command channel: %s said hello with %s's key", robot_id, key_name)
            return
        seen = self.gateways.get(robot_id)
        now = time.monotonic_ns()
        stale = seen is None or now - seen.last_hello_ns > GATEWAY_TIMEOUT_S * 1e9
        if seen is None or stale or seen.routing != routing:
            self._note("gateway", robot_id, key=key_name)
            seen = self.gateways[robot_id] = GatewaySeen(key_name, now, routing)
        seen.last_hello_ns = now
        seen.hellos += 1

    def _answer(self, routing: bytes, dispatch_id: str, status: str, reason: str) -> None:
        pending = self.pending.get(dispatch_id)
        seen = self.gateways.get(pending.robot_id) if pending is not None else None
        if pending is None or seen is None or seen.routing != routing:
            self.counts.dropped["unknown_dispatch"] += 1
            log.warning("command channel: answer to unknown dispatch %r dropped", dispatch_id)
            return
        routing_id = pending.robot_id
        self._note("answer", routing_id, id=dispatch_id, status=status, reason=reason)
        if status == "accept":
            pending.accepted = True
            self.counts.by_outcome["accepted"] += 1
            if not pending.wait:
                self._reply(pending, "accepted", f"{routing_id} accepted {pending.task_name}")
            return
        outcome: Outcome = {"reject": "rejected", "done": "done"}.get(status, "failed")  # type: ignore[assignment]
        self.counts.by_outcome[outcome] += 1
        del self.pending[dispatch_id]
        detail = f"{routing_id} {outcome} {pending.task_name}" + (f": {reason}" if reason else "")
        self._reply(pending, outcome, detail)

    # -- the control endpoint (operators) ---------------------------------------

    def serve_control(self) -> None:
        """Handle every waiting dispatch request."""
        while True:
            try:
                frames = self._control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            key = peer_key(frames[-1])
            if key is None or key not in self.auth.operators:
                self.counts.dropped["unauthenticated"] += 1
                log.warning("control: request without an allowed key dropped")
                continue
            envelope = [f.bytes for f in frames[:2]]
            if len(frames) != 4 or frames[1].bytes != b"" or frames[2].bytes != DISPATCH:
                self.counts.dropped["bad_request"] += 1
                self._send_outcome(
                    envelope, DispatchOutcome("error", "expected a dispatch request")
                )
                continue
            try:
                request = REQUEST_DECODER.decode(frames[3].bytes)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.counts.dropped["bad_request"] += 1
                self._send_outcome(envelope, DispatchOutcome("error", f"bad request: {exc}"))
                continue
            try:
                self._dispatch(request, envelope, self.auth.operators[key])
            except Exception as exc:  # a bug here must never end the twin
                self.counts.dropped["internal_error"] += 1
                log.exception("control: a dispatch request could not be handled")
                self._send_outcome(envelope, DispatchOutcome("error", f"internal error: {exc}"))

    def _dispatch(self, request: DispatchRequest, envelope: list[bytes], operator: str) -> None:
        robot_id = request.robot_id
        self.requests += 1
        self._note("request", robot_id, task=request.task_path, operator=operator)
        checked = self.check(request)
        if isinstance(checked, Refusal):
            self.counts.by_outcome["refused"] += 1
            self.counts.refused_by[checked.condition] += 1
            self._note("refused", robot_id, condition=checked.condition, detail=checked.detail)
            self._send_outcome(
                envelope,
                DispatchOutcome("refused", checked.detail, checked.condition, robot_id=robot_id),
            )
            return
        task_name, digest, plan = checked
        dispatch_id = f"D{secrets.token_hex(4)}"
        command = Command(
            dispatch_id, robot_id, task_name, digest, msgspec.Raw(ENCODER.encode(plan))
        )
        try:
            self._command.send_multipart(
                [self.gateways[robot_id].routing, DISPATCH, ENCODER.encode(command)], zmq.NOBLOCK
            )
        except zmq.ZMQError as exc:  # the gateway went away since its last hello
            self.counts.by_outcome["failed"] += 1
            self._note("failed", robot_id, id=dispatch_id, detail=f"send failed: {exc}")
            self._send_outcome(
                envelope,
                DispatchOutcome("failed", f"could not send to {robot_id}'s gateway: {exc}",
                                "gateway", dispatch_id, robot_id),
            )  # fmt: skip
            return
        self.sent += 1
        now = time.monotonic_ns()
        self.pending[dispatch_id] = Pending(
            dispatch_id, robot_id, task_name, plan.duration_s, envelope, request.wait,
            reply_by_ns=now + int(max(0.1, request.timeout_s) * 1e9),
            give_up_ns=now + int((plan.duration_s + RUN_MARGIN_S) * 1e9),
        )  # fmt: skip
        self._note("sent", robot_id, id=dispatch_id, task=task_name, sha256=digest,
                   duration_s=round(plan.duration_s, 3))  # fmt: skip
        # the plan itself goes to the recording only (a dataset export's commanded targets),
        # not to the fan-out: viewers need the event, not kilobytes of keyframes
        plan_text = msgspec.json.encode({"id": dispatch_id, "plan": plan}).decode()
        stamp_ns = time.time_ns()
        for listener in self.listeners:
            listener("plan", robot_id, plan_text, stamp_ns)

    def check(self, request: DispatchRequest) -> Refusal | tuple[str, str, TaskPlan]:
        """Every gate condition in order: the first refusal, or (task name, sha256, plan)."""
        lessons = self._lessons()
        checked = check_request(
            request,
            self.mirror,
            heartbeat_ns=self._heartbeat_ns,
            divergence_ns=self._divergence_ns,
            long_gap_ns=self._long_gap_ns,
            lessons=lessons,
            lessons_database=self.lesson_store.path if self.lesson_store is not None else None,
        )
        if isinstance(checked, Refusal):
            return checked
        robot_id = request.robot_id
        seen = self.gateways.get(robot_id)
        if seen is None or time.monotonic_ns() - seen.last_hello_ns > GATEWAY_TIMEOUT_S * 1e9:
            return Refusal(
                "gateway", f"{robot_id}'s gateway is not connected to the command channel"
            )
        busy = [p for p in self.pending.values() if p.robot_id == robot_id]
        if busy:
            return Refusal("busy", f"{robot_id} is still running dispatch {busy[0].dispatch_id}")
        return checked

    # -- replies and time -------------------------------------------------------

    def _reply(self, pending: Pending, outcome: Outcome, detail: str) -> None:
        if pending.reply_to is None:
            return
        self._send_outcome(
            pending.reply_to,
            DispatchOutcome(outcome, detail, "", pending.dispatch_id, pending.robot_id),
        )
        pending.reply_to = None

    def _send_outcome(self, envelope: list[bytes], outcome: DispatchOutcome) -> None:
        try:
            self._control.send_multipart([*envelope, OUTCOME, ENCODER.encode(outcome)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the operator went away
            log.debug("could not answer a dispatch request: %s", exc)

    def _lessons(self) -> list[Lesson]:
        """The lessons now; none when the database fails (said once, the gate goes on)."""
        if self.lesson_store is None:
            return []
        try:
            return self.lesson_store.lessons()
        except LessonStoreError as exc:
            log.warning("dispatch gate: lessons not checked: %s", exc)
            self.lesson_store = None
            return []

    def expire(self, now_mono_ns: int) -> None:
        """Answer operators whose wait timed out; forget dispatches long overdue; take a
        changed key directory (a deleted key stops, an added one works: no restart)."""
        if self.auth.reload_if_changed(now_mono_ns):
            self._forget_revoked_gateways()
        for dispatch_id, pending in list(self.pending.items()):
            if pending.reply_to is not None and now_mono_ns >= pending.reply_by_ns:
                what = "done" if pending.accepted else "an answer"
                self.counts.by_outcome["timeout"] += 1
                self._note("timeout", pending.robot_id, id=dispatch_id, waited_for=what)
                self._reply(pending, "timeout", f"no {what} from {pending.robot_id} in time")
            if now_mono_ns >= pending.give_up_ns:
                self._note("given_up", pending.robot_id, id=dispatch_id)
                del self.pending[dispatch_id]

    def _forget_revoked_gateways(self) -> None:
        """A gateway whose key is gone gets no more commands (its hellos are dropped too)."""
        allowed = set(self.auth.gateways.values())
        for robot_id, seen in list(self.gateways.items()):
            if seen.key_name not in allowed:
                del self.gateways[robot_id]
                self._note("gateway_revoked", robot_id, key=seen.key_name)

    def status(self) -> dict[str, Any]:
        """The ``dispatch`` part of ``twin status``."""
        now = time.monotonic_ns()
        return {
            "command": self.command_endpoint,
            "control": self.control_endpoint,
            "requests": self.requests,
            "sent": self.sent,
            "outcomes": dict(self.counts.by_outcome),
            "refused_by": dict(self.counts.refused_by),
            "dropped": dict(self.counts.dropped),
            # the key names allowed now, and how often the key directory was read again
            "keys": {
                "operators": sorted(set(self.auth.operators.values())),
                "gateways": sorted(set(self.auth.gateways.values())),
                "reloads": self.auth.reloads,
            },
            "gateways": {
                robot: {
                    "key": g.key_name,
                    "hellos": g.hellos,
                    "last_hello_s_ago": round((now - g.last_hello_ns) / 1e9, 3),
                }
                for robot, g in sorted(self.gateways.items())
            },
            "running": sorted(p.dispatch_id for p in self.pending.values() if p.accepted),
            # robot -> seconds since its newest divergence event (the in_sync condition)
            "diverged_s_ago": {
                robot: round((now - ns) / 1e9, 3)
                for robot, ns in sorted(self._divergence_ns.items())
            },
            "recent": list(self.recent)[-10:],
            "lessons": self.courier.status(),
        }


def _bind(socket: zmq.Socket[bytes], endpoint: str, what: str) -> str:
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(f"cannot bind the {what} socket to {endpoint}: {exc}") from None
    bound = socket.getsockopt(zmq.LAST_ENDPOINT)
    return bound.decode() if isinstance(bound, bytes) else str(bound)
