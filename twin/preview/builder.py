"""The core of the task→plan compiler: the robot's state while the steps are walked through (its
joints, lean, grip, heading and where its feet stand) and the keyframes it emits.

:class:`BuilderCore` is the base the step compilers (:mod:`twin.preview.gait`,
:mod:`twin.preview.hands`) share; :mod:`twin.preview.compile` runs them over a task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Final

from robots import RobotModel
from scenes.model import Scene
from scenes.tasks import Task
from twin.plan.model import PlanFrame
from twin.preview.compiled import CompileNote, GraspSpan, HandTarget, StepSpan, WrenchLoad
from twin.preview.kinematics import Kinematics

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]

PLAN_LIMIT_MARGIN_RAD: Final = 0.02
PACED_LEG_RAD_S: Final = 1.0
"""On its own feet, the peak speed of a leg, torso or lean move outside walks (rad/s; a
smoothstep peaks at 1.5 times its mean)..."""
PACED_ARM_RAD_S: Final = 1.5
"""... and of any other joint's (rad/s)."""
SLOW_PARTS: Final = ("hip", "knee", "ankle", "spine")
"""The joints paced at PACED_LEG_RAD_S: they move the body's mass."""
REST_S: Final = 0.6
ARM_PARTS: Final = ("shoulder", "elbow", "wrist", "hand", "gripper")


def _arm(side: str, values: Mapping[str, float]) -> dict[str, float]:
    """One arm's angles given as for the left arm; roll and yaw mirrored for the right."""
    sign = -1.0 if side == "right" else 1.0
    return {
        f"{side}_{k}": sign * v if k.endswith(("_roll", "_yaw")) else v for k, v in values.items()
    }


REST_ARM: Final = {"shoulder_pitch": 0.0, "shoulder_roll": 0.12, "elbow": -0.3}
READY_ARM: Final = {"shoulder_pitch": 0.3, "shoulder_roll": 0.15, "elbow": -2.1}
"""The hand up at the chest (upper arm back, elbow bent): on the way to a target above the hanging
hand, the forearm comes up close to the body instead of sweeping forward into a bench."""
CARRY_ARM: Final = {"shoulder_pitch": -0.7, "shoulder_roll": 0.15, "elbow": -1.4}
"""A hand holding something while the robot walks."""


class BuilderCore:
    """Walks through the steps, keeping the robot's state and emitting keyframes."""

    def __init__(
        self,
        task: Task,
        scene: Scene,
        model: RobotModel,
        kinematics: Kinematics,
        start_xyz: Vec3,
        start_yaw_rad: float,
    ) -> None:
        self.task = task
        self.scene = scene
        self.model = model
        self.kin = kinematics
        self.names = [
            model.profile.canonical_name(j.name)
            for j in model.joints
            if j.kind != "spherical" and model.profile.canonical_name(j.name) != j.name
        ]
        self.limits = {n: (model.joint(n).lower, model.joint(n).upper) for n in self.names}
        self.rest = self._clip(
            {n: 0.0 for n in self.names} | _arm("left", REST_ARM) | _arm("right", REST_ARM)
        )
        self.joints = dict(self.rest)
        self.pitch = 0.0
        self.grip = 0.0
        self.yaw = start_yaw_rad
        fwd, left, _ = kinematics.pelvis_over_feet(self.joints)
        self.feet = self._feet_from_pelvis((start_xyz[0], start_xyz[1]), fwd, left)
        self.t = 0.0
        self.frames: list[PlanFrame] = []
        self.spans: list[StepSpan] = []
        self.hands: list[HandTarget] = []
        self.grasps: list[GraspSpan] = []
        self.loads: list[WrenchLoad] = []
        self.notes: list[CompileNote] = []
        self.held: dict[str, GraspSpan] = {}
        self.grip_above_m: dict[str, float] = {}
        """Per held item: how far above its top the hand's centre of mass took it (m)."""
        self.current = 0
        self._emit(0.0)

    # -- frames -------------------------------------------------------------------------

    def clip(self, joints: Mapping[str, float]) -> dict[str, float]:
        """Joints the model has, clipped into its limits less the plan's margin."""
        return self._clip(joints)

    def _clip(self, joints: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for name, value in joints.items():
            if name not in self.limits:
                continue
            lo, hi = self.limits[name]
            lo = lo + PLAN_LIMIT_MARGIN_RAD if math.isfinite(lo) else -math.pi
            hi = hi - PLAN_LIMIT_MARGIN_RAD if math.isfinite(hi) else math.pi
            out[name] = min(max(value, min(lo, hi)), max(lo, hi))
        return out

    def _feet_from_pelvis(
        self, pelvis: tuple[float, float], fwd: float, left: float
    ) -> tuple[float, float]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (pelvis[0] - c * fwd + s * left, pelvis[1] - s * fwd - c * left)

    def pelvis_xy(self) -> tuple[float, float]:
        """Where the pelvis stands over the feet for the current pose."""
        fwd, left, _ = self.kin.pelvis_over_feet(self.joints, self.pitch)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.feet[0] + c * fwd - s * left, self.feet[1] + s * fwd + c * left)

    def pelvis_xyz(self) -> Vec3:
        """Pelvis position (hall frame) for the current pose, feet flat on the floor."""
        fwd, left, height = self.kin.pelvis_over_feet(self.joints, self.pitch)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.feet[0] + c * fwd - s * left, self.feet[1] + s * fwd + c * left, height)

    def _emit(self, dt_s: float, base_xy: tuple[float, float] | None = None) -> None:
        walking = self.task.steps[self.current].walk is not None if self.task.steps else False
        if self.paced and self.frames and not walking:
            dt_s = max(dt_s, self._paced_s())
        self.t += dt_s
        x, y = base_xy if base_xy is not None else self.pelvis_xy()
        self.frames.append(
            PlanFrame(
                t_s=round(self.t, 6),
                step=self.current,
                base_xy_yaw=(x, y, self.yaw),
                joints_rad=self._clip(self.joints),
                grip=self.grip,
                pelvis_pitch_rad=self.pitch,
            )
        )

    paced = False
    """On its own feet: no move faster than its joints can follow standing (see
    :meth:`_paced_s`)."""

    def _paced_s(self) -> float:
        """The shortest time for the move from the last frame to the current pose that keeps
        each joint's peak speed (a smoothstep peaks at 1.5x the mean) within
        PACED_LEG_RAD_S for the legs, torso and lean, PACED_ARM_RAD_S for the others."""
        last = self.frames[-1]
        before = {**self.rest, **last.joints_rad}  # a builder's frame holds every joint
        worst = abs(self.pitch - last.pelvis_pitch_rad) / PACED_LEG_RAD_S
        for name, value in self._clip(self.joints).items():
            speed = PACED_LEG_RAD_S if any(p in name for p in SLOW_PARTS) else PACED_ARM_RAD_S
            worst = max(worst, abs(value - before.get(name, value)) / speed)
        return 1.5 * worst

    def _set(self, joints: Mapping[str, float]) -> None:
        self.joints = self.joints | self._clip(joints)

    def _legs(self, knee: float, lean: float) -> dict[str, float]:
        """Both legs bent ``knee`` with the pelvis leaning ``lean``, feet flat."""
        out: dict[str, float] = {}
        for side in ("left", "right"):
            out[f"{side}_hip_pitch"] = -knee / 2.0 - lean
            out[f"{side}_knee"] = knee
            out[f"{side}_ankle_pitch"] = -knee / 2.0
        return out

    def _to_rest(self) -> None:
        """Arms (unless holding), lean and knees back to standing, if not there already."""
        wanted = dict(self.rest)
        for span in self.held.values():  # a holding arm carries in front of the body
            arm = tuple(f"{span.hand}_{part}" for part in ARM_PARTS)
            wanted = {k: v for k, v in wanted.items() if not k.startswith(arm)}
            wanted |= self._clip(_arm(span.hand, CARRY_ARM))
        wanted = {k: v for k, v in wanted.items() if "hip" not in k or k.endswith("pitch")}
        if all(abs(self.joints.get(k, 0.0) - v) < 1e-6 for k, v in wanted.items()) and (
            self.pitch == 0.0
        ):
            return
        self._set(wanted)
        self.pitch = 0.0
        self._emit(REST_S)
