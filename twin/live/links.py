"""What the twin knows about each telemetry source: latest state and its bookkeeping.

A :class:`RobotLink` or :class:`CraneLink` holds the newest decoded state of one robot
or crane, its per-stream sequence trackers, liveness clock, rate and delay meters. The
mirror (:mod:`twin.live.mirror`) feeds it messages and applies its state to the world.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel, get_model
from scenes.model import Scene
from sync.codecs import JointSample, VendorCodec, codec_for
from sync.fanout import CraneView, RobotView
from sync.protocol import BaseState, CraneState, Heartbeat, Kind
from sync.streams import DelayMeter, Liveness, LivenessClock, RateMeter, StreamTracker

Array = NDArray[np.float64]
CRANE_PERIOD_S = 0.1  # cranes report at 10 Hz or faster


@dataclass
class RobotLink:
    """One robot: model, codec, newest state, and stream bookkeeping."""

    robot_id: str
    model: RobotModel
    task: str
    home_position_m: tuple[float, float, float]
    home_orientation_xyzw: tuple[float, float, float, float]
    joint_indices: list[int]  # PyBullet joint index per wire-order joint
    codec: VendorCodec = field(init=False)
    streams: dict[Kind, StreamTracker] = field(default_factory=dict)
    liveness: LivenessClock = field(init=False)
    reported: Liveness = Liveness.GONE
    # monotonic time the current liveness began: a robot never seen has been GONE since the
    # twin started (not since the host booted)
    reported_since_ns: int = field(default_factory=time.monotonic_ns)
    rate_in: RateMeter = field(default_factory=RateMeter)
    rate_out: RateMeter = field(default_factory=RateMeter)
    delay: DelayMeter = field(default_factory=DelayMeter)
    joint_messages: int = 0
    joint_rate_hz: float = 0.0
    _joint_messages_at_roll: int = 0
    _joint_window_start_ns: int | None = None
    raw_joints: Array | NDArray[np.float32] | None = None  # newest, checked, wire units
    # newest, checked, of a packed encoding, not yet viewed as an array (wire_joints() does)
    raw_payload: bytes | None = None
    # the applied state (the twin's state), converted to SI when first read (``joints``)
    _applied_payload: bytes | None = None
    _applied_raw: Array | NDArray[np.float32] | None = None
    _joints: JointSample | None = None
    _converted: bool = True
    joints_stamp_ns: int = 0  # stamp of raw_joints
    joints_dirty: bool = False  # raw_joints is newer than ``joints``
    applied_mono_ns: int = 0  # when the twin last applied this robot's joints (take_joints)
    world_behind: bool = False  # the PyBullet body does not hold ``joints`` yet
    base: BaseState | None = None
    base_dirty: bool = False
    heartbeat: Heartbeat | None = None
    view_dirty: bool = True  # changed since the last fan-out update
    last_view: RobotView | None = None  # as last published on the fan-out
    epoch: int = 0
    epochs_interleaved: int = 0  # frames of a retired epoch after a new one took over
    interleave_told: int = 0  # the epoch a takeover event was raised for
    went_stale: int = 0  # times the twin called it STALE after LIVE or LATE
    went_late: int = 0  # times the twin called it LATE after LIVE
    frames_in: int = 0  # every frame whose topic names this robot, accepted or refused
    refused: Counter[str] = field(default_factory=Counter)  # by reason

    def __post_init__(self) -> None:
        self.codec = codec_for(self.model)
        self.liveness = LivenessClock(period_s=1.0 / self.model.profile.rate_hz)

    def tracker(self, kind: Kind) -> StreamTracker:
        """The sequence tracker of one of this robot's streams."""
        tracker = self.streams.get(kind)
        if tracker is None:
            tracker = self.streams[kind] = StreamTracker()
        return tracker

    def wire_joints(self) -> Array | NDArray[np.float32] | None:
        """The newest checked joint state in wire units, shape (3, N) (None before any)."""
        if self.raw_payload is not None:
            self.raw_joints = self.codec.view(self.raw_payload)
            self.raw_payload = None
        return self.raw_joints

    def take_joints(self) -> None:
        """Make the newest checked joint state the applied one (the twin's state). Cheap:
        its conversion to SI waits for the first read of :attr:`joints`."""
        if self.raw_payload is None and self.raw_joints is None:
            raise RuntimeError(f"{self.robot_id}: no joint state yet")
        self._applied_payload, self._applied_raw = self.raw_payload, self.raw_joints
        self._converted = False
        self.joints_dirty = False

    @property
    def joints(self) -> JointSample | None:
        """The applied joint state in SI units, wire order (None before any)."""
        if not self._converted:
            payload = self._applied_payload
            raw = self._applied_raw if payload is None else self.codec.view(payload)
            self._joints = None if raw is None else self.codec.to_sample(raw)
            self._applied_payload = self._applied_raw = None
            self._converted = True
        return self._joints

    def roll_rates(self, now_mono_ns: int) -> None:
        """Close the per-second rate windows (called every tick)."""
        self.rate_in.roll(now_mono_ns)
        self.rate_out.roll(now_mono_ns)
        start = self._joint_window_start_ns
        if start is None:
            self._joint_window_start_ns = now_mono_ns
        elif now_mono_ns - start >= 1_000_000_000:
            seconds = (now_mono_ns - start) / 1e9
            self.joint_rate_hz = (self.joint_messages - self._joint_messages_at_roll) / seconds
            self._joint_messages_at_roll = self.joint_messages
            self._joint_window_start_ns = now_mono_ns

    @property
    def gaps(self) -> int:
        """Messages missing across all of this robot's streams."""
        return sum(t.gaps for t in self.streams.values())

    def view(self) -> RobotView:
        """The canonical view the fan-out and the snapshot carry."""
        joints = self.joints
        hb = self.heartbeat
        base_position = self.base.position_m if self.base else self.home_position_m
        base_orientation = self.base.orientation_xyzw if self.base else self.home_orientation_xyzw
        return RobotView(
            robot_id=self.robot_id,
            manufacturer=self.model.manufacturer,
            model=self.model.name,
            task=self.task,
            liveness=str(self.reported),
            stamp_ns=self.joints_stamp_ns,
            epoch=self.epoch,
            joint_names=list(self.codec.canonical_names),
            positions=joints.positions.tolist() if joints else [],
            velocities=joints.velocities.tolist() if joints else [],
            efforts=joints.efforts.tolist() if joints else [],
            base_position_m=base_position,
            base_orientation_xyzw=base_orientation,
            mode=hb.mode if hb else "unknown",
            estop=hb.estop if hb else False,
            protective_stop=hb.protective_stop if hb else False,
            in_bytes_per_s=self.rate_in.bytes_per_s,
            in_msgs_per_s=self.rate_in.msgs_per_s,
            out_bytes_per_s=self.rate_out.bytes_per_s,
        )

    def status(self, now_mono_ns: int) -> dict[str, Any]:
        """One row of ``twin status``."""
        latency = self.delay.percentiles_ms(now_ns=now_mono_ns)
        raw = self.delay.percentiles_ms(raw=True, now_ns=now_mono_ns)
        js = self.streams.get(Kind.JOINT_STATE)
        last = self.liveness.last_rx_ns
        return {
            "robot": self.robot_id,
            "manufacturer": self.model.manufacturer,
            "model": self.model.name,
            "liveness": str(self.reported),
            "nominal_rate_hz": self.model.profile.rate_hz,
            "rate_hz": round(self.joint_rate_hz, 1),
            "in_msgs_per_s": round(self.rate_in.msgs_per_s, 1),
            "in_bytes_per_s": round(self.rate_in.bytes_per_s, 1),
            "out_bytes_per_s": round(self.rate_out.bytes_per_s, 1),
            "received": self.frames_in,
            "accepted": sum(t.received for t in self.streams.values()),
            "refused": dict(self.refused),
            "gaps": self.gaps,
            "joint_state_gaps": js.gaps if js else 0,
            "stale_seq": sum(t.stale for t in self.streams.values()),
            "stale_epoch": sum(t.stale_epoch for t in self.streams.values()),
            "joined_mid_epoch": sum(t.joined_mid_epoch for t in self.streams.values()),
            "epoch": self.epoch,
            "epoch_changes": max((t.epoch_changes for t in self.streams.values()), default=0),
            "latency_ms_p50": round(latency[0], 3) if latency else None,
            "latency_ms_p99": round(latency[1], 3) if latency else None,
            "clock_offset_ms": round(self.delay.offset_ns / 1e6, 3),
            # stamp to applied without the offset estimate: true when clocks agree
            "delay_ms_p50": round(raw[0], 3) if raw else None,
            "delay_ms_p99": round(raw[1], 3) if raw else None,
            "last_seen_s_ago": round((now_mono_ns - last) / 1e9, 4) if last else None,
            "went_stale": self.went_stale,
            "went_late": self.went_late,
            "epochs_interleaved": self.epochs_interleaved,
            "liveness_for_s": round((now_mono_ns - self.reported_since_ns) / 1e9, 4),
            "mode": self.heartbeat.mode if self.heartbeat else "unknown",
            "estop": self.heartbeat.estop if self.heartbeat else False,
            # the lessons the robot's gateway says it acts on now
            "lessons": list(self.heartbeat.lessons) if self.heartbeat else [],
        }


@dataclass
class CraneLink:
    """One crane: newest state and its stream bookkeeping."""

    crane_id: str
    travel_m: dict[str, tuple[float, float]]  # axis -> (low, high), hall coordinates
    stream: StreamTracker = field(default_factory=StreamTracker)
    liveness: LivenessClock = field(default_factory=lambda: LivenessClock(CRANE_PERIOD_S))
    reported: Liveness = Liveness.GONE
    rate_in: RateMeter = field(default_factory=RateMeter)
    state: CraneState | None = None
    stamp_ns: int = 0
    dirty: bool = False
    view_dirty: bool = True
    frames_in: int = 0  # every frame whose topic names this crane, accepted or refused
    refused: Counter[str] = field(default_factory=Counter)  # by reason
    refused_by_world: int = 0  # accepted states the world's travel limits then refused

    def view(self, fallback: dict[str, float]) -> CraneView:
        """The crane's view (the world's positions until the crane reports)."""
        state = self.state
        return CraneView(
            crane_id=self.crane_id,
            liveness=str(self.reported),
            stamp_ns=self.stamp_ns,
            bridge_m=state.bridge_m if state else fallback["bridge"],
            trolley_m=state.trolley_m if state else fallback["trolley"],
            hoist_m=state.hoist_m if state else fallback["hoist"],
            moving=state.moving if state else False,
        )

    def status(self) -> dict[str, Any]:
        """One crane row of ``twin status``."""
        return {
            "crane": self.crane_id,
            "liveness": str(self.reported),
            "received": self.frames_in,
            "accepted": self.stream.received,
            "refused": dict(self.refused),
            "gaps": self.stream.gaps,
            "joined_mid_epoch": self.stream.joined_mid_epoch,
            "refused_by_world": self.refused_by_world,
            "in_msgs_per_s": round(self.rate_in.msgs_per_s, 1),
        }


def crane_links(scene: Scene) -> dict[str, CraneLink]:
    """A link per crane of the scene, with its travel limits."""
    return {
        c.id: CraneLink(
            c.id,
            {"bridge": c.bridge.travel, "trolley": c.trolley.travel, "hoist": c.hoist.travel},
        )
        for c in scene.cranes
    }


def bare_robot_links(scene: Scene) -> dict[str, RobotLink]:
    """A link per robot of the scene with no world behind it (no home pose, no PyBullet
    joints): what an ingest worker keeps, which only checks and counts."""
    return {
        r.id: RobotLink(
            robot_id=r.id,
            model=get_model(r.model),
            task=r.task,
            home_position_m=(0.0, 0.0, 0.0),
            home_orientation_xyzw=(0.0, 0.0, 0.0, 1.0),
            joint_indices=[],
        )
        for r in scene.robots
    }
