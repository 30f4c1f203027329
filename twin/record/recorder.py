"""The recorder: every accepted telemetry message into a self-contained MCAP file.

A :class:`Recorder` writes the file in the thread that calls it: :meth:`Recorder.sink` takes
one accepted message (a :class:`twin.live.mirror.Mirror` sink; the emulator's re-simulation
and the preview records call it directly), :meth:`Recorder.record_frames` a batch of them
as the wire carried them. ``twin live --record`` runs it in a process of its own, fed by
the mirror (:mod:`twin.record.recorder_process`), so recording never slows ingest; the file
is the same either way. The channels (``docs/recordings.md`` has the table):

- ``/joints/<robot>``: the robot's joint states in canonical names and SI units (rad,
  rad/s, N*m; m, m/s, N for prismatic joints; rounded to 1e-6, 1e-5 and 1e-4 of those,
  :data:`~twin.record.schemas.JOINT_STEPS`), with each state's receive time, stamp,
  sequence number and epoch, as **blocks** of states (:mod:`twin.record.joint_blocks`): a
  state costs the recorder a few list appends, and a block is converted, rounded and
  encoded in one numpy pass at each flush (about a second);
- ``/heartbeat/<robot>``, ``/base/<robot>`` (the ``foxglove.PoseInFrame`` shape) and
  ``/crane/<crane>``: a JSON message each;
- ``/raw/<topic>`` (e.g. ``/raw/base/K1-03``): the vendor frame exactly as received, the
  32-byte header followed by the payload, schema-less with message encoding
  ``hall-twin-v1`` (re-decode with :mod:`sync.protocol` and :mod:`sync.codecs`): for
  heartbeats, base states (their velocities and IMU are only here) and cranes always; for
  joint states only with ``raw_joints`` (``twin live --record --raw``), as they are the
  bulk of a file and ``/joints`` keeps all they say but the vendor's units; a joint state
  that cannot be converted is kept raw either way.

With ``display_hz`` (``twin live --record`` passes
:data:`~twin.record.foxglove_channels.DISPLAY_HZ`), the file also holds the Foxglove channels
``/foxglove/scene`` and ``/foxglove/tf`` (:mod:`twin.record.foxglove_channels`): the hall and
the robots moving, drawn by Foxglove's 3D panel; once a display tick, never per message.

``log_time`` is the twin's receive time, ``publish_time`` the sender's ``stamp_ns`` (for a
block, its first state's).
Events (:meth:`Recorder.event`) go to ``/events``. The file starts with a ``twin``
metadata record and attachments: the scene YAML (``scene.yaml``) and the URDF of every
robot model in the scene (``robots/<model>.urdf``), so a recording is self-contained; that
start, the file's opening and its chunk size are :mod:`twin.record.recorder_file`'s, and
this module routes the messages into the channels.

Durability: chunks are closed when they reach ``chunk_size_bytes`` (about one second of
the scene's nominal load) and at the first message after :data:`FLUSH_EVERY_NS` of wall
time; that flush waits until everything is written and handed to the OS, so a SIGKILL
loses at most the messages received in the last ~1 s (:meth:`Recorder.record_frames`, the
recorder process's path, flushes by receive time without waiting: the writing thread has
the chunk on disk as soon as it is compressed, milliseconds later, while the worker goes
on; caught up, the worker's :meth:`Recorder.flush_if_due` waits). With no traffic,
whoever drives the recorder calls :meth:`Recorder.flush_if_due` (the recorder process
does, ten times a second); otherwise the open chunk waits for the next message or
:meth:`Recorder.close`.

Speed: the file is written by :class:`twin.record.mcap_writer.ChunkedMcapWriter` (the ``mcap``
package's records, a message packed in one call, chunks compressed with zstd level 1
on a background thread); ``benchmarks/record.py`` measures this recorder, in-thread and as
the recorder process, beside a bare ``mcap.writer.Writer`` writing each message once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
from mcap.writer import CompressionType
from numpy.typing import NDArray

from robots import get_model
from scenes.model import Scene
from sync.closing import Closing
from sync.codecs import VendorCodec, codec_for
from sync.protocol import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    Kind,
    Received,
    parse_topic,
    topic,
)
from twin.record.foxglove_channels import FoxgloveChannels
from twin.record.frame_groups import ANY_SIZE, FastRoutes, group_frames
from twin.record.joint_blocks import BLOCK_ENCODING, BLOCK_MAX_STATES, BLOCK_SCHEMA, BlockBuffer
from twin.record.recorder_file import (
    COMPRESSION,
    RAW_ENCODING,
    RecorderError,
    RecorderFile,
    start_file,
)
from twin.record.schemas import EventMsg, canonical_joints, canonical_message, joint_steps

__all__ = ["COMPRESSION", "FLUSH_EVERY_NS", "RAW_ENCODING", "Recorder", "RecorderError"]

log = logging.getLogger(__name__)

FLUSH_EVERY_NS: Final = 1_000_000_000
_CHECK_EVERY: Final = 512  # record_frames looks for full blocks after this many states
_U32: Final = 0xFFFFFFFF


# --- canonical message bodies (msgspec structs, JSON) --------------------------------


_CANONICAL_PREFIX: Final = {
    Kind.JOINT_STATE: ("/joints/", BLOCK_SCHEMA),
    Kind.HEARTBEAT: ("/heartbeat/", "hall_twin.Heartbeat"),
    Kind.BASE: ("/base/", "foxglove.PoseInFrame"),
    Kind.CRANE: ("/crane/", "hall_twin.Crane"),
}


class _Route(msgspec.Struct):
    """What the sink needs per topic, looked up once per message."""

    raw_channel: int
    channel: int
    kind: Kind
    source: str
    codec: VendorCodec | None = None
    si_steps: NDArray[np.float64] | None = None  # (3, N): wire units -> JOINT_STEPS
    packed_size: int = 0  # a joint state of a fixed layout: its payload's size
    block: BlockBuffer | None = None  # a joint state's, waiting for the next block
    raw: bool = True  # write the raw frames (joint states: only with raw_joints)
    # the newest state, for the Foxglove channels: a joint state's (3, N) wire values, a
    # base's (position, orientation) or a crane's (bridge, trolley, hoist); and the one shown
    latest: Any = None
    shown: Any = None
    extenders: Any = None  # the block's three list.extend, for record_frames


class Recorder(Closing):
    """Writes accepted telemetry and events of a running twin to an MCAP file."""

    def __init__(
        self,
        path: Path,
        scene: Scene,
        scene_text: str,
        *,
        twin_version: str,
        chunk_size_bytes: int | None = None,
        compression: CompressionType = COMPRESSION,
        start_ns: int | None = None,
        background: bool = True,
        display_hz: float | None = None,
        raw_joints: bool = False,
    ) -> None:
        """``start_ns``: the recording's time zero (default now; a re-simulation passes the
        instant of the original recording it starts from). ``display_hz``: also write the
        Foxglove channels (:mod:`twin.record.foxglove_channels`), transforms at this rate of
        receive time; None: not. ``raw_joints``: also write every joint state's vendor frame
        as received (``/raw/js/<robot>``)."""
        self.path = Path(path)
        self.scene = scene
        self.raw_joints = raw_joints
        self._foxglove: FoxgloveChannels | None = None
        if display_hz is not None:  # its world is built before the time zero is taken
            self._foxglove = FoxgloveChannels(scene, display_hz=display_hz)
        try:
            self._open(
                start_file(
                    self.path, scene, scene_text, twin_version=twin_version,
                    chunk_size_bytes=chunk_size_bytes, compression=compression,
                    start_ns=start_ns, background=background, raw_joints=raw_joints,
                )
            )  # fmt: skip
        except BaseException:
            if self._foxglove is not None:
                self._foxglove.close()
            raise

    def _open(self, opened: RecorderFile) -> None:
        """The started file (:func:`~twin.record.recorder_file.start_file`) taken over, its
        channels registered."""
        scene = self.scene
        self._stream = opened.stream
        self._writer = writer = opened.writer
        self.start_ns = start_ns = opened.start_ns
        self.chunk_size_bytes = opened.chunk_size_bytes
        self._schemas = opened.schemas
        self._closed = False
        self.messages = 0
        self.failed = 0
        self._event_id = 0
        self._encode = msgspec.json.Encoder().encode
        self._last_flush_ns = time.monotonic_ns()
        self._flushed_at = 0  # messages at the last flush
        self._first_log_ns = 0  # receive time of the first message since (record_frames)
        self._unchecked = 0  # joint states put in blocks since their sizes were looked at
        self._unsettled = False  # a flush left to the writing thread, not yet seen done
        self._routes: dict[bytes, _Route] = {}
        self._fast = FastRoutes()  # the joint states' routes, for record_frames
        self._fast_routes: list[_Route] = []  # by their code in self._fast
        for robot in scene.robots:
            codec = codec_for(get_model(robot.model))
            for kind in (Kind.JOINT_STATE, Kind.HEARTBEAT, Kind.BASE):
                self._add_route(kind, robot.id, codec)
        for crane in scene.cranes:
            self._add_route(Kind.CRANE, crane.id, None)
        self._events_channel = writer.register_channel(
            "/events", "json", self._schemas["hall_twin.Event"]
        )
        if self._foxglove is not None:
            self._foxglove.attach(writer, start_ns)
        self._writer.flush()  # header, metadata, attachments are on disk at once
        if self._foxglove is not None:  # in the first chunk of messages, not one of its own
            self._foxglove.write_scene(start_ns)

    def _add_route(self, kind: Kind, source: str, codec: VendorCodec | None) -> _Route:
        wire_topic = topic(kind, source)
        prefix, schema = _CANONICAL_PREFIX[kind]
        writer = self._writer
        encoding = BLOCK_ENCODING if kind == Kind.JOINT_STATE else "json"
        route = _Route(
            raw_channel=writer.register_channel(f"/raw/{wire_topic.decode()}", RAW_ENCODING, 0),
            channel=writer.register_channel(prefix + source, encoding, self._schemas[schema]),
            kind=kind,
            source=source,
            codec=codec,
            raw=kind != Kind.JOINT_STATE or self.raw_joints or codec is None,
        )
        if kind == Kind.JOINT_STATE and codec is not None:
            unit = codec.to_sample(np.ones((3, len(codec.names))))
            route.si_steps = joint_steps(np.stack([unit.positions, unit.velocities, unit.efforts]))
            route.packed_size = codec.packed[1] if codec.packed is not None else 0
            route.block = BlockBuffer(
                source, list(codec.canonical_names), route.si_steps, codec.accepted_values
            )
            route.extenders = route.block.extenders()
            self._fast.add(wire_topic, route.packed_size or ANY_SIZE)
            self._fast_routes.append(route)
        self._routes[wire_topic] = route
        return route

    def sink(self, received: Received) -> None:
        """Record one accepted message (the in-thread path: keep it cheap). Flushes every
        :data:`FLUSH_EVERY_NS` of receive time (a re-simulation or a preview, faster than
        real time, still closes a chunk about every second of its recording, so a replay
        seeks in it as in a live one) and of wall time."""
        header = received.header
        received_ns = received.received_ns
        if self._flushed_at == self.messages:  # the first since the last flush
            self._first_log_ns = received_ns
        self._record(
            received.topic, received_ns, header.seq, header.stamp_ns, header.epoch,
            received.payload, received.joint_values,
        )  # fmt: skip
        foxglove = self._foxglove
        if foxglove is not None and received_ns >= foxglove.next_tick_ns:
            self._display(foxglove, received_ns)
        if received_ns - self._first_log_ns >= FLUSH_EVERY_NS:
            self.flush()
        else:
            self.flush_if_due(time.monotonic_ns())

    def record_frames(self, received_ns: int, flat: Sequence[bytes]) -> None:
        """Record messages ingest accepted, all received at ``received_ns``, as the wire
        carried them: ``flat`` holds three frames a message (topic, 32-byte header,
        payload), what :class:`twin.record.recorder_process.RecorderProcess` hands its
        worker. The joint states go into their robots' blocks as they came (ingest checked
        them; a packed one of its size), sorted there in a few C-level calls
        (:mod:`twin.record.frame_groups`); any other message is recorded as :meth:`sink`
        records it, before them. The file holds what :meth:`sink` writes for the same
        messages, but for where the blocks end and the order, within one receive time, of
        messages on different channels (a joint state of a robot's that is not of its size
        sends the whole shipment the one-by-one way, in order). Flushes every
        :data:`FLUSH_EVERY_NS` of the messages' receive times without waiting for the
        writing thread (a caller catching up from a backlog writes the chunks of one keeping
        up); when caught up, the caller calls :meth:`flush_if_due` for the wall clock (and
        to see such a flush done)."""
        if self._flushed_at == self.messages:  # the first since the last flush
            self._first_log_ns = received_ns
        if len(flat) % 3:  # never from the twin (it hands over exactly three a message)
            self._count_failed(ValueError(f"{len(flat)} frames, not three a message"))
            flat = flat[: len(flat) - len(flat) % 3]
        slow, groups = group_frames(flat, self._fast)
        if slow and any(flat[3 * i] in self._fast.codes for i in slow):
            # a robot's joint state not of its size (damaged): the robot's states must keep
            # their order, so every message one by one, as sink() records them
            slow, groups = list(range(len(flat) // 3)), []
        if slow:
            unpack = HEADER.unpack
            for i in slow:
                seq, stamp_ns, epoch = unpack(flat[3 * i + 1])[4:]
                self._record(flat[3 * i], received_ns, seq, stamp_ns, epoch, flat[3 * i + 2], None)
        fast_routes = self._fast_routes
        taken = 0
        # with many robots a group is one or two messages: keep its work to a few calls
        for code, headers, payloads in groups:
            route = fast_routes[code]
            route.latest = payloads[-1]
            if route.raw:
                self._raw_frames(route, received_ns, headers, payloads)
            add_log, add_headers, add_payloads = route.extenders
            add_log(repeat(received_ns, len(headers)))
            add_headers(headers)
            add_payloads(payloads)
            taken += len(headers)
        self.messages += taken
        self._unchecked += taken
        if self._unchecked >= _CHECK_EVERY:  # a full block is written: looked at now and then
            self._unchecked = 0
            for route in fast_routes:
                if route.block is not None and len(route.block) >= BLOCK_MAX_STATES:
                    self._write_block(route)
        foxglove = self._foxglove
        if foxglove is not None and received_ns >= foxglove.next_tick_ns:
            self._display(foxglove, received_ns)
        if received_ns - self._first_log_ns >= FLUSH_EVERY_NS:  # by receive times: see above
            self.flush(wait=False)  # behind or busy: the writing thread finishes it

    def _raw_frames(
        self, route: _Route, log_ns: int, headers: Sequence[bytes], payloads: Sequence[bytes]
    ) -> None:
        """Messages' vendor frames as received, on the route's raw channel."""
        unpack = HEADER.unpack
        add = self._writer.add_message
        channel = route.raw_channel
        for header, payload in zip(headers, payloads, strict=True):
            seq, stamp_ns = unpack(header)[4:6]
            add(channel, log_ns, header + payload, stamp_ns, seq & _U32)

    def _write_block(self, route: _Route) -> None:
        """The states a robot's block holds, as one ``/joints/<robot>`` message."""
        block = route.block
        if block is None or not len(block):
            return
        try:
            log_ns, stamp_ns, seq, data = block.take()
        except Exception as exc:  # never let one block stop the twin (the raw frames stay)
            self.failed += 1
            log.warning("a block of %s's joint states not written: %r", route.source, exc)
            return
        self._writer.add_message(route.channel, log_ns, data, stamp_ns, seq & _U32)

    def _display(self, foxglove: FoxgloveChannels, log_ns: int) -> None:
        """A display tick: the states that changed since the last into the Foxglove
        channels' world, then the transforms."""
        hall = foxglove.hall
        for route in self._routes.values():
            latest = route.latest
            if latest is route.shown:
                continue
            if route.shown is None:
                foxglove.heard(route.source)
            route.shown = latest
            if route.kind == Kind.JOINT_STATE:
                assert route.codec is not None and route.si_steps is not None
                wire = route.codec.check(latest) if isinstance(latest, bytes) else latest
                rounded = canonical_joints(wire, route.si_steps).tolist()
                foxglove.set_joints(route.source, route.codec.canonical_names, rounded)
            elif route.kind == Kind.BASE:
                hall.set_base(route.source, *latest)
            elif route.kind == Kind.CRANE:
                hall.set_crane(route.source, *latest)
        foxglove.tick(log_ns)

    def flush_if_due(self, now_mono_ns: int) -> bool:
        """:meth:`flush` if :data:`FLUSH_EVERY_NS` have passed since the last and a message
        was recorded since (events alone wait for the next message's flush, as they always
        have: the chunks stay where messages put them); True if it flushed."""
        if self._unsettled:  # the last flush left its end to the writing thread: see it done
            self._unsettled = False
            self._writer.settle()  # and its error (disk full...) raised now, not later
        if now_mono_ns - self._last_flush_ns < FLUSH_EVERY_NS or self._flushed_at == self.messages:
            return False
        self.flush(now_mono_ns)
        return True

    def _record(
        self,
        wire_topic: bytes,
        log_ns: int,
        seq: int,
        stamp_ns: int,
        epoch: int,
        payload: bytes,
        values: NDArray[np.float64] | NDArray[np.float32] | None,
    ) -> None:
        route = self._routes.get(wire_topic)
        if route is None:  # accepted by ingest but not in our scene: keep the raw frame
            log.warning("recording a topic not in the scene: %r", wire_topic)
            kind, source = parse_topic(wire_topic)
            route = self._add_route(kind, source, None)
        add = self._writer.add_message
        block = route.block
        if block is not None and route.codec is not None:  # a joint state: into its block
            try:
                wire = values if values is not None else route.codec.check(payload)
            except Exception as exc:  # kept raw (below), never lost
                self._count_failed(exc)
            else:
                route.latest = wire
                block.add(log_ns, stamp_ns, seq, epoch, wire)
                if len(block) >= BLOCK_MAX_STATES:
                    self._write_block(route)
                if route.raw:
                    self._raw(route, log_ns, seq, stamp_ns, epoch, payload)
                self.messages += 1
                return
            self._raw(route, log_ns, seq, stamp_ns, epoch, payload)
            self.messages += 1
            return
        if route.raw or block is not None:
            self._raw(route, log_ns, seq, stamp_ns, epoch, payload)
        try:
            canonical, latest = canonical_message(
                route.source, route.kind, payload, seq, stamp_ns, epoch
            )
        except Exception as exc:  # never let one message stop the twin; the raw frame is kept
            self._count_failed(exc)
        else:
            if latest is not None:
                route.latest = latest
            add(route.channel, log_ns, canonical, stamp_ns, seq & _U32)
        self.messages += 1

    def _raw(
        self, route: _Route, log_ns: int, seq: int, stamp_ns: int, epoch: int, payload: bytes
    ) -> None:
        raw = HEADER.pack(MAGIC, PROTOCOL_VERSION, route.kind, 0, seq, stamp_ns, epoch)
        self._writer.add_message(route.raw_channel, log_ns, raw + payload, stamp_ns, seq & _U32)

    def _count_failed(self, exc: Exception) -> None:
        self.failed += 1
        if self.failed == 1 or self.failed % 10_000 == 0:
            log.warning("%d messages recorded raw only; latest: %r", self.failed, exc)

    def event(self, kind: str, source_id: str, detail: str, stamp_ns: int) -> None:
        """Record an event (epoch change, resync, liveness change...) on ``/events``."""
        self._event_id += 1
        body = self._encode(EventMsg(self._event_id, stamp_ns, kind, source_id, detail))
        self._writer.add_message(self._events_channel, stamp_ns, body, stamp_ns, self._event_id)
        if self._foxglove is not None:
            self._foxglove.log(stamp_ns, kind, source_id, detail)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """One more metadata record (e.g. what a re-simulation started from)."""
        self._writer.add_metadata(name, data)

    def flush(self, now_mono_ns: int | None = None, *, wait: bool = True) -> None:
        """Write the robots' blocks, close the chunk in progress and hand everything to the
        OS; ``wait`` False: leave the last of it to the writing thread (it is on disk as
        soon as that thread has compressed it, milliseconds later)."""
        self._write_blocks()
        if wait:
            self._writer.flush()
        else:
            self._writer.flush_soon()
        self._unsettled = not wait
        self._last_flush_ns = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        self._flushed_at = self.messages

    def _write_blocks(self) -> None:
        for route in self._routes.values():
            if route.block is not None and len(route.block):
                self._write_block(route)

    def close(self) -> None:
        """Finish the file: the last blocks and chunk, summary, indexes, footer."""
        if self._closed:
            return
        self._closed = True
        try:
            self._write_blocks()
            self._writer.finish()
        finally:
            self._stream.close()
            if self._foxglove is not None:
                self._foxglove.close()
