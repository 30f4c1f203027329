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
from twin.preview.checks import Checks, push_shift_m, support_margin
from twin.preview.compile import CompiledTask
from twin.preview.hall import PreviewHall
from twin.preview.kinematics import Kinematics, hand_joint
from twin.preview.result import TIME_STEP_S, Variation
from twin.preview.stance import GRAVITY_M_S2, StanceControl
from twin.preview.support import Support
from twin.preview.surroundings import Surroundings

log = logging.getLogger(__name__)

CHECK_EVERY: Final = 4
BALANCE_EVERY: Final = 12
POSITION_GAIN: Final = 0.3
"""Position gain of the arm, torso and neck motors (they hold loads against gravity)."""
LEG_POSITION_GAIN: Final = 0.05
"""Legs in a walk: soft (the stabilised base carries the body; stiff legs fight the floor)."""
STANDING_LEG_POSITION_GAIN: Final = 0.3
"""Legs standing on their own (outside walks): they carry the body."""
SUPPORT_RAMP_S: Final = 0.3
"""The stabiliser takes hold over this long at a walk's start and lets go over this long once
the robot stands after it; outside that it applies no force at all."""
LANDING_S: Final = 0.3
"""Carried throughout, the last instants of a walk blend into the next step: the feet land."""
SETTLE_MAX_S: Final = 0.5
LANDED_SHARE: Final = 0.3
LANDED_TICKS: Final = 6
"""After a walk the robot has landed when both feet bear LANDED_SHARE of its weight for
LANDED_TICKS control ticks in a row (a soft-legged gait's feet bounce)."""
"""After a walk, the stance starts when both feet are down, or this long after its end."""
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
        # the plan's joint targets in the motors' order, for the control loop's lookups
        self.plan_matrix = self.table.joint_matrix(self.hall.canonical)
        body, client = self.hall.body, self.hall.client
        masses = {
            link: float(pb.getDynamicsInfo(body, link, physicsClientId=client)[0])
            for link in range(-1, pb.getNumJoints(body, physicsClientId=client))
        }
        planned_com, self.planned_margins = [], []
        self.pushed_margins: list[tuple[float, float | None, float, float]] = []
        """On its own feet, per keyframe under a working stroke: (the stroke's start s, the
        margin of the centre of pressure its push moves from under the CoM, the push N, its
        height m)."""
        weight_n = sum(masses.values()) * GRAVITY_M_S2
        with Kinematics(model) as kin:
            for f in _filled_frames(plan.frames, self.rest):
                joints = {**self.rest, **f.joints_rad}
                load = next((ld for ld in compiled.loads if ld.start_s <= f.t_s <= ld.end_s), None)
                height = kin.pelvis_over_feet(joints, f.pelvis_pitch_rad)[2] if load else 0.0
                com = kin.com_over_feet(joints, f.pelvis_pitch_rad, masses)
                planned_com.append(com)
                outline = kin.feet_outline()
                self.planned_margins.append(support_margin(outline, np.array(com)))
                if load is not None and compiled.balance.whole_body:
                    up = height + kin.link_com(hand_joint(model, load.hand))[2]
                    c, s = math.cos(f.base_xy_yaw[2]), math.sin(f.base_xy_yaw[2])
                    dx, dy = load.direction[0], load.direction[1]
                    push = np.array([c * dx + s * dy, -s * dx + c * dy]) * load.force_n
                    cop = np.array(com) + push_shift_m(push, up, weight_n)
                    margin = support_margin(outline, cop)
                    self.pushed_margins.append((load.start_s, margin, load.force_n, up))
        self.planned_com = np.array(planned_com)
        """Per keyframe, the centre of mass (forward, left) from the feet's midpoint (m): the
        stance controller's reference."""

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
        legs = [any(part in c for part in LEG_PARTS) for c in hall.canonical]
        self._leg_mask = np.array(legs, dtype=bool)
        self.walk_gains = [LEG_POSITION_GAIN if leg else POSITION_GAIN for leg in legs]
        self.standing_gains = [STANDING_LEG_POSITION_GAIN if leg else POSITION_GAIN for leg in legs]
        self.position_gains = self.standing_gains if self.on_own_feet else self.walk_gains
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
        self._plan_balance()
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
        self._com_last: NDArray[np.float64] | None = None
        self._standing = False
        self._stance_last: NDArray[np.float64] | None = None
        self.stepping = False
        self.share = 0.0 if self.on_own_feet else 1.0
        self._phase_since_s = -SUPPORT_RAMP_S  # on its own feet from the first instant
        self._walk_end_s: float | None = None
        self._down_ticks = 0
        self._load_share = 0.0
        self._letting_go = False
        self.fallen = False
        self.support = Support({link: hall.link_names[link] for link in self.feet})
        self._com_speed = np.zeros(2)
        self._all_links = list(range(pb.getNumJoints(hall.body, physicsClientId=client)))
        self.stance = (
            StanceControl(
                model,
                [hall.link_names[f] for f in self.feet],
                [hall.link_names[link] for link in self.hand_link.values()],
                hall.canonical,
                list(self.hand_link),
            )
            if self.on_own_feet
            else None
        )

    def com_world_xy(self) -> NDArray[np.float64]:
        """The robot's centre of mass on the floor plane now (hall frame, m)."""
        hall, client = self.hall, self.hall.client
        states = pb.getLinkStates(hall.body, self._all_links, physicsClientId=client)
        base = pb.getBasePositionAndOrientation(hall.body, physicsClientId=client)[0]
        masses = self.link_masses
        total = masses[-1]
        x, y = base[0] * total, base[1] * total
        for i, state in zip(self._all_links, states, strict=True):
            m = masses[i]
            x += state[0][0] * m
            y += state[0][1] * m
            total += m
        return np.array([x / total, y / total])

    def _plan_balance(self) -> None:
        """The plan itself, outside walks, must stand with its centre of mass over its feet:
        a pose that only a hidden support could hold fails on ``balance`` whatever carries the
        robot in the run."""
        walks = {s.index for s in self.c.steps if s.kind == "walk"}
        self.min_planned_margin_m = math.inf
        for frame, margin in zip(self.c.plan.frames, self.planned_margins, strict=True):
            if frame.step in walks or margin is None:
                continue
            self.min_planned_margin_m = min(self.min_planned_margin_m, margin)
            if margin < 0.0:
                self.checks.raise_once(
                    "balance", "plan", frame.step, frame.t_s * self.time_scale,
                    f"the plan's centre of mass is {-margin * 100:.1f} cm outside the feet "
                    "(only a support could hold this pose)",
                )  # fmt: skip
        # on its own feet, a pose under a stroke's push must hold it too: the push's tipping
        # moment moves the centre of pressure F*h/(m*g) from under the CoM
        for t_s, pushed, force_n, up_m in self.pushed_margins:
            if pushed is None or pushed >= 0.0:
                continue
            step = self.step_at(t_s * self.time_scale)
            self.checks.raise_once(
                "balance", "plan push", step, t_s * self.time_scale,
                f"under the stroke's {force_n:.0f} N push {up_m:.2f} m up, the plan's centre "
                f"of pressure is {-pushed * 100:.1f} cm outside the feet (only a support could "
                "hold this pose)",
            )  # fmt: skip

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

    @property
    def on_own_feet(self) -> bool:
        """True when the plan's standing poses were balanced: the stabiliser holds only walks."""
        return self.c.balance.whole_body

    def in_walk_span(self, t_s: float) -> bool:
        """True inside a walk step's span (plan time)."""
        tp = self.plan_time(t_s)
        return any(s.kind == "walk" and s.start_s <= tp < s.end_s for s in self.c.steps)

    def update_phase(self, t_s: float) -> None:
        """Advance the support phase at a control tick (see :attr:`stepping`, :attr:`share`).

        A robot on its own feet steps (soft legs, the stabiliser carrying it, taking hold over
        SUPPORT_RAMP_S) inside a walk's span and after it until both feet are on the floor
        (at most SETTLE_MAX_S); then it stands (the stance controller) while the stabiliser
        lets go over SUPPORT_RAMP_S. A robot that is not on its own feet is carried always."""
        if not self.on_own_feet:
            self.stepping, self.share = True, 1.0
            return
        if self.in_walk_span(t_s):
            if not self.stepping:
                self.stepping, self._phase_since_s = True, t_s
            self.share = min(1.0, (t_s - self._phase_since_s) / SUPPORT_RAMP_S)
            self._walk_end_s = None
            return
        if self.stepping:
            if self._walk_end_s is None:
                self._walk_end_s = t_s
            self._down_ticks = self._down_ticks + 1 if self.feet_down() else 0
            landed = self._down_ticks >= LANDED_TICKS or t_s - self._walk_end_s >= SETTLE_MAX_S
            if not landed:
                self.share = 1.0
                return
            self.stepping, self._phase_since_s = False, t_s
        self.share = max(0.0, 1.0 - (t_s - self._phase_since_s) / SUPPORT_RAMP_S)

    def feet_down(self) -> bool:
        """True when every foot touches the floor and they bear LANDED_SHARE of the weight."""
        hall = self.hall
        contacts = pb.getContactPoints(hall.body, hall.floor, physicsClientId=hall.client) or ()
        touching = {int(c[3]) for c in contacts}
        load_n = sum(float(c[9]) for c in contacts)
        return all(foot in touching for foot in self.feet) and (
            load_n >= LANDED_SHARE * hall.weight_n
        )

    def handing_over(self, t_s: float) -> bool:
        """On its own feet, while the stabiliser takes hold before a walk or lets go after one
        (and while the feet land after its span)."""
        if not self.on_own_feet:
            return False
        return 0.0 < self.share < 1.0 or (self.stepping and not self.in_walk_span(t_s))

    def walking_now(self, t_s: float) -> bool:
        """True while balance is not judged: on its own feet, while the robot steps or the
        stabiliser still holds some of it; carried, inside a walk step and LANDING_S after."""
        if self.on_own_feet:
            return self.stepping or self.share > 0.0
        tp = self.plan_time(t_s)
        return any(s.kind == "walk" and s.start_s <= tp < s.end_s + LANDING_S for s in self.c.steps)

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
