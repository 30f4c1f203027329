"""The telemetry wire protocol: topics, the fixed header, and typed payloads.

Every telemetry message is a ZeroMQ multipart message of three frames (documented
for gateway authors in ``docs/protocol.md``)::

    frame 0  topic    ASCII "<kind>/<source id>", e.g. b"js/K1-03", b"crane/C1"
    frame 1  header   32 bytes, little-endian, see HEADER
    frame 2  payload  kind-specific; joint states in the manufacturer's own encoding

Header layout (``struct`` format ``<2sBBIQqQ``)::

    0   2  magic     b"HT"
    2   1  version   PROTOCOL_VERSION
    3   1  kind      Kind code (1 joint_state, 2 heartbeat, 3 base, 4 crane)
    4   4  reserved  0
    8   8  seq       per-stream sequence number, 0 at the start of each epoch
    16  8  stamp_ns  sender's clock, integer nanoseconds since the Unix epoch
    24  8  epoch     random non-zero id chosen when the gateway (re)starts

Heartbeat, base and crane payloads are MessagePack maps of the structs below (unknown
keys are ignored, so gateways may add fields). Nothing here touches sockets.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"HT"
HEADER: Final = struct.Struct("<2sBBIQqQ")
HEADER_SIZE: Final = HEADER.size  # 32
MAX_TOPIC_BYTES: Final = 128
MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Payloads larger than this are refused and counted as ``oversized`` (a topic longer than
MAX_TOPIC_BYTES is ``topic_too_long``)."""
MAX_COORDINATE_M: Final = 10_000.0
"""Positions beyond this (in any axis) are refused: no hall is 10 km wide."""
QUATERNION_NORM_TOLERANCE: Final = 1e-3
MAX_SEQ_JUMP: Final = 10_000_000
"""A forward jump larger than this (5.5 h at 500 Hz) is a resync, not that many losses."""


class Kind(enum.IntEnum):
    """Message kinds: the header's kind byte and the topic's prefix."""

    JOINT_STATE = 1
    HEARTBEAT = 2
    BASE = 3
    CRANE = 4

    @property
    def prefix(self) -> str:
        """The topic prefix for this kind."""
        return _PREFIX[self]


_PREFIX: Final = {
    Kind.JOINT_STATE: "js",
    Kind.HEARTBEAT: "hb",
    Kind.BASE: "base",
    Kind.CRANE: "crane",
}
_BY_PREFIX: Final = {prefix: kind for kind, prefix in _PREFIX.items()}


class FrameError(ValueError):
    """A frame that breaks the protocol; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Header(msgspec.Struct, frozen=True):
    """The decoded fixed header of one message."""

    kind: Kind
    seq: int
    stamp_ns: int
    epoch: int
    version: int = PROTOCOL_VERSION


def topic(kind: Kind, source_id: str) -> bytes:
    """The topic frame for a message of ``kind`` from ``source_id``."""
    return f"{kind.prefix}/{source_id}".encode("ascii")


def parse_topic(frame: bytes) -> tuple[Kind, str]:
    """Split a topic frame into (kind, source id); FrameError if malformed."""
    if len(frame) > MAX_TOPIC_BYTES:
        raise FrameError("topic_too_long", f"topic of {len(frame)} bytes exceeds {MAX_TOPIC_BYTES}")
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("bad_topic", "topic is not ASCII") from None
    prefix, sep, source = text.partition("/")
    if not sep or not source or prefix not in _BY_PREFIX:
        raise FrameError("bad_topic", f"topic {text[:40]!r} is not '<kind>/<id>'")
    return _BY_PREFIX[prefix], source


def pack_header(kind: Kind, seq: int, stamp_ns: int, epoch: int) -> bytes:
    """Encode a header frame."""
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(kind), 0, seq, stamp_ns, epoch)


def unpack_header(frame: bytes) -> Header:
    """Decode and check a header frame; FrameError says what is wrong."""
    if len(frame) != HEADER_SIZE:
        raise FrameError("bad_header", f"header is {len(frame)} bytes, expected {HEADER_SIZE}")
    magic, version, kind, reserved, seq, stamp_ns, epoch = HEADER.unpack(frame)
    if magic != MAGIC:
        raise FrameError("bad_header", f"magic {magic!r}, expected {MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise FrameError(
            "wrong_version", f"protocol version {version}, this twin speaks {PROTOCOL_VERSION}"
        )
    try:
        kind_code = Kind(kind)
    except ValueError:
        raise FrameError("bad_header", f"unknown kind code {kind}") from None
    if epoch == 0:
        raise FrameError("bad_header", "epoch 0 is reserved")
    if reserved != 0:
        raise FrameError("bad_header", f"reserved field is {reserved:#x}, must be 0")
    return Header(kind=kind_code, seq=seq, stamp_ns=stamp_ns, epoch=epoch, version=version)


RobotMode = Literal["idle", "running", "stopped", "fault", "shutdown"]


class Heartbeat(msgspec.Struct, frozen=True):
    """A robot gateway's heartbeat (``hb/<robot>``), typically 10 Hz.

    ``grip_closed``: the gripper is commanded closed; ``holding``: the id of the item the
    gripper's object sensor senses in it ("" when empty). Holding nothing with a closed
    grip, after holding something, is a dropped grasp. ``cycle``: how many times the robot's
    task loop has started over since the task began (0 in the first run; a gateway that does
    not count cycles leaves it 0); where it changes, a dataset export cuts an episode.
    ``lessons``: the ids of the lessons (sent by the twin over the command channel) the robot
    acts on now, oldest first; empty for a gateway that takes none. ``step``: the step of its
    task or the phase of its motion the robot is in now ("carry", "turn", "walk"; "" when the
    gateway does not say): a lesson learnt from a failure names it, so that the same cause at
    the same step strengthens one lesson.
    """

    mode: RobotMode
    estop: bool
    protective_stop: bool
    manufacturer: str
    model: str
    task: str = ""
    grip_closed: bool = False
    holding: str = ""
    cycle: int = 0
    lessons: tuple[str, ...] = ()
    step: str = ""


Vec3 = tuple[float, float, float]


class BaseState(msgspec.Struct, frozen=True):
    """Base (pelvis) pose and IMU (``base/<robot>``); hall frame, SI units.

    ``orientation_xyzw`` is a unit quaternion in (x, y, z, w) order. Angular velocity
    is in the hall frame; linear acceleration is what an IMU on the pelvis measures
    (including the reaction to gravity: +9.81 m/s^2 on z when standing still).
    """

    position_m: Vec3
    orientation_xyzw: tuple[float, float, float, float]
    linear_velocity_m_s: Vec3
    angular_velocity_rad_s: Vec3
    linear_acceleration_m_s2: Vec3


class CraneState(msgspec.Struct, frozen=True):
    """A crane controller's state (``crane/<crane id>``): hall coordinates in metres.

    ``hoist_m`` is the hook's height above the floor.
    """

    bridge_m: float
    trolley_m: float
    hoist_m: float
    moving: bool


PAYLOAD_TYPES: Final = {Kind.HEARTBEAT: Heartbeat, Kind.BASE: BaseState, Kind.CRANE: CraneState}

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODERS: Final = {kind: msgspec.msgpack.Decoder(cls) for kind, cls in PAYLOAD_TYPES.items()}


def encode_payload(message: Heartbeat | BaseState | CraneState) -> bytes:
    """MessagePack encoding of a heartbeat, base or crane payload."""
    return _ENCODER.encode(message)


def decode_payload(kind: Kind, frame: bytes) -> Heartbeat | BaseState | CraneState:
    """Decode and validate a heartbeat, base or crane payload; FrameError when malformed."""
    if len(frame) > MAX_PAYLOAD_BYTES:
        raise FrameError("oversized", f"payload of {len(frame)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        message: Heartbeat | BaseState | CraneState = _DECODERS[kind].decode(frame)
    except msgspec.ValidationError as exc:
        raise FrameError("bad_payload", f"{kind.prefix}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise FrameError("bad_payload", f"{kind.prefix}: not MessagePack ({exc})") from None
    except RecursionError:  # absurdly nested values (even under ignored keys)
        raise FrameError("bad_payload", f"{kind.prefix}: nested too deeply") from None
    values: tuple[float, ...] = ()
    if isinstance(message, BaseState):
        values = (
            *message.position_m,
            *message.orientation_xyzw,
            *message.linear_velocity_m_s,
            *message.angular_velocity_rad_s,
            *message.linear_acceleration_m_s2,
        )
    elif isinstance(message, CraneState):
        values = (message.bridge_m, message.trolley_m, message.hoist_m)
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise FrameError("bad_payload", f"{kind.prefix}: non-finite value")
    if any(abs(v) > MAX_COORDINATE_M for v in values[:3]):
        raise FrameError("bad_payload", f"{kind.prefix}: position beyond {MAX_COORDINATE_M:g} m")
    if isinstance(message, BaseState):
        norm = sum(q * q for q in message.orientation_xyzw) ** 0.5
        if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
            raise FrameError(
                "bad_payload",
                f"{kind.prefix}: orientation is not a unit quaternion (norm {norm:.4g})",
            )
    return message


@dataclass(frozen=True)
class Received:
    """One accepted telemetry message, as the sinks (the recorder) get it."""

    received_ns: int  # receiver's wall clock
    source_id: str
    header: Header
    topic: bytes
    payload: bytes
    joint_values: NDArray[np.float64] | NDArray[np.float32] | None = None
    """For joint states: the payload's values as ingest checked them (wire units, shape
    (3, N)), so a sink need not parse the payload again."""
