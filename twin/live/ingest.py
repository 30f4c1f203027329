"""Telemetry ingest: one multipart message in, the right link updated or the frame refused.

This is the twin's per-message hot path (tens of thousands of messages a second), so
known topics are looked up in a table built from the scene, the header is checked
with plain integer comparisons, and joint-state payloads are only validated here
(size, finiteness); converting units is left for the states actually applied
(:meth:`sync.codecs.VendorCodec.to_sample`). A batch of messages (what one drain took
from the socket) has the finiteness of its fixed-layout payloads checked in one numpy
pass first (:meth:`Ingest.screen`); such a payload is kept as bytes and viewed as an
array only when it is used. A payload is validated *before* its sequence number is
accepted, so a malformed frame never advances a stream.

Every refused frame is counted by reason, in the totals and, when its topic names a robot
or crane of the scene, in that link's own counters too (``frames_in``, ``refused``), so the
per-robot rows add up to the totals; nothing vanishes without a counter. Warnings about
refused frames are rate-limited per reason (one a second) and in all (``LOG_LINES_PER_S``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

import numpy as np
import zmq
from numpy.typing import NDArray

from sync.codecs import Array, finite_rows
from sync.command import peer_key
from sync.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    BaseState,
    CraneState,
    FrameError,
    Header,
    Heartbeat,
    Kind,
    decode_payload,
    parse_topic,
    topic,
    unpack_header,
)
from sync.streams import SeqVerdict
from twin.live.links import CraneLink, RobotLink

log = logging.getLogger(__name__)

_LOG_EVERY_NS: Final = 1_000_000_000
LOG_LINES_PER_S: Final = 5
"""At most this many refused-frame warnings a second, whatever their reasons."""
_TRAVEL_SLACK_M: Final = 0.01  # a crane may report a hair past its end stop
_UNKNOWN_SOURCES_KEPT: Final = 100
_KINDS: Final = {int(k): k for k in Kind}


EventHook = Callable[[str, str, str], None]  # (kind, source id, detail)


def take_batch(
    recv: Callable[..., zmq.Frame], wanted: int, keyed: bool
) -> tuple[list[list[bytes]], list[bytes | None], bool]:
    """Up to ``wanted`` whole messages waiting in a socket (``recv``: its bound ``recv``),
    without waiting: (messages as lists of frames, each one's connection key when ``keyed``,
    whether the socket ran empty)."""
    batch: list[list[bytes]] = []
    peers: list[bytes | None] = []
    noblock = zmq.NOBLOCK
    try:
        # Frames, not bytes: a frame says whether more of its message follows, where asking
        # the socket (RCVMORE, as recv_multipart does) cost pyzmq an enum lookup a part,
        # 3.6 us a message of the 5.5 it took to receive.
        while len(batch) < wanted:
            first = frame = recv(noblock, copy=False)
            frames = [frame.bytes]
            while frame.more:  # the rest of a message is there already
                frame = recv(noblock, copy=False)
                frames.append(frame.bytes)
            if keyed:  # the connection's authenticated key rides on the frames
                peers.append(peer_key(first))
            batch.append(frames)
    except zmq.Again:
        return batch, peers, True
    return batch, peers, False


class Ingest:
    """Decode, check and sequence incoming frames into robot and crane links."""

    def __init__(
        self,
        scene_name: str,
        robots: dict[str, RobotLink],
        cranes: dict[str, CraneLink],
        on_event: EventHook,
    ) -> None:
        self.scene_name = scene_name
        self.robots = robots
        self.cranes = cranes
        self.on_event = on_event
        self.routes: dict[bytes, tuple[Kind, RobotLink | CraneLink]] = {}
        for link in robots.values():
            for kind in (Kind.JOINT_STATE, Kind.HEARTBEAT, Kind.BASE):
                self.routes[topic(kind, link.robot_id)] = (kind, link)
        for crane in cranes.values():
            self.routes[topic(Kind.CRANE, crane.crane_id)] = (Kind.CRANE, crane)
        self.bad_frames: Counter[str] = Counter()
        self.unknown_sources: Counter[str] = Counter()
        self.authorise: Callable[[bytes | None, str], bool] | None = None
        """With keys: may the connection with this key speak for this source?"""
        self.received = 0
        self.accepted = 0
        self.unattributed = 0  # refused frames whose topic names no robot or crane
        self.bytes_in = 0
        self._last_log_ns: dict[str, int] = {}
        self._log_window_ns = 0
        self._log_lines = 0
        self.log_suppressed = 0

    def screen(self, batch: list[list[bytes]]) -> list[bool | None]:
        """Per message of ``batch``: whether its joint-state payload is all finite, for the
        payloads of a fixed layout and the right size (None for every other message: those
        are checked one by one in :meth:`handle`), in one numpy pass per layout."""
        found: list[bool | None] = [None] * len(batch)
        groups: dict[tuple[str, int], tuple[list[int], list[bytes]]] = {}
        routes = self.routes
        for i, frames in enumerate(batch):
            if len(frames) != 3:
                continue
            route = routes.get(frames[0])
            if route is None or route[0] != Kind.JOINT_STATE:
                continue
            packed = route[1].codec.packed  # type: ignore[union-attr]
            if packed is None or len(frames[2]) != packed[1]:
                continue
            group = groups.get(packed)
            if group is None:
                group = groups[packed] = ([], [])
            group[0].append(i)
            group[1].append(frames[2])
        for (dtype, _), (indices, payloads) in groups.items():
            for i, ok in zip(indices, finite_rows(payloads, dtype), strict=True):
                found[i] = ok
        return found

    def handle(
        self,
        frames: list[bytes],
        received_ns: int,
        mono_ns: int,
        peer: bytes | None = None,
        finite: bool | None = None,
    ) -> tuple[RobotLink | CraneLink, Kind, Header] | None:
        """Account for one message; return (link, kind, header) if accepted, else None.

        ``finite``: what :meth:`screen` found for it (None: check the payload here)."""
        if finite and self.authorise is None:
            fast = self._joint_state_in_order(frames, received_ns, mono_ns)
            if fast is not None:
                return fast
        self.received += 1
        source = "?"
        link: RobotLink | CraneLink | None = None
        try:
            if len(frames) != 3:
                self.bytes_in += sum(len(f) for f in frames)
                raise FrameError("bad_framing", f"{len(frames)} frames, expected 3")
            topic_frame, header_frame, payload = frames
            size = len(topic_frame) + len(header_frame) + len(payload)
            self.bytes_in += size
            route = self.routes.get(topic_frame)
            if route is None:
                kind, source = parse_topic(topic_frame)  # raises for a malformed topic
                key = source if len(self.unknown_sources) < _UNKNOWN_SOURCES_KEPT else "(more)"
                if source in self.unknown_sources:
                    key = source
                self.unknown_sources[key] += 1
                raise FrameError(
                    "unknown_source", f"{source!r} is not in scene {self.scene_name!r}"
                )
            kind, link = route
            link.frames_in += 1
            source = link.robot_id if isinstance(link, RobotLink) else link.crane_id
            if self.authorise is not None and not self.authorise(peer, source):
                raise FrameError("not_authorised", f"the sender's key is not bound to {source}")
            header = self._header(header_frame, kind)
            if isinstance(link, RobotLink):
                self._on_robot(link, kind, header, payload, received_ns, mono_ns, size, finite)
            else:
                self._on_crane(link, header, payload, mono_ns, size)
        except FrameError as exc:
            self._refused(exc.reason, link)
            self.log_limited(exc.reason, "refused a frame from %r: %s", source, exc.detail)
            return None
        except Exception as exc:  # a bug of ours must not let one message stop the twin
            self._refused("internal_error", link)
            self.log_limited("internal_error", "could not handle a frame from %r: %r", source, exc)
            return None
        self.accepted += 1
        return link, kind, header

    def _joint_state_in_order(
        self, frames: list[bytes], received_ns: int, mono_ns: int
    ) -> tuple[RobotLink | CraneLink, Kind, Header] | None:
        """The common case, in one go: a screened joint state (three frames, a robot's topic,
        a payload of the right size, all finite) with a valid header, next in its stream's
        current epoch. Accounted for exactly as the general path would; None (and nothing
        changed) for anything else, which the general path then handles."""
        topic_frame, header_frame, payload = frames
        link = self.routes[topic_frame][1]
        if not isinstance(link, RobotLink):  # the routes say so: cannot happen
            return None
        tracker = link.streams.get(Kind.JOINT_STATE)
        if tracker is None or len(header_frame) != HEADER_SIZE:
            return None
        magic, version, code, reserved, seq, stamp_ns, epoch = HEADER.unpack(header_frame)
        if (
            magic != MAGIC
            or version != PROTOCOL_VERSION
            or code != Kind.JOINT_STATE
            or reserved
            or not epoch
            or not tracker.in_order(epoch, seq)
        ):
            return None
        size = len(topic_frame) + len(header_frame) + len(payload)
        self.received += 1
        self.bytes_in += size
        link.frames_in += 1
        link.epoch = epoch
        link.liveness.on_message(mono_ns)
        link.rate_in.add(mono_ns, size)
        link.view_dirty = True
        link.joint_messages += 1
        link.delay.on_receive(stamp_ns, received_ns)
        link.raw_payload, link.raw_joints = payload, None
        link.joints_stamp_ns = stamp_ns
        link.joints_dirty = True
        self.accepted += 1
        header = Header(kind=Kind.JOINT_STATE, seq=seq, stamp_ns=stamp_ns, epoch=epoch)
        return link, Kind.JOINT_STATE, header

    def _refused(self, reason: str, link: RobotLink | CraneLink | None) -> None:
        self.bad_frames[reason] += 1
        if link is None:
            self.unattributed += 1
        else:
            link.refused[reason] += 1

    @staticmethod
    def _header(frame: bytes, kind: Kind) -> Header:
        if len(frame) == HEADER_SIZE:
            magic, version, code, reserved, seq, stamp_ns, epoch = HEADER.unpack(frame)
            if (
                magic == MAGIC
                and version == PROTOCOL_VERSION
                and code == kind
                and epoch
                and not reserved
            ):
                return Header(kind=kind, seq=seq, stamp_ns=stamp_ns, epoch=epoch)
        header = unpack_header(frame)  # raises with the precise reason
        raise FrameError(
            "bad_header", f"header kind {_KINDS[header.kind].name} on a {kind.prefix} topic"
        )

    def _on_robot(
        self,
        link: RobotLink,
        kind: Kind,
        header: Header,
        payload: bytes,
        received_ns: int,
        mono_ns: int,
        size: int,
        finite: bool | None,
    ) -> None:
        checked: Heartbeat | BaseState | CraneState | Array | NDArray[np.float32] | None
        if kind != Kind.JOINT_STATE:
            checked = decode_payload(kind, payload)
        elif finite is None:
            checked = link.codec.check(payload)
        elif finite:
            checked = None  # screened: kept as bytes below
        else:
            raise FrameError("bad_payload", f"{link.model.name}: non-finite joint value")
        verdict = link.tracker(kind).observe(header.epoch, header.seq)
        if verdict is SeqVerdict.STALE_SEQ:
            raise FrameError("stale_seq", f"{kind.prefix} seq {header.seq} is not newer")
        if verdict is SeqVerdict.STALE_EPOCH:
            # two epochs of one stream interleave: a second sender (a takeover, or an old
            # connection's backlog after a restart); told once per epoch change
            link.epochs_interleaved += 1
            if link.interleave_told != link.epoch:
                link.interleave_told = link.epoch
                self.on_event(
                    "takeover",
                    link.robot_id,
                    f"{kind.prefix}: epoch {header.epoch:#x} still sends after {link.epoch:#x} "
                    "took over (two senders, or an old connection's backlog)",
                )
            raise FrameError("stale_epoch", f"{kind.prefix} from a retired epoch {header.epoch:#x}")
        if verdict is SeqVerdict.RESYNC:
            self.on_event("resync", link.robot_id, f"{kind.prefix} seq jumped to {header.seq}")
        if verdict is SeqVerdict.NEW_EPOCH and header.epoch != link.epoch:
            self.on_event("epoch", link.robot_id, f"gateway restarted: new epoch {header.epoch:#x}")
            link.delay.reset()
        link.epoch = header.epoch
        link.liveness.on_message(mono_ns, main=kind == Kind.JOINT_STATE)
        link.rate_in.add(mono_ns, size)
        link.view_dirty = True
        if kind == Kind.JOINT_STATE:
            link.joint_messages += 1
            link.delay.on_receive(header.stamp_ns, received_ns)
            if checked is None:
                link.raw_payload, link.raw_joints = payload, None
            else:
                link.raw_payload, link.raw_joints = None, checked  # type: ignore[assignment]
            link.joints_stamp_ns = header.stamp_ns
            link.joints_dirty = True
        elif isinstance(checked, Heartbeat):
            link.heartbeat = checked
            if checked.mode == "shutdown":
                link.liveness.shutdown = True
        elif isinstance(checked, BaseState):
            link.base = checked
            link.base_dirty = True

    def _on_crane(
        self, link: CraneLink, header: Header, payload: bytes, mono_ns: int, size: int
    ) -> None:
        state = decode_payload(Kind.CRANE, payload)
        if not isinstance(state, CraneState):  # the decoder is typed: cannot happen
            raise FrameError("bad_payload", f"crane {link.crane_id}: not a crane state")
        for axis, value in (
            ("bridge", state.bridge_m),
            ("trolley", state.trolley_m),
            ("hoist", state.hoist_m),
        ):
            low, high = link.travel_m[axis]
            if not low - _TRAVEL_SLACK_M <= value <= high + _TRAVEL_SLACK_M:
                raise FrameError(
                    "out_of_travel", f"{axis} at {value:g} m is outside {low:g}..{high:g} m"
                )
        verdict = link.stream.observe(header.epoch, header.seq)
        if verdict in (SeqVerdict.STALE_SEQ, SeqVerdict.STALE_EPOCH):
            raise FrameError(verdict.value, f"crane seq {header.seq} is not newer")
        link.liveness.on_message(mono_ns)
        link.rate_in.add(mono_ns, size)
        link.state = state
        link.stamp_ns = header.stamp_ns
        link.dirty = True
        link.view_dirty = True

    def log_limited(self, key: str, message: str, *args: object) -> None:
        """Log a warning at most once a second per ``key`` and LOG_LINES_PER_S a second in
        all (the rest are only counted; ``log_suppressed`` says how many lines were not)."""
        now = time.monotonic_ns()
        if now - self._last_log_ns.get(key, -_LOG_EVERY_NS) < _LOG_EVERY_NS:
            return
        self._last_log_ns[key] = now
        if now - self._log_window_ns >= _LOG_EVERY_NS:
            self._log_window_ns, self._log_lines = now, 0
        if self._log_lines >= LOG_LINES_PER_S:
            self.log_suppressed += 1  # one per reason and second, like the lines themselves
            return
        self._log_lines += 1
        log.warning(message + " (more are counted, logged at most once a second)", *args)
