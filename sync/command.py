"""The command channel and the dispatch control endpoint: messages and CURVE sockets.

Two endpoints of the twin exist only when it runs with a key directory (``twin live
--keys DIR``), both CurveZMQ servers behind one ZAP authenticator:

* the **command channel** (ROUTER, ``:7701``, ZAP domain ``gateways``): each robot gateway
  connects a DEALER whose routing id is its robot id, with a gateway key, and says
  ``hello`` once a second; the twin sends ``dispatch`` commands, the gateway ``answer``\\ s
  (accept, reject, then done or failed); the twin also sends ``lesson`` notices (what another
  robot's failure taught, and how to act on it), which the gateway acknowledges (``ack``);
* the **control endpoint** (ROUTER, ``:7704``, ZAP domain ``operators``): ``twin dispatch``
  (REQ, operator key) sends a ``dispatch`` request with the task file's bytes and gets one
  ``outcome``.

Frames are ``[kind, msgpack body]``. The plan inside a command is the twin's ``TaskPlan``
(``twin/plan/model.py``) as a nested MessagePack map, carried here as raw bytes so this
layer does not depend on the twin. See docs/protocol.md, "Command channel".

Failing closed: the authenticator runs before any CURVE server socket is bound
(:class:`CommandAuth`), it allows only the public keys listed in the key directory, and
:func:`peer_key` lets the receiver drop any message whose connection carries no
authenticated key (the case if ZAP were somehow absent: libzmq then lets every CURVE
client in).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
import zmq
from zmq.auth.thread import ThreadAuthenticator

from sync.addresses import MAX_MESSAGE_BYTES
from sync.keys import GATEWAYS, OPERATORS, KeyDirError, KeyPair, allowed_keys, check_key_dir

MAX_TIMEOUT_S: Final = 3600.0
"""The longest an operator may ask the twin to wait for an answer."""

log = logging.getLogger(__name__)

HELLO: Final = b"hello"
DISPATCH: Final = b"dispatch"
ANSWER: Final = b"answer"
OUTCOME: Final = b"outcome"
LESSON: Final = b"lesson"
ACK: Final = b"ack"
RELOAD_EVERY_NS: Final = 1_000_000_000
"""The key directories are looked at (two ``stat`` calls) at most this often."""
HELLO_PERIOD_S: Final = 1.0
"""A gateway says hello this often; the twin forgets a gateway silent for 3 periods."""

AnswerStatus = Literal["accept", "reject", "done", "failed"]
Outcome = Literal["accepted", "done", "refused", "rejected", "failed", "timeout", "error"]


class Hello(msgspec.Struct, frozen=True):
    """Gateway -> twin, once a second: I am this robot's gateway, I take commands."""

    robot_id: str


class Command(msgspec.Struct, frozen=True):
    """Twin -> gateway: execute this plan (``plan``: a TaskPlan as MessagePack)."""

    dispatch_id: str
    robot_id: str
    task_name: str
    task_sha256: str
    plan: msgspec.Raw


class Answer(msgspec.Struct, frozen=True):
    """Gateway -> twin: ``accept`` or ``reject`` (with a reason) on receipt; later ``done``
    (the plan ran to its end) or ``failed`` (stopped before its end, with a reason)."""

    dispatch_id: str
    status: AnswerStatus
    reason: str = ""


class LessonAdvice(msgspec.Struct, frozen=True):
    """How a gateway should act on a lesson: move its task at ``pace`` (0 < pace <= 1, of
    the nominal speed) and, where it grips, grip with ``grip_force_scale`` times its nominal
    force. A gateway may do more or less; its ``ack`` says what it did."""

    pace: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    grip_force_scale: Annotated[float, msgspec.Meta(ge=1, le=4)] = 1.0


class LessonNotice(msgspec.Struct, frozen=True):
    """Twin -> gateway: a lesson that concerns this robot's task, learnt from ``robot`` (which
    may be another manufacturer's). ``step``: the task step it happened in, "" when unknown;
    ``condition``: the reproducible condition (JSON text) a preview runs."""

    lesson_id: str
    robot_id: str
    kind: str
    task: str
    summary: str
    robot: str
    manufacturer: str
    advice: LessonAdvice
    step: str = ""
    condition: str = "{}"


class LessonAck(msgspec.Struct, frozen=True):
    """Gateway -> twin: the lesson was received; ``applied`` says what the robot now does
    differently ("" for nothing)."""

    lesson_id: str
    robot_id: str
    applied: str = ""


class DispatchRequest(msgspec.Struct, frozen=True):
    """Operator -> twin: dispatch this task file (its exact bytes) to this robot.

    ``wait``: answer only when the robot is done (or failed); ``timeout_s``: how long the twin
    may take to answer (the operator waits a little longer)."""

    task_path: str
    task_text: bytes
    robot_id: str
    wait: bool = False
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] = 10.0


class DispatchOutcome(msgspec.Struct, frozen=True):
    """Twin -> operator. ``condition`` names the gate condition that refused (``task``,
    ``robot``, ``preview``, ``live``, ``in_sync``, ``stop``, ``plan``, ``gateway``, ``busy``),
    or is empty."""

    outcome: Outcome
    detail: str
    condition: str = ""
    dispatch_id: str = ""
    robot_id: str = ""


ENCODER: Final = msgspec.msgpack.Encoder()
HELLO_DECODER: Final = msgspec.msgpack.Decoder(Hello)
COMMAND_DECODER: Final = msgspec.msgpack.Decoder(Command)
ANSWER_DECODER: Final = msgspec.msgpack.Decoder(Answer)
REQUEST_DECODER: Final = msgspec.msgpack.Decoder(DispatchRequest)
OUTCOME_DECODER: Final = msgspec.msgpack.Decoder(DispatchOutcome)
LESSON_DECODER: Final = msgspec.msgpack.Decoder(LessonNotice)
ACK_DECODER: Final = msgspec.msgpack.Decoder(LessonAck)


def curve_server(socket: zmq.Socket[bytes], keys: KeyPair, domain: str) -> None:
    """Make ``socket`` a CURVE server in a ZAP domain (before it binds)."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    socket.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    socket.setsockopt(zmq.CURVE_SERVER, 1)


def curve_client(socket: zmq.Socket[bytes], keys: KeyPair, server_public: bytes) -> None:
    """Make ``socket`` a CURVE client of the server with ``server_public`` (before it connects)."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    socket.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def peer_key(frame: zmq.Frame) -> bytes | None:
    """The authenticated public key (z85) of the connection a frame came in on, or None.

    The ZAP handler (pyzmq's authenticator) names each CURVE client by its z85 public key
    (``User-Id``); a connection never authenticated by ZAP has none.
    """
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    if not user or not isinstance(user, str):
        return None
    return user.encode("ascii", "replace")


class CommandAuth:
    """The ZAP authenticator of one twin: gateways' and operators' keys from ``root``.

    ``start`` raises :class:`sync.keys.KeyDirError` for a bad directory and RuntimeError if
    the authenticator does not come up; the caller binds its CURVE sockets only afterwards.

    The allow-lists are read again when ``gateways/`` or ``operators/`` change
    (:meth:`reload_if_changed`, at most one look a second): a deleted key file stops that
    key without a restart (new connections fail the handshake, and the gate drops what an
    open connection still sends), an added one starts working. A list that can no longer be
    read (a junk ``*.key``, none left) allows nobody in that role until it is fixed.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], root: Path) -> None:
        check_key_dir(root)
        self.root = root
        self.gateways = allowed_keys(root, GATEWAYS)
        self.operators = allowed_keys(root, OPERATORS)
        self.reloads = 0
        self._stamp = self._mtimes()
        self._checked_ns = 0
        self._auth = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))

    def start(self) -> None:
        self._auth.start()
        if not self._auth.is_alive():
            raise RuntimeError("the ZAP authenticator did not start; no command channel")
        # a credentials provider (:meth:`callback`), not pyzmq's certificate directory: the
        # lists live here, so a reload changes what ZAP allows and what the gate accepts at once
        for domain in (GATEWAYS, OPERATORS):
            self._auth.configure_curve_callback(domain, credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: a CURVE client with this z85 public key may connect in ``domain``."""
        if domain == GATEWAYS:
            return key in self.gateways
        if domain == OPERATORS:
            return key in self.operators
        return False

    def _mtimes(self) -> tuple[int, int]:
        stamps = []
        for role in (GATEWAYS, OPERATORS):
            try:
                stamps.append((self.root / role).stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        return stamps[0], stamps[1]

    def reload(self) -> None:
        """Read both allow-lists again (a role whose list is unusable allows nobody)."""
        self._stamp = self._mtimes()
        lists: list[dict[bytes, str]] = []
        for role in (GATEWAYS, OPERATORS):
            try:
                lists.append(allowed_keys(self.root, role))
            except (KeyDirError, OSError) as exc:
                log.warning("command keys: %s; no %s key is allowed until it is fixed", exc, role)
                lists.append({})
        self.gateways, self.operators = lists  # each a whole new dict: ZAP reads them unlocked
        self.reloads += 1
        log.info("command keys read again: %d gateway, %d operator", len(lists[0]), len(lists[1]))

    def reload_if_changed(self, now_ns: int) -> bool:
        """Look at most once a second whether a key directory changed; if so, read both again.
        True when it did."""
        if now_ns - self._checked_ns < RELOAD_EVERY_NS:
            return False
        self._checked_ns = now_ns
        if self._mtimes() == self._stamp:
            return False
        self.reload()
        return True

    def is_alive(self) -> bool:
        return self._auth.is_alive()

    def stop(self) -> None:
        self._auth.stop()
