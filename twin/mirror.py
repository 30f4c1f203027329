"""The live mirror: telemetry in, the PyBullet world kept in step, state out to viewers.

One thread, one loop (:meth:`Mirror.run`): it drains the ingest socket, answers
snapshot/status requests, and on every tick (240 Hz by default) applies the newest
state of each robot and crane to the world, updates liveness, and at display rate
publishes what changed to the viewers. A bad frame is counted, logged (rate-limited)
and dropped; it never stops the loop. Every accepted message is handed to the
registered sinks (the recorder plugs in there).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import zmq

from robots import get_model
from robots.bullet import pb
from scenes.model import Scene
from sync.addresses import (
    FANOUT_SNDHWM,
    INGEST_RCVHWM,
    MAX_MESSAGE_BYTES,
    Endpoints,
    close_quietly,
)
from sync.fanout import ENCODER, ERROR, EVENT, SNAPSHOT, STATE, STATUS, Event, Snapshot, StateUpdate
from sync.protocol import (
    BaseState,
    CraneState,
    FrameError,
    Header,
    Heartbeat,
    Kind,
    decode_payload,
    parse_topic,
    unpack_header,
)
from sync.streams import Liveness, SeqVerdict
from twin.crane import CraneLimitError
from twin.links import CraneLink, RobotLink
from twin.world import World

log = logging.getLogger(__name__)

DEFAULT_TICK_HZ: Final = 240.0
DEFAULT_DISPLAY_HZ: Final = 30.0
_DRAIN_BATCH: Final = 2000
_EVENTS_KEPT: Final = 1000
_LOG_EVERY_S: Final = 1.0


@dataclass(frozen=True)
class Received:
    """One accepted telemetry message, as the sinks (recorder) get it."""

    received_ns: int  # receiver's wall clock
    source_id: str
    header: Header
    topic: bytes
    payload: bytes


Sink = Callable[[Received], None]


class Mirror:
    """Mirror a live hall into a PyBullet world; serve viewers and status requests."""

    def __init__(
        self,
        scene: Scene,
        endpoints: Endpoints,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        display_hz: float = DEFAULT_DISPLAY_HZ,
    ) -> None:
        self.scene = scene
        self.endpoints = endpoints
        self.tick_hz = tick_hz
        self.display_hz = display_hz
        self.world = World(scene)
        self.sinks: list[Sink] = []
        self.robots: dict[str, RobotLink] = {}
        for robot in scene.robots:
            handle = self.world.robot(robot.id)
            model = get_model(robot.model)
            position, orientation = self.world.base_pose(robot.id)
            self.robots[robot.id] = RobotLink(
                robot_id=robot.id,
                model=model,
                task=robot.task,
                home_position_m=position,
                home_orientation_xyzw=orientation,
                joint_indices=[handle.joint_index[n] for n in model.profile.joint_names],
            )
        self.cranes = {c.id: CraneLink(c.id) for c in scene.cranes}
        self.bad_frames: Counter[str] = Counter()
        self.unknown_sources: Counter[str] = Counter()
        self.received = 0
        self.accepted = 0
        self.bytes_in = 0
        self.ticks = 0
        self.tick_overruns = 0
        self.fanout_seq = 0
        self.events: deque[Event] = deque(maxlen=_EVENTS_KEPT)
        self._last_log_ns: dict[str, int] = {}
        self._started_mono_ns = time.monotonic_ns()
        self._owns_context = context is None
        self.context = context or zmq.Context()
        self._ingest = self.context.socket(zmq.SUB)
        self._fanout = self.context.socket(zmq.PUB)
        self._router = self.context.socket(zmq.ROUTER)
        try:
            self._ingest.setsockopt(zmq.RCVHWM, INGEST_RCVHWM)
            self._ingest.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            self._ingest.setsockopt(zmq.SUBSCRIBE, b"")
            self._fanout.setsockopt(zmq.SNDHWM, FANOUT_SNDHWM)
            for socket in (self._ingest, self._fanout, self._router):
                socket.setsockopt(zmq.LINGER, 0)
            # the endpoints actually bound ("tcp://127.0.0.1:*" picks a free port)
            self.endpoints = Endpoints(
                ingest=_bind(self._ingest, endpoints.ingest, "ingest"),
                fanout=_bind(self._fanout, endpoints.fanout, "fan-out"),
                snapshot=_bind(self._router, endpoints.snapshot, "snapshot"),
            )
        except BaseException:
            self.close()
            raise

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Close sockets (linger 0) and the world."""
        for socket in (self._ingest, self._fanout, self._router):
            close_quietly(socket)
        if self._owns_context:
            self.context.term()
        self.world.close()

    def run(self, *, stop: threading.Event | None = None, duration_s: float | None = None) -> None:
        """Serve until ``stop`` is set or ``duration_s`` has passed."""
        poller = zmq.Poller()
        poller.register(self._ingest, zmq.POLLIN)
        poller.register(self._router, zmq.POLLIN)
        tick_ns = int(1e9 / self.tick_hz)
        display_every = max(1, round(self.tick_hz / self.display_hz))
        start = time.monotonic_ns()
        end = start + int(duration_s * 1e9) if duration_s is not None else None
        next_tick = start
        while not (stop is not None and stop.is_set()):
            now = time.monotonic_ns()
            if end is not None and now >= end:
                break
            wait_ms = max(0, -(-(next_tick - now) // 1_000_000))
            ready = dict(poller.poll(wait_ms))
            if self._ingest in ready:
                self.drain()
            if self._router in ready:
                self.serve_requests()
            now = time.monotonic_ns()
            if now >= next_tick:
                self.tick(publish=self.ticks % display_every == 0)
                next_tick += tick_ns
                if now - next_tick > 10 * tick_ns:
                    self.tick_overruns += 1
                    next_tick = now + tick_ns

    # -- ingest -----------------------------------------------------------------

    def drain(self, limit: int = _DRAIN_BATCH) -> int:
        """Receive and handle up to ``limit`` waiting messages; returns how many."""
        handled = 0
        while handled < limit:
            try:
                frames = self._ingest.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            handled += 1
            self.handle(frames, time.time_ns(), time.monotonic_ns())
        return handled

    def handle(self, frames: list[bytes], received_ns: int, mono_ns: int) -> None:
        """Account for and apply one multipart message; bad ones are counted and dropped."""
        self.received += 1
        size = sum(len(f) for f in frames)
        self.bytes_in += size
        source = "?"
        try:
            if len(frames) != 3:
                raise FrameError("bad_framing", f"{len(frames)} frames, expected 3")
            kind, source = parse_topic(frames[0])
            header = unpack_header(frames[1])
            if header.kind != kind:
                raise FrameError(
                    "bad_header", f"header kind {header.kind.name} on a {kind.prefix} topic"
                )
            if kind == Kind.CRANE:
                self._on_crane(source, header, frames[2], mono_ns, size)
            else:
                self._on_robot(kind, source, header, frames[2], received_ns, mono_ns, size)
        except FrameError as exc:
            self.bad_frames[exc.reason] += 1
            self._log_limited(exc.reason, "refused a frame from %s: %s", source, exc.detail)
            return
        self.accepted += 1
        if self.sinks:
            record = Received(received_ns, source, header, frames[0], frames[2])
            for sink in self.sinks:
                sink(record)

    def _on_robot(
        self,
        kind: Kind,
        source: str,
        header: Header,
        payload: bytes,
        received_ns: int,
        mono_ns: int,
        size: int,
    ) -> None:
        link = self.robots.get(source)
        if link is None:
            self.unknown_sources[source] += 1
            raise FrameError(
                "unknown_source", f"robot {source!r} is not in scene {self.scene.name!r}"
            )
        # decode before sequencing, so a garbage frame cannot advance the stream
        decoded: Any
        decoded = (
            link.codec.decode(payload)
            if kind == Kind.JOINT_STATE
            else decode_payload(kind, payload)
        )
        verdict = link.tracker(kind).observe(header.epoch, header.seq)
        if verdict is SeqVerdict.STALE_SEQ:
            raise FrameError("stale_seq", f"{source} {kind.prefix} seq {header.seq} not newer")
        if verdict is SeqVerdict.NEW_EPOCH and header.epoch != link.epoch:
            self._event("epoch", source, f"gateway restarted: new epoch {header.epoch:#x}")
            link.delay.reset()
        link.epoch = header.epoch
        link.liveness.on_message(mono_ns)
        link.rate_in.add(mono_ns, size)
        link.view_dirty = True
        if kind == Kind.JOINT_STATE:
            link.rate_joint.add(mono_ns, size)
            link.delay.on_receive(header.stamp_ns, received_ns)
            link.joints = decoded
            link.joints_stamp_ns = header.stamp_ns
            link.joints_dirty = True
        elif isinstance(decoded, Heartbeat):
            link.heartbeat = decoded
            if decoded.mode == "shutdown":
                link.liveness.shutdown = True
        elif isinstance(decoded, BaseState):
            link.base = decoded
            link.base_dirty = True

    def _on_crane(
        self, source: str, header: Header, payload: bytes, mono_ns: int, size: int
    ) -> None:
        link = self.cranes.get(source)
        if link is None:
            self.unknown_sources[source] += 1
            raise FrameError(
                "unknown_source", f"crane {source!r} is not in scene {self.scene.name!r}"
            )
        state = decode_payload(Kind.CRANE, payload)
        if not isinstance(state, CraneState):  # cannot happen: the decoder is typed
            raise FrameError("bad_payload", f"crane {source}: not a crane state")
        verdict = link.stream.observe(header.epoch, header.seq)
        if verdict is SeqVerdict.STALE_SEQ:
            raise FrameError("stale_seq", f"crane {source} seq {header.seq} not newer")
        link.liveness.on_message(mono_ns)
        link.rate_in.add(mono_ns, size)
        link.state = state
        link.stamp_ns = header.stamp_ns
        link.dirty = True
        link.view_dirty = True

    # -- tick -------------------------------------------------------------------

    def tick(self, *, publish: bool = True) -> None:
        """Apply the newest states to the world, update liveness, publish if asked."""
        self.ticks += 1
        client = self.world.client
        now_mono = time.monotonic_ns()
        for link in self.robots.values():
            body = self.world.robot(link.robot_id).body
            if link.joints_dirty and link.joints is not None:
                joints = link.joints
                pb.resetJointStatesMultiDof(
                    body,
                    link.joint_indices,
                    targetValues=[[v] for v in joints.positions.tolist()],
                    targetVelocities=[[v] for v in joints.velocities.tolist()],
                    physicsClientId=client,
                )
                link.joints_dirty = False
                link.delay.on_applied(link.joints_stamp_ns, time.time_ns())
            if link.base_dirty and link.base is not None:
                pb.resetBasePositionAndOrientation(
                    body, link.base.position_m, link.base.orientation_xyzw, physicsClientId=client
                )
                link.base_dirty = False
            state = link.liveness.state(now_mono)
            if state != link.reported:
                self._event("liveness", link.robot_id, f"{link.reported} -> {state}")
                link.reported = state
                link.view_dirty = True
            link.rate_in.roll(now_mono)
            link.rate_joint.roll(now_mono)
            link.rate_out.roll(now_mono)
        for crane in self.cranes.values():
            if crane.dirty and crane.state is not None:
                crane.dirty = False
                try:
                    self.world.set_crane(
                        crane.crane_id,
                        bridge=crane.state.bridge_m,
                        trolley=crane.state.trolley_m,
                        hoist=crane.state.hoist_m,
                    )
                except CraneLimitError as exc:
                    crane.refused += 1
                    self._log_limited("crane_travel", "crane state refused: %s", exc)
            state = crane.liveness.state(now_mono)
            if state != crane.reported:
                self._event("liveness", crane.crane_id, f"{crane.reported} -> {state}")
                crane.reported = state
                crane.view_dirty = True
            crane.rate_in.roll(now_mono)
        if publish:
            self.publish_update()

    # -- fan-out and requests ---------------------------------------------------

    def _next_seq(self) -> int:
        self.fanout_seq += 1
        return self.fanout_seq

    def publish_update(self) -> None:
        """Publish robots and cranes that changed since the last update (if any)."""
        robots = [link for link in self.robots.values() if link.view_dirty]
        cranes = [c for c in self.cranes.values() if c.view_dirty]
        if not robots and not cranes:
            return
        views = [link.view() for link in robots]
        update = StateUpdate(
            seq=self._next_seq(),
            stamp_ns=time.time_ns(),
            robots=views,
            cranes=[c.view(self.world.crane_positions(c.crane_id)) for c in cranes],
        )
        body = ENCODER.encode(update)
        now_mono = time.monotonic_ns()
        for link, view in zip(robots, views, strict=True):
            link.view_dirty = False
            link.rate_out.add(now_mono, len(ENCODER.encode(view)))
        for crane in cranes:
            crane.view_dirty = False
        self._send_fanout(STATE, body)

    def _send_fanout(self, kind: bytes, body: bytes) -> None:
        try:
            self._fanout.send_multipart((kind, body), zmq.NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; viewers see the sequence gap
            self.bad_frames["fanout_dropped"] += 1

    def _event(self, kind: str, source: str, detail: str) -> None:
        event = Event(
            seq=self._next_seq(),
            stamp_ns=time.time_ns(),
            kind=kind,
            source_id=source,
            detail=detail,
        )
        self.events.append(event)
        log.info("%s %s: %s", kind, source, detail)
        self._send_fanout(EVENT, ENCODER.encode(event))

    def snapshot(self) -> Snapshot:
        """The full state, stamped with the current fan-out sequence number."""
        return Snapshot(
            seq=self.fanout_seq,
            stamp_ns=time.time_ns(),
            scene=self.scene.name,
            robots=[link.view() for link in self.robots.values()],
            cranes=[c.view(self.world.crane_positions(c.crane_id)) for c in self.cranes.values()],
        )

    def status(self) -> dict[str, Any]:
        """Everything ``twin status`` shows."""
        now_mono = time.monotonic_ns()
        rows = [link.status(now_mono) for link in self.robots.values()]
        return {
            "scene": self.scene.name,
            "uptime_s": round((now_mono - self._started_mono_ns) / 1e9, 3),
            "tick_hz": self.tick_hz,
            "ticks": self.ticks,
            "tick_overruns": self.tick_overruns,
            "robots": rows,
            "cranes": [c.status() for c in self.cranes.values()],
            "totals": {
                "received": self.received,
                "accepted": self.accepted,
                "bytes_in": self.bytes_in,
                "gaps": sum(r["gaps"] for r in rows),
                "bad_frames": dict(self.bad_frames),
                "unknown_sources": dict(self.unknown_sources),
                "live": sum(1 for r in rows if r["liveness"] == Liveness.LIVE),
                "fanout_seq": self.fanout_seq,
            },
        }

    def serve_requests(self) -> None:
        """Answer every waiting snapshot/status request."""
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # ROUTER: [identity, (empty delimiter from REQ), request]
            identity, rest = frames[0], frames[1:]
            envelope = [identity]
            if rest and rest[0] == b"":
                envelope.append(b"")
                rest = rest[1:]
            what = rest[0] if len(rest) == 1 else b""
            if what == SNAPSHOT:
                reply = [SNAPSHOT, ENCODER.encode(self.snapshot())]
            elif what == STATUS:
                reply = [STATUS, json.dumps(self.status()).encode()]
            else:
                self.bad_frames["bad_request"] += 1
                reply = [ERROR, b"unknown request; ask for 'snapshot' or 'status'"]
            try:
                self._router.send_multipart([*envelope, *reply], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the asker went away
                log.debug("could not answer a request: %s", exc)

    def _log_limited(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic_ns()
        if now - self._last_log_ns.get(key, 0) >= _LOG_EVERY_S * 1e9:
            self._last_log_ns[key] = now
            log.warning(message + " (further ones counted; logged at most once a second)", *args)


def _bind(socket: zmq.Socket[bytes], endpoint: str, what: str) -> str:
    """Bind; return the endpoint actually bound."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(f"cannot bind the {what} socket to {endpoint}: {exc}") from None
    bound = socket.getsockopt(zmq.LAST_ENDPOINT)
    return bound.decode() if isinstance(bound, bytes) else str(bound)
