"""The emulated gateways' side of the command channel: hello, receive, check, run, answer.

Each robot's gateway connects a DEALER to the twin's command channel with its robot id as
routing id and its gateway key (CurveZMQ client; :mod:`sync.command`), says hello once a
second, and takes ``dispatch`` commands. Like a real gateway it trusts nothing it receives:
a command for another robot, a plan that does not decode, names unknown joints, holds NaN
or targets beyond the joint limits (:func:`twin.plan.checks.plan_problems`), or arrives
while the robot is stopped, fallen or busy, is rejected with the reason. An accepted plan
runs in the emulator's physics (:meth:`EmulatedHall.follow_plan`); its end is answered
``done``; a fall or an e-stop on the way ``failed``.

A ``lesson`` notice (another robot's failure, shared by the twin) is acted on as documented
in docs/protocol.md: the robot's task loop slows to the advised pace (80 % after a dropped
grasp, 70 % after a fall) and its grippers take the advised force, from then on; the gateway
answers ``ack`` with what it changed, and its heartbeats list the lessons it acts on.

Counts per robot (``received``, ``accepted``, ``rejected``, ``done``, ``failed``, ``lessons``)
appear in the emulator's ``--stats``: what actually reached each gateway.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
import zmq

from robots import RobotModel
from scenes.model import Scene
from sync.command import (
    ACK,
    ANSWER,
    COMMAND_DECODER,
    DISPATCH,
    ENCODER,
    HELLO,
    HELLO_PERIOD_S,
    LESSON,
    LESSON_DECODER,
    Answer,
    AnswerStatus,
    Hello,
    LessonAck,
    curve_client,
)
from sync.keys import gateway_keys, server_public_key
from twin.emulator.physics import EmulatedHall
from twin.plan.checks import plan_problems
from twin.plan.model import TaskPlan

log = logging.getLogger(__name__)

COMMAND_SNDHWM: Final = 100
_PLAN_DECODER: Final = msgspec.msgpack.Decoder(TaskPlan)


@dataclass
class CommandLink:
    """One robot gateway's DEALER on the twin's command channel."""

    robot_id: str
    model: RobotModel
    socket: zmq.Socket[bytes]
    next_hello_ns: int = 0
    running: str | None = None  # the dispatch id being executed
    counts: Counter[str] = field(default_factory=Counter)

    def send(self, kind: bytes, body: bytes) -> None:
        try:
            self.socket.send_multipart([kind, body], zmq.NOBLOCK)
        except zmq.Again:  # not connected (yet): the twin hears the next hello
            log.debug("%s: command channel not ready", self.robot_id)

    def answer(self, dispatch_id: str, status: AnswerStatus, reason: str = "") -> None:
        self.counts[{"accept": "accepted", "reject": "rejected"}.get(status, status)] += 1
        log.info("%s: dispatch %s %s %s", self.robot_id, dispatch_id, status, reason)
        self.send(ANSWER, ENCODER.encode(Answer(dispatch_id, status, reason)))


class CommandDesk:
    """Every emulated gateway's command link (see the module docstring)."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        keys: Path,
        scene: Scene,
        models: dict[str, RobotModel],
    ) -> None:
        """Raises :class:`sync.keys.KeyDirError` for missing or unreadable keys."""
        self.scene = scene
        self.links: dict[str, CommandLink] = {}
        server = server_public_key(keys)
        try:
            for robot_id, model in models.items():
                socket = context.socket(zmq.DEALER)
                self.links[robot_id] = CommandLink(robot_id, model, socket)
                socket.setsockopt(zmq.SNDHWM, COMMAND_SNDHWM)
                curve_client(socket, gateway_keys(keys, robot_id), server)
                socket.connect(endpoint)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for link in self.links.values():
            link.socket.close(linger=0)

    def poll(self, hall: EmulatedHall, stopped: dict[str, str]) -> None:
        """Say hello when due, take waiting commands, report finished plans. ``stopped``:
        robot -> why it cannot take commands now (e-stop, fallen)."""
        now = time.monotonic_ns()
        for robot_id, link in self.links.items():
            if now >= link.next_hello_ns:
                link.next_hello_ns = now + int(HELLO_PERIOD_S * 1e9)
                link.send(HELLO, ENCODER.encode(Hello(robot_id)))
            while link.socket.poll(0, zmq.POLLIN):
                frames = link.socket.recv_multipart()
                self._command(hall, link, frames, stopped.get(robot_id))
            if link.running is not None:
                why = stopped.get(robot_id)
                if why is not None:
                    hall.stop_plan(robot_id)
                    link.answer(link.running, "failed", why)
                    link.running = None
                elif not hall.following(robot_id):
                    link.answer(link.running, "done")
                    link.running = None

    def _command(
        self, hall: EmulatedHall, link: CommandLink, frames: list[bytes], stopped: str | None
    ) -> None:
        link.counts["received"] += 1
        if len(frames) == 2 and frames[0] == LESSON:
            self._lesson(hall, link, frames[1])
            return
        if len(frames) != 2 or frames[0] != DISPATCH:
            log.warning("%s: not a dispatch command (%d frames)", link.robot_id, len(frames))
            return
        try:
            command = COMMAND_DECODER.decode(frames[1])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s: undecodable command: %s", link.robot_id, exc)
            return
        reason = self.refusal(link, command.robot_id, bytes(command.plan), stopped)
        if reason is not None:
            link.answer(command.dispatch_id, "reject", reason)
            return
        plan = _PLAN_DECODER.decode(bytes(command.plan))
        hall.follow_plan(link.robot_id, plan)
        link.running = command.dispatch_id
        link.answer(command.dispatch_id, "accept")

    def _lesson(self, hall: EmulatedHall, link: CommandLink, body: bytes) -> None:
        """Act on a lesson for this robot and acknowledge it with what changed."""
        try:
            notice = LESSON_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s: undecodable lesson: %s", link.robot_id, exc)
            return
        if notice.robot_id != link.robot_id:
            log.warning("%s: lesson for %s ignored", link.robot_id, notice.robot_id)
            return
        applied = hall.take_lesson(
            link.robot_id, notice.lesson_id, notice.advice.pace, notice.advice.grip_force_scale
        )
        link.counts["lessons"] += 1
        log.info("%s: lesson %s (%s by %s): %s", link.robot_id, notice.lesson_id, notice.kind,
                 notice.robot, applied)  # fmt: skip
        link.send(ACK, ENCODER.encode(LessonAck(notice.lesson_id, link.robot_id, applied)))

    def refusal(
        self, link: CommandLink, robot_id: str, plan_bytes: bytes, stopped: str | None
    ) -> str | None:
        """Why this gateway rejects a command (None: it accepts)."""
        if robot_id != link.robot_id:
            return f"command for {robot_id}, this is {link.robot_id}'s gateway"
        if stopped is not None:
            return stopped
        if link.running is not None:
            return f"busy with dispatch {link.running}"
        try:
            plan = _PLAN_DECODER.decode(plan_bytes)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return f"plan does not decode: {exc}"
        if plan.robot != link.robot_id:
            return f"plan is for {plan.robot}"
        problems = plan_problems(plan, link.model, self.scene)
        if problems:
            return "; ".join(problems[:3])
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Per robot: commands received, accepted, rejected, done, failed; lessons taken."""
        keys = ("received", "accepted", "rejected", "done", "failed", "lessons")
        return {r: {k: link.counts[k] for k in keys} for r, link in self.links.items()}
