"""What a compiled task holds besides its plan: step spans, hand targets with their IK residuals,
grasp and release instants, wrench loads, compiler notes and the crane's path.

:func:`twin.preview.compile.compile_task` builds a :class:`CompiledTask`; the preview engine
checks a run against it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from robots import RobotModel
from scenes.task_model import Hand
from scenes.tasks import Task
from twin.plan.model import TaskPlan

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]

REACH_TOLERANCE_M: Final = 0.03
"""A hand target counts as reached when IK brings the hand within this distance."""


@dataclass(frozen=True)
class StepSpan:
    """When a step runs in the plan (s from the task's start)."""

    index: int
    kind: str
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class HandTarget:
    """A hand target the plan aims for: where, what IK achieved, and when the hand is there."""

    step: int
    t_s: float
    hand: Hand
    target_m: Vec3
    residual_m: float
    what: str

    @property
    def reached(self) -> bool:
        """Within :data:`REACH_TOLERANCE_M`."""
        return self.residual_m <= REACH_TOLERANCE_M


@dataclass(frozen=True)
class GraspSpan:
    """An item held from ``grasp_s`` (the grip closed) until ``release_s`` (None: to the end)."""

    item: str
    hand: Hand
    grasp_step: int
    grasp_s: float
    release_s: float | None = None
    place_step: int | None = None
    place_target_m: Vec3 | None = None


@dataclass(frozen=True)
class WrenchLoad:
    """A working stroke: the bolt resists the hand with ``force_n`` along ``direction``."""

    step: int
    hand: Hand
    start_s: float
    end_s: float
    force_n: float
    direction: Vec3


@dataclass(frozen=True)
class CompileNote:
    """Something the compiler found wrong with a step (becomes a preview failure reason)."""

    kind: str
    step: int
    t_s: float
    detail: str


@dataclass(frozen=True)
class PlannedBalance:
    """How the plan's standing poses were balanced: ``whole_body`` False means they were not
    (``how`` says why) and the preview carries the robot on the stabilised base throughout.
    Margins: the worst centre-of-mass margin inside the support polygon over the balanced
    keyframes before and after balancing (m; negative: outside)."""

    whole_body: bool
    how: str
    com_margin_before_m: float | None
    com_margin_after_m: float | None


@dataclass(frozen=True)
class CompiledTask:
    """A plan and everything the preview checks it against (see the module docstring)."""

    task: Task
    model: RobotModel
    plan: TaskPlan
    steps: tuple[StepSpan, ...]
    hands: tuple[HandTarget, ...]
    grasps: tuple[GraspSpan, ...]
    loads: tuple[WrenchLoad, ...]
    notes: tuple[CompileNote, ...]
    crane_id: str | None
    crane_path: tuple[tuple[float, float, float, float], ...]
    """(t_s, bridge_m, trolley_m, hoist_m) from home at 0 s; empty without a crane plan."""
    rest_rad: dict[str, float] = field(default_factory=dict)
    balance: PlannedBalance = PlannedBalance(False, "carried throughout", None, None)
