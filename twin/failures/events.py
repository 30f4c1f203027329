"""What a failure is, and what the detectors read of a robot.

A :class:`FailureEvent` is what every detector raises (live in the mirror, offline on a
recording) and what the mirror publishes, the recorder writes and the dispatch gate reads.
:class:`RobotLike` is the per-robot state the detectors need, so the mirror's links and the
state rebuilt from a recording both fit.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from robots import RobotModel
from sync.codecs import JointSample
from sync.streams import Liveness, LivenessClock

Severity = Literal["warning", "error", "critical"]


class FailureEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One detected failure (``details`` is one human-readable line)."""

    id: str
    stamp_ns: int
    robot_id: str
    kind: str  # fall, joint_limit, effort, stale, collision, divergence, grasp_dropped
    severity: Severity
    details: str
    upright: bool | None = None
    """``grasp_dropped``: whether the robot stood in its working posture when the drop was seen
    (:func:`twin.failures.monitors.stands_upright`), which lets the incident's cause settle
    sooner (:mod:`twin.failures.incidents`); None: not measured (no base pose, another kind, or
    a recording made before it was)."""


class BaseLike(Protocol):
    """A base pose: :class:`sync.protocol.BaseState` or anything with the same two fields."""

    @property
    def position_m(self) -> tuple[float, float, float]: ...

    @property
    def orientation_xyzw(self) -> tuple[float, float, float, float]: ...


class GripLike(Protocol):
    """A gripper's report: :class:`sync.protocol.Heartbeat` or anything with these fields."""

    @property
    def grip_closed(self) -> bool: ...

    @property
    def holding(self) -> str: ...


class RobotLike(Protocol):
    """What the detectors read of a robot (a :class:`twin.live.links.RobotLink` fits)."""

    @property
    def model(self) -> RobotModel: ...

    @property
    def joints(self) -> JointSample | None: ...

    @property
    def base(self) -> BaseLike | None: ...

    @property
    def reported(self) -> Liveness: ...

    @property
    def liveness(self) -> LivenessClock: ...

    @property
    def heartbeat(self) -> GripLike | None: ...
