"""Message shapes and JSON schemas of hall-twin recordings (MCAP channels' schemas).

The canonical channels carry JSON (msgspec structs below); each channel's schema is
a JSON Schema that names the units, so a recording opens and reads in Foxglove.
``/base/<robot>`` uses the shape of Foxglove's ``foxglove.PoseInFrame``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from sync.protocol import BaseState, CraneState, Heartbeat, Kind, decode_payload

JOINT_STEPS: Final = np.array([[1e6], [1e5], [1e4]])
"""Steps a unit the canonical joint states are rounded to, per row: positions to 1e-6 rad
(m for prismatic joints), velocities to 1e-5 rad/s (m/s), efforts to 1e-4 N*m (N). The
raw frames keep the values as sent. Steps, not resolutions: ``k / 1e6`` is the double
nearest the decimal, so the JSON holds at most 6 decimals (``k * 1e-6`` often is not)."""


def joint_steps(si_scale: NDArray[np.float64]) -> NDArray[np.float64]:
    """Wire units to :data:`JOINT_STEPS`, per value, from a codec's (3, N) SI scale."""
    steps: NDArray[np.float64] = si_scale * JOINT_STEPS
    return steps


def canonical_joints(
    wire: NDArray[np.float64] | NDArray[np.float32], steps: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The canonical (SI, rounded) values of wire values ((3, N) or (n, 3, N)), as the
    recorder writes them: ``steps`` from :func:`joint_steps`."""
    result: NDArray[np.float64] = wire * steps
    np.rint(result, out=result)
    result /= JOINT_STEPS
    return result


class JointMsg(msgspec.Struct):
    """The canonical ``/joints/<robot>`` message."""

    robot: str
    name: list[str]
    stamp_ns: int
    seq: int
    epoch: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


class JointTail(msgspec.Struct):
    """The per-message part of a joint state; the constant prefix is precomputed."""

    stamp_ns: int
    seq: int
    epoch: int
    position: list[float]
    velocity: list[float]
    effort: list[float]


class HeartbeatMsg(msgspec.Struct):
    robot: str
    stamp_ns: int
    seq: int
    epoch: int
    mode: str
    estop: bool
    protective_stop: bool
    manufacturer: str
    model: str
    task: str
    grip_closed: bool = False
    holding: str = ""
    cycle: int = 0
    lessons: list[str] = msgspec.field(default_factory=list)
    step: str = ""


class Time(msgspec.Struct):
    sec: int
    nsec: int


class Vector3(msgspec.Struct):
    x: float
    y: float
    z: float


class Quaternion(msgspec.Struct):
    x: float
    y: float
    z: float
    w: float


class Pose(msgspec.Struct):
    position: Vector3
    orientation: Quaternion


class PoseInFrame(msgspec.Struct):
    timestamp: Time
    frame_id: str
    pose: Pose


class CraneMsg(msgspec.Struct):
    crane: str
    stamp_ns: int
    seq: int
    epoch: int
    bridge_m: float
    trolley_m: float
    hoist_m: float
    moving: bool


class EventMsg(msgspec.Struct):
    id: int
    stamp_ns: int
    kind: str
    source: str
    detail: str


_encode: Final = msgspec.json.Encoder().encode


def canonical_message(
    source: str, kind: Kind, payload: bytes, seq: int, stamp_ns: int, epoch: int
) -> tuple[bytes, Any]:
    """A heartbeat's, base state's or crane state's canonical JSON message, and what the
    Foxglove channels draw of it (a base's (position, orientation), a crane's (bridge,
    trolley, hoist); None for a heartbeat). FrameError if the payload does not decode."""
    decoded = decode_payload(kind, payload)
    if isinstance(decoded, Heartbeat):
        return _encode(
            HeartbeatMsg(
                source, stamp_ns, seq, epoch, decoded.mode, decoded.estop,
                decoded.protective_stop, decoded.manufacturer, decoded.model, decoded.task,
                decoded.grip_closed, decoded.holding, decoded.cycle, list(decoded.lessons),
                decoded.step,
            )
        ), None  # fmt: skip
    if isinstance(decoded, BaseState):
        p, q = decoded.position_m, decoded.orientation_xyzw
        sec, nsec = divmod(stamp_ns, 1_000_000_000)
        body = PoseInFrame(Time(sec, nsec), "hall", Pose(Vector3(*p), Quaternion(*q)))
        return _encode(body), (p, q)
    if isinstance(decoded, CraneState):
        return _encode(
            CraneMsg(
                source, stamp_ns, seq, epoch, decoded.bridge_m, decoded.trolley_m,
                decoded.hoist_m, decoded.moving,
            )
        ), (decoded.bridge_m, decoded.trolley_m, decoded.hoist_m)  # fmt: skip
    raise TypeError(f"unexpected payload {type(decoded).__name__}")


def object(properties: dict[str, Any], title: str, description: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }


_INT: Final = {"type": "integer"}
_STR: Final = {"type": "string"}
_BOOL: Final = {"type": "boolean"}
_NUM: Final = {"type": "number"}
_NUMS: Final = {"type": "array", "items": _NUM}
_XYZ: Final = {"x": _NUM, "y": _NUM, "z": _NUM}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "hall_twin.JointState": object(
        {
            "robot": _STR,
            "name": {"type": "array", "items": _STR},
            "stamp_ns": _INT,
            "seq": _INT,
            "epoch": _INT,
            "position": _NUMS,
            "velocity": _NUMS,
            "effort": _NUMS,
        },
        "hall_twin.JointState",
        "Joint state in canonical names (wire order); position rad (m for prismatic "
        "joints), velocity rad/s (m/s), effort N*m (N); stamp_ns is the sender's clock.",
    ),
    "hall_twin.JointBlock": object(
        {
            "robot": _STR,
            "name": {"type": "array", "items": _STR},
            "count": _INT,
            **{
                field: object(
                    {
                        "encoding": _STR,
                        "data": {"type": "string", "contentEncoding": "binary"},
                        "scale": _NUM,
                        "width": _INT,
                        "base": {"type": "string", "contentEncoding": "binary"},
                    },
                    "hall_twin.Column",
                )
                for field in (
                    "log_time_ns",
                    "stamp_ns",
                    "seq",
                    "epoch",
                    "position",
                    "velocity",
                    "effort",
                )
            },
        },
        "hall_twin.JointBlock",
        "MessagePack. count joint states of one robot in canonical names, as received: each "
        "field a column of count rows (x joints), value = k / scale; 'delta' columns: the "
        "first row int64 little-endian (base), then row differences zigzag-coded as "
        "width-byte unsigned integers stored as byte planes (data); 'f8': float64 values; "
        "'i8': int64 values. position rad (m), velocity rad/s (m/s), effort N*m (N); "
        "log_time_ns the twin's receive time, stamp_ns the sender's clock. See "
        "twin/record/joint_blocks.py.",
    ),
    "hall_twin.Heartbeat": object(
        {
            "robot": _STR,
            "stamp_ns": _INT,
            "seq": _INT,
            "epoch": _INT,
            "mode": _STR,
            "estop": _BOOL,
            "protective_stop": _BOOL,
            "manufacturer": _STR,
            "model": _STR,
            "task": _STR,
            "grip_closed": _BOOL,
            "holding": _STR,
            "cycle": _INT,
            "lessons": {"type": "array", "items": _STR},
            "step": _STR,
        },
        "hall_twin.Heartbeat",
        "A gateway's heartbeat; cycle counts the task loop's restarts since the task began; "
        "lessons are the ids of the lessons the robot acts on; step is the task step or motion "
        "phase it is in.",
    ),
    "foxglove.PoseInFrame": object(
        {
            "timestamp": object({"sec": _INT, "nsec": _INT}, "time"),
            "frame_id": _STR,
            "pose": object(
                {
                    "position": object(_XYZ, "foxglove.Vector3"),
                    "orientation": object({**_XYZ, "w": _NUM}, "foxglove.Quaternion"),
                },
                "foxglove.Pose",
            ),
        },
        "foxglove.PoseInFrame",
        "Base (pelvis) pose in the hall frame, metres; velocities and IMU: see /raw/base/.",
    ),
    "hall_twin.Crane": object(
        {
            "crane": _STR,
            "stamp_ns": _INT,
            "seq": _INT,
            "epoch": _INT,
            "bridge_m": _NUM,
            "trolley_m": _NUM,
            "hoist_m": _NUM,
            "moving": _BOOL,
        },
        "hall_twin.Crane",
    ),
    "hall_twin.Event": object(
        {"id": _INT, "stamp_ns": _INT, "kind": _STR, "source": _STR, "detail": _STR},
        "hall_twin.Event",
    ),
}
