"""The state of one preview run and its set-up: the hall, the plan's table, the motors' limits
and gains, the checks, the hands' links, and the variation's perturbations.

:class:`RunState` is the base the run's parts (:mod:`twin.preview.control`,
:mod:`twin.preview.grasping`, :mod:`twin.preview.run_checks`) share; :mod:`twin.preview.engine`
steps it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots.bullet import pb
from scenes.model import Scene
from twin.plan.model import PlanTable
from twin.preview.checks import Checks
from twin.preview.compile import CompiledTask
from twin.preview.hall import PreviewHall
from twin.preview.kinematics import Kinematics, hand_joint
from twin.preview.result import TIME_STEP_S, Variation
from twin.preview.surroundings import Surroundings

log = logging.getLogger(__name__)

CHECK_EVERY: Final = 4
BALANCE_EVERY: Final = 12
POSITION_GAIN: Final = 0.3
"""Position gain of the arm, torso and neck motors (they hold loads against gravity)."""
LEG_POSITION_GAIN: Final = 0.05
"""Legs: soft (the stabilised base carries the body; stiff legs fight the floor at every step)."""
LEG_PARTS: Final = ("hip", "knee", "ankle")


Observer = Callable[[float, PreviewHall], None]
"""Called after every physics step with the simulated time (s) and the hall (a recorder)."""


class RunState:
    """The state of one run, set up for stepping (see :class:`twin.preview.engine._Run`)."""

    def __init__(
        self,
        compiled: CompiledTask,
        scene: Scene,
        variation: Variation,
        observer: Observer | None,
        keep_series: bool,
        surroundings: Surroundings | None = None,
    ) -> None:
        self.c = compiled
        self.scene = scene
        self.var = variation
        self.observer = observer
        self.keep_series = keep_series
        self.rng = np.random.default_rng(variation.seed)
        self.time_scale = self._factor(variation.timing_sigma)
        plan = compiled.plan
        model = compiled.model
        self.rest = compiled.rest_rad
        with Kinematics(model) as kin:
            self.heights = [
                kin.pelvis_over_feet({**self.rest, **f.joints_rad}, f.pelvis_pitch_rad)[2]
                for f in _filled_frames(plan.frames, self.rest)
            ]
        self.frame_times = np.array([f.t_s for f in plan.frames])
        self.table = PlanTable(plan, self.rest)
        first = self.table.at(0.0)
        start = (first.base_xy_yaw[0], first.base_xy_yaw[1], self.heights[0])
        self.hall = PreviewHall(
            scene, plan.robot, start, first.base_xy_yaw[2], first.pelvis_pitch_rad,
            first.joints_rad, time_step_s=TIME_STEP_S, surroundings=surroundings,
        )  # fmt: skip

    def _factor(self, sigma: float) -> float:
        if sigma == 0.0:
            return 1.0
        return max(0.3, 1.0 + sigma * float(self.rng.standard_normal()))

    # -- set-up -------------------------------------------------------------------------

    def _setup(self) -> None:
        hall, model = self.hall, self.c.model
        client = hall.client
        joints = hall.motor_joints
        self.n = len(joints)
        self.forces = [j.effort_limit if math.isfinite(j.effort_limit) else 100.0 for j in joints]
        self.position_gains = [
            LEG_POSITION_GAIN if any(part in c for part in LEG_PARTS) else POSITION_GAIN
            for c in hall.canonical
        ]
        self.lower = np.array([j.lower for j in joints])
        self.upper = np.array([j.upper for j in joints])
        self.gripper = np.array(
            [
                j.kind == "prismatic" and c == j.name
                for j, c in zip(joints, hall.canonical, strict=True)
            ]
        )
        self.friction_scale = self._factor(self.var.friction_sigma)
        self._perturb()
        self.link_masses = {
            link: pb.getDynamicsInfo(hall.body, link, physicsClientId=client)[0]
            for link in range(-1, pb.getNumJoints(hall.body, physicsClientId=client))
        }
        self.checks = Checks(
            hall.canonical, self.lower, self.upper, np.array(self.forces),
            max_effort_fraction=self.c.task.limits.max_effort_fraction,
            max_joint_limit_fraction=self.c.task.limits.max_joint_limit_fraction
            * self.var.limit_range_scale,
            min_clearance_m=self.c.task.limits.min_clearance,
            check_dt_s=CHECK_EVERY * TIME_STEP_S,
        )  # fmt: skip
        self.hand_links = {side: self._chain(side) for side in ("left", "right")}
        self.hand_link: dict[str, int] = {
            side: hall.link_of(hand_joint(model, side))
            for side in ("left", "right")
            if side in self._sides()
        }
        self.held: dict[str, tuple[int, int, str, NDArray[np.float64]]] = {}
        self._previous_targets: NDArray[np.float64] | None = None
        self.dropped: set[str] = set()
        self.max_hand_error = 0.0
        self.max_stabiliser = 0.0
        self.feet = [
            link for link, name in hall.link_names.items() if "foot" in name.lower() and link >= 0
        ]
        self._sole_offset_m = 0.0  # the hold's height correction that keeps a sole on the floor

    def _sides(self) -> set[str]:
        sides = set()
        for side in ("left", "right"):
            try:
                hand_joint(self.c.model, side)
            except KeyError:
                continue
            sides.add(side)
        return sides

    def _chain(self, side: str) -> set[int]:
        """Links from the forearm out (the hand at work may touch what it works on)."""
        try:
            root = self.hall.link_of(f"{side}_elbow")
        except KeyError:
            return set()
        hall = self.hall
        out = {root}
        changed = True
        while changed:
            changed = False
            for i in range(pb.getNumJoints(hall.body, physicsClientId=hall.client)):
                parent = pb.getJointInfo(hall.body, i, physicsClientId=hall.client)[16]
                if parent in out and i not in out:
                    out.add(i)
                    changed = True
        return out

    def _perturb(self) -> None:
        hall, var, client = self.hall, self.var, self.hall.client
        if var.is_nominal:
            return
        for link in range(-1, pb.getNumJoints(hall.body, physicsClientId=client)):
            info = pb.getDynamicsInfo(hall.body, link, physicsClientId=client)
            scale = self._factor(var.mass_sigma)
            pb.changeDynamics(
                hall.body, link, mass=info[0] * scale,
                localInertiaDiagonal=[v * scale for v in info[2]],
                lateralFriction=info[1] * self.friction_scale, physicsClientId=client,
            )  # fmt: skip
        pb.changeDynamics(
            hall.floor, -1,
            lateralFriction=pb.getDynamicsInfo(hall.floor, -1, physicsClientId=client)[1]
            * self.friction_scale, physicsClientId=client,
        )  # fmt: skip
        for bench in self.scene.benches:
            for item in bench.items:
                body = hall.item_body(item.id)
                info = pb.getDynamicsInfo(body, -1, physicsClientId=client)
                if item.fixed:
                    continue
                pb.changeDynamics(
                    body, -1, mass=info[0] * self._factor(var.mass_sigma) * var.payload_scale,
                    lateralFriction=info[1] * self.friction_scale, physicsClientId=client,
                )  # fmt: skip
                pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
                dx, dy = (float(v) for v in self.rng.normal(0.0, var.noise_sigma_m, 2))
                pb.resetBasePositionAndOrientation(
                    body, (pos[0] + dx, pos[1] + dy, pos[2]), orn, physicsClientId=client
                )

    def plan_time(self, t_s: float) -> float:
        """Plan time at simulated time ``t_s``."""
        return t_s / self.time_scale

    def step_at(self, t_s: float) -> int:
        """Index of the task step running at simulated time ``t_s``."""
        tp = self.plan_time(t_s)
        for span in self.c.steps:
            if tp < span.end_s:
                return span.index
        return self.c.steps[-1].index if self.c.steps else 0


def _filled_frames(frames: list[Any], rest: dict[str, float]) -> list[Any]:
    """Each frame with its full joints (carrying earlier values forward)."""
    current = dict(rest)
    out = []
    for frame in frames:
        current = {**current, **frame.joints_rad}
        out.append(type(frame)(**{**_fields(frame), "joints_rad": dict(current)}))
    return out


def _fields(frame: Any) -> dict[str, Any]:
    return {name: getattr(frame, name) for name in frame.__struct_fields__}
