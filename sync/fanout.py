"""The twin-to-viewer side: canonical state messages, and a late-joining client.

The twin publishes on its fan-out socket (PUB)::

    [b"state", msgpack(StateUpdate)]   robots/cranes that changed, at display rate
    [b"event", msgpack(Event)]         liveness changes, epoch changes, bad frames, ...

and answers on its snapshot endpoint (ROUTER; clients use REQ or DEALER)::

    [b"snapshot"] -> [b"snapshot", msgpack(Snapshot)]   full state + its sequence number
    [b"status"]   -> [b"status", JSON]                  what ``twin status`` prints

Every fan-out message carries one global sequence number. A viewer joining late
follows the ZeroMQ Guide's Clone pattern (:class:`CloneClient`): subscribe first, then
ask for a snapshot, then apply only updates newer than the snapshot. A gap in the
sequence (a slow viewer dropped by its high-water mark) triggers a fresh snapshot.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any, Final

import msgspec
import zmq

from sync.addresses import close_quietly

log = logging.getLogger(__name__)

STATE: Final = b"state"
EVENT: Final = b"event"
SNAPSHOT: Final = b"snapshot"
STATUS: Final = b"status"
ERROR: Final = b"error"
_RESYNC_TIMEOUT_S: Final = 0.5


class RobotView(msgspec.Struct):
    """One robot as the twin sees it: canonical joint names, SI units."""

    robot_id: str
    manufacturer: str
    model: str
    task: str
    liveness: str
    stamp_ns: int  # sender's stamp of the newest joint state applied
    epoch: int
    joint_names: list[str]
    positions: list[float]
    velocities: list[float]
    efforts: list[float]
    base_position_m: tuple[float, float, float]
    base_orientation_xyzw: tuple[float, float, float, float]
    mode: str = "unknown"
    estop: bool = False
    protective_stop: bool = False
    in_bytes_per_s: float = 0.0
    in_msgs_per_s: float = 0.0
    out_bytes_per_s: float = 0.0


class CraneView(msgspec.Struct):
    """One crane: hall coordinates in metres (hoist = hook height)."""

    crane_id: str
    liveness: str
    stamp_ns: int
    bridge_m: float
    trolley_m: float
    hoist_m: float
    moving: bool


class StateUpdate(msgspec.Struct):
    """Robots and cranes that changed since the previous update."""

    run_id: int  # random per twin run: a new one means the twin restarted
    seq: int
    stamp_ns: int
    robots: list[RobotView]
    cranes: list[CraneView]


class Event(msgspec.Struct):
    """Something that happened (liveness change, new epoch, refused frame, ...)."""

    run_id: int
    seq: int
    stamp_ns: int
    kind: str
    source_id: str
    detail: str


class Snapshot(msgspec.Struct):
    """The full state at fan-out sequence number ``seq``."""

    run_id: int
    seq: int
    stamp_ns: int
    scene: str
    robots: list[RobotView]
    cranes: list[CraneView]


ENCODER: Final = msgspec.msgpack.Encoder()
_STATE_DECODER: Final = msgspec.msgpack.Decoder(StateUpdate)
_EVENT_DECODER: Final = msgspec.msgpack.Decoder(Event)
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(Snapshot)


class RequestError(RuntimeError):
    """The snapshot/status endpoint did not answer in time, or answered nonsense."""


def request(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, what: bytes, *, timeout_s: float
) -> bytes:
    """Ask the twin's snapshot endpoint one question; returns the reply body."""
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, max(1, int(timeout_s * 1000)))
    socket.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
    try:
        socket.connect(endpoint)
        socket.send(what)
        frames = socket.recv_multipart()
    except zmq.Again:
        raise RequestError(f"no answer from {endpoint} within {timeout_s:g} s") from None
    except zmq.ZMQError as exc:  # e.g. a malformed endpoint
        raise RequestError(f"cannot ask {endpoint!r}: {exc}") from None
    finally:
        close_quietly(socket)
    if len(frames) != 2 or frames[0] != what:
        raise RequestError(f"unexpected reply from {endpoint}: {frames[:1]!r}")
    return frames[1]


def request_status(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, *, timeout_s: float = 2.0
) -> dict[str, Any]:
    """The twin's status (what ``twin status --json`` prints)."""
    body = request(context, endpoint, STATUS, timeout_s=timeout_s)
    status: dict[str, Any] = json.loads(body)
    return status


def request_snapshot(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, *, timeout_s: float = 2.0
) -> Snapshot:
    """The twin's full state now (RequestError when it does not answer in time)."""
    body = request(context, endpoint, SNAPSHOT, timeout_s=timeout_s)
    try:
        return _SNAPSHOT_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RequestError(f"unexpected snapshot from {endpoint}: {exc}") from None


class CloneClient:
    """A read-only replica of the twin's state, kept current from the fan-out.

    Usage: ``client.start()`` (subscribe, then snapshot), then call :meth:`poll`
    regularly. ``robots``/``cranes`` hold the latest views; ``seq`` is the last applied
    fan-out sequence number.
    """

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        fanout: str,
        snapshot: str,
        *,
        events_kept: int = 1000,
    ) -> None:
        self._context = context
        self._snapshot_endpoint = snapshot
        self.robots: dict[str, RobotView] = {}
        self.cranes: dict[str, CraneView] = {}
        self.events: deque[Event] = deque(maxlen=events_kept)
        self.scene = ""
        self.run_id = 0
        self.seq = -1
        self.resyncs = 0
        self.gaps = 0
        self.synced = False
        self._sub = context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 1000)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(fanout)

    def start(self, *, timeout_s: float = 2.0) -> None:
        """Take a snapshot (the subscription is already open, so nothing falls between)."""
        body = request(self._context, self._snapshot_endpoint, SNAPSHOT, timeout_s=timeout_s)
        snap = _SNAPSHOT_DECODER.decode(body)
        self.run_id = snap.run_id
        self.scene = snap.scene
        self.robots = {r.robot_id: r for r in snap.robots}
        self.cranes = {c.crane_id: c for c in snap.cranes}
        self.seq = snap.seq
        self.synced = True

    def _resync(self) -> int:
        self.resyncs += 1
        self.synced = False
        try:
            self.start(timeout_s=_RESYNC_TIMEOUT_S)
        except RequestError as exc:  # the twin is away: keep the last state, retry later
            log.warning("fresh snapshot failed (%s); will retry", exc)
        return 0

    def poll(self, timeout_s: float = 0.0) -> int:
        """Apply every update waiting (waiting up to ``timeout_s`` for the first); returns count."""
        if not self.synced and self.resyncs:
            self._resync()
        applied = 0
        if not self._sub.poll(int(timeout_s * 1000)):
            return 0
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return applied
            applied += self._apply(frames)

    def _apply(self, frames: list[bytes]) -> int:
        if len(frames) != 2:
            return 0
        kind, body = frames
        try:
            message: StateUpdate | Event = (
                _STATE_DECODER.decode(body) if kind == STATE else _EVENT_DECODER.decode(body)
            )
        except msgspec.DecodeError as exc:
            log.warning("ignoring a malformed fan-out message: %s", exc)
            return 0
        if self.synced and message.run_id != self.run_id:
            log.info("the twin restarted; taking a fresh snapshot")
            return self._resync()
        if not self.synced or message.seq <= self.seq:
            return 0  # older than the snapshot: already in it
        if message.seq != self.seq + 1:
            self.gaps += message.seq - self.seq - 1
            log.info("fan-out gap before seq %d; taking a fresh snapshot", message.seq)
            return self._resync()
        self.seq = message.seq
        if isinstance(message, StateUpdate):
            for robot in message.robots:
                self.robots[robot.robot_id] = robot
            for crane in message.cranes:
                self.cranes[crane.crane_id] = crane
        else:
            self.events.append(message)
        return 1

    def wait_until(self, predicate: Any, *, timeout_s: float) -> bool:
        """Poll until ``predicate(self)`` is true or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if predicate(self):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(remaining, 0.05))

    def close(self) -> None:
        """Close the subscription."""
        close_quietly(self._sub)
