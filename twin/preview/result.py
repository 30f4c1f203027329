"""What one preview run is asked to vary and what it reports.

:class:`Variation` perturbs one run for robustness trials (friction, masses, timing, sensor
noise), drawn from its seed; :meth:`Variation.nominal` is the task as planned.
:class:`PreviewResult` is what a run saw; :meth:`PreviewResult.report` is its JSON form (the
``twin preview --json`` report). The engine that produces it is :mod:`twin.preview.engine`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Final

from twin.preview.checks import Reason

log = logging.getLogger(__name__)

TIME_STEP_S: Final = 1.0 / 240.0
GAIT: Final = "stabilised base"
OWN_FEET_GAIT: Final = (
    "own feet outside walks (whole-body balance, placo); stabilised base in walks"
)
BALANCE_NOTE: Final = (
    "centre of mass over the support polygon of the feet's floor contacts, judged outside walk "
    "steps; the pelvis is carried by a stabilised base, so a robot cannot topple in preview: "
    "max_support_force_fraction_outside_walks says how hard it was held (on its own feet: none)"
)
OWN_FEET_NOTE: Final = (
    "on its own feet outside walks: nothing holds the robot, the stance controller keeps its "
    "centre of mass over its feet, and it fails on balance if the centre of mass leaves the "
    "feet's support polygon or any support above 10 % of its weight is needed"
)


@dataclass(frozen=True)
class Variation:
    """How one trial's reality differs from the plan (all drawn from ``seed``): friction of the
    robot, floor and items times N(1, ``friction_sigma``); robot link and item masses times
    N(1, ``mass_sigma``); the plan's clock times N(1, ``timing_sigma``); items lying off their
    scene position by N(0, ``noise_sigma_m``) per axis (what the robot perceives is the scene)
    and the same noise on the measured joint angles. Factors are kept >= 0.3."""

    seed: int = 0
    friction_sigma: float = 0.0
    mass_sigma: float = 0.0
    timing_sigma: float = 0.0
    noise_sigma_m: float = 0.0
    grip_scale: float = 1.0
    """A lesson's ``grip_weakened``: every grasp holds with this fraction of its force."""
    push_delta_v_m_s: float = 0.0
    """A lesson's ``push``: the base is shoved sideways by this speed halfway through."""
    payload_scale: float = 1.0
    """A lesson's ``payload``: every loose item weighs this many times its mass."""
    limit_range_scale: float = 1.0
    """A lesson's ``limit_margin``: a joint may use only this share of the range the task
    allows (its ``max_joint_limit_fraction`` times this)."""
    lesson: str | None = None
    """The lesson whose reproducible condition this run is."""

    @staticmethod
    def nominal() -> Variation:
        """No perturbation: the task exactly as planned."""
        return Variation()

    @staticmethod
    def trial(seed: int) -> Variation:
        """The default spread of a robustness trial."""
        return Variation(seed, 0.15, 0.05, 0.03, 0.005)

    @property
    def is_nominal(self) -> bool:
        """True when nothing is perturbed."""
        return not (
            self.friction_sigma
            or self.mass_sigma
            or self.timing_sigma
            or self.noise_sigma_m
            or self.grip_scale != 1.0
            or self.push_delta_v_m_s
            or self.payload_scale != 1.0
            or self.limit_range_scale != 1.0
        )


@dataclass
class PreviewResult:
    """What one run saw (see :meth:`report` for the JSON form)."""

    task: str
    robot: str
    passed: bool
    reasons: list[Reason]
    cycle_time_s: float
    simulated_s: float
    wall_s: float
    min_clearance_m: float
    min_clearance_to: str
    max_effort_fraction: float
    max_effort_joint: str
    max_joint_limit_fraction: float
    max_joint_limit_joint: str
    max_ik_residual_m: float
    max_hand_error_m: float
    min_balance_margin_m: float | None
    max_stabiliser_force_fraction: float
    deadline_s: float | None
    seed: int
    series: dict[str, list[float]] = field(default_factory=dict)
    own_feet: bool = False
    max_support_force_fraction_outside_walks: float = 0.0
    max_support_force_fraction_in_walks: float = 0.0
    min_zmp_margin_m: float | None = None
    min_com_margin_m: float | None = None
    min_planned_com_margin_m: float | None = None
    min_planned_cop_margin_m: float | None = None
    """On its own feet, the plan's centre of pressure under the wrench strokes' pushes: its least
    margin inside the feet (m; None without strokes)."""
    max_work_contact_force_n: float = 0.0
    """The hardest the working arm pressed on the bench it works at (N; Checks.work_contact)."""
    max_work_contact_on: str = ""
    balance_plan: str = "carried throughout"
    """How the plan's standing poses were balanced, or why they were not."""
    balance_series: dict[str, Any] = field(default_factory=dict)
    """Balance samples (20 Hz): ``t_s``, ``support_fraction``, ``zmp_margin_m``,
    ``com_margin_m`` and ``foot_force_n`` (per foot link)."""

    @property
    def x_realtime(self) -> float:
        """Simulated seconds per wall second."""
        return self.simulated_s / self.wall_s if self.wall_s > 0 else math.inf

    def report(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "task": self.task,
            "robot": self.robot,
            "passed": self.passed,
            "reasons": [r.as_dict() for r in self.reasons],
            "cycle_time_s": round(self.cycle_time_s, 4),
            "deadline_s": self.deadline_s,
            "min_clearance_m": round(self.min_clearance_m, 4),
            "min_clearance_to": self.min_clearance_to,
            "max_work_contact_force_n": round(self.max_work_contact_force_n, 1),
            "max_work_contact_on": self.max_work_contact_on,
            "max_effort_fraction": round(self.max_effort_fraction, 4),
            "max_effort_joint": self.max_effort_joint,
            "max_joint_limit_fraction": round(self.max_joint_limit_fraction, 4),
            "max_joint_limit_joint": self.max_joint_limit_joint,
            "max_ik_residual_m": round(self.max_ik_residual_m, 4),
            "max_hand_error_m": round(self.max_hand_error_m, 4),
            "min_balance_margin_m": (
                None if self.min_balance_margin_m is None else round(self.min_balance_margin_m, 4)
            ),
            "max_stabiliser_force_fraction": round(self.max_stabiliser_force_fraction, 3),
            "max_support_force_fraction_outside_walks": round(
                self.max_support_force_fraction_outside_walks, 3
            ),
            "max_support_force_fraction_in_walks": round(
                self.max_support_force_fraction_in_walks, 3
            ),
            "min_zmp_margin_m": _rounded(self.min_zmp_margin_m),
            "min_com_margin_m": _rounded(self.min_com_margin_m),
            "min_planned_com_margin_m": _rounded(self.min_planned_com_margin_m),
            "min_planned_cop_margin_m": _rounded(self.min_planned_cop_margin_m),
            "balance_plan": self.balance_plan,
            "x_realtime": round(self.x_realtime, 2),
            "simulated_s": round(self.simulated_s, 3),
            "wall_s": round(self.wall_s, 3),
            "physics_hz": round(1.0 / TIME_STEP_S),
            "gait": OWN_FEET_GAIT if self.own_feet else GAIT,
            "balance": OWN_FEET_NOTE if self.own_feet else BALANCE_NOTE,
            "seed": self.seed,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
