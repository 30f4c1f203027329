"""The task schema: what a task file may say, as typed, frozen models (see docs/task-format.md).

A task is one robot of a scene doing a sequence of steps (walk, squat, reach, grasp, place,
torque, calibrate, wait) under limits (effort, clearance, joint range, deadline), optionally with
the crane's planned path during the task. Values are SI inside; files may write units like
scene files (``"30 cm"``, ``"90 deg"``, ``"25 N*m"``, ``"2 s"``). Each step is a mapping with
exactly one key naming its kind (``- walk: {to: S1}``), so an error points at
``steps[2].walk.to``.

Rules that need the scene (the robot, stations, benches, items, the crane and its travel, the
wrench's rating) live in :mod:`scenes.tasks`, which also loads files.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scenes.model import Identifier
from scenes.units import Angle, Duration, Length, Speed, Torque

Hand = Literal["left", "right"]
PositiveDuration = Annotated[Duration, Field(gt=0)]
NonNegativeDuration = Annotated[Duration, Field(ge=0)]
STEP_KINDS: tuple[str, ...] = (
    "walk",
    "squat",
    "reach",
    "grasp",
    "place",
    "torque",
    "calibrate",
    "wait",
)


class _Strict(BaseModel):
    """Base for every task node: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Target(_Strict):
    """A point in the hall: ``xyz`` in the hall frame, or ``offset`` from a bench top's centre
    (``bench``, in the bench's frame) or from an item's top centre (``item``, in its bench's
    frame). Exactly one of ``xyz``, ``bench``, ``item``."""

    xyz: tuple[Length, Length, Length] | None = None
    bench: Identifier | None = None
    item: Identifier | None = None
    offset: tuple[Length, Length, Length] = (0.0, 0.0, 0.0)

    @model_validator(mode="after")
    def _one_reference(self) -> Target:
        given = [k for k in ("xyz", "bench", "item") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of xyz, bench, item"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.xyz is not None and self.offset != (0.0, 0.0, 0.0):
            raise ValueError("offset goes with bench or item, not with xyz")
        return self


class Walk(_Strict):
    """Walk to a station (its pose) or to a floor point ``[x, y]`` (then ``yaw``, default: the
    heading of travel)."""

    to: Identifier | tuple[Length, Length]
    yaw: Angle | None = None
    speed: Annotated[Speed, Field(gt=0, le=1.5)] = 0.5


class Squat(_Strict):
    """Squat ``count`` times; ``depth`` is the knee flexion at the bottom (rad)."""

    count: Annotated[int, Field(ge=1, le=50)] = 1
    depth: Annotated[Angle, Field(gt=0, le=2.0)] = 1.0
    period: PositiveDuration = 3.0


class Reach(_Strict):
    """Bring a hand to a target position (orientation is left free) and hold it there."""

    hand: Hand = "right"
    target: Target
    duration: PositiveDuration = 1.5
    hold: NonNegativeDuration = 0.5


class Grasp(_Strict):
    """Reach a loose item from above and close the hand on it."""

    item: Identifier
    hand: Hand = "right"
    duration: PositiveDuration = 2.0


class Place(_Strict):
    """Carry the held item to ``at`` (where its bottom centre goes) and let go."""

    item: Identifier
    at: Target
    duration: PositiveDuration = 2.5


class TurnWrench(_Strict):
    """Turn the held torque wrench to ``torque`` in ``strokes`` working strokes at ``at`` (the
    bolt; default: where the hand is)."""

    wrench: Identifier
    torque: Annotated[Torque, Field(gt=0)]
    strokes: Annotated[int, Field(ge=1, le=40)] = 4
    at: Target | None = None
    stroke: PositiveDuration = 1.0


class Calibrate(_Strict):
    """Hold the first ``poses`` poses of the calibration sequence in front of a sensor array."""

    array: Identifier
    poses: Annotated[int, Field(ge=1, le=5)] = 5
    hold: PositiveDuration = 2.0
    move: PositiveDuration = 0.8


class Step(_Strict):
    """One step: exactly one of the keys below."""

    walk: Walk | None = None
    squat: Squat | None = None
    reach: Reach | None = None
    grasp: Grasp | None = None
    place: Place | None = None
    torque: TurnWrench | None = None
    calibrate: Calibrate | None = None
    wait: PositiveDuration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        given = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step is exactly one of {', '.join(STEP_KINDS)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """Which kind of step this is (``walk``, ``squat``, ...)."""
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class Limits(_Strict):
    """What the preview must see for the task to pass."""

    max_effort_fraction: Annotated[float, Field(gt=0, le=1.5)] = 0.9
    """Largest motor effort as a fraction of its rating, any joint, any time."""
    max_joint_limit_fraction: Annotated[float, Field(gt=0, le=1.0)] = 0.97
    """Largest excursion from a joint's mid-range as a fraction of half its range (1 = limit)."""
    min_clearance: Annotated[Length, Field(ge=0)] = 0.02
    """Smallest distance to any other body (the hand at its own work excepted)."""
    deadline: PositiveDuration | None = None
    """The task must be done within this many seconds."""


class CraneWaypoint(_Strict):
    """Where the crane is at time ``at`` (s from the task's start): bridge x, trolley y, hook
    height (m, hall frame)."""

    at: NonNegativeDuration
    bridge: Length
    trolley: Length
    hoist: Length


class CranePath(_Strict):
    """The crane's planned path during the task: from home at 0 s, straight (per axis) from
    waypoint to waypoint, then holding at the last."""

    id: Identifier
    path: tuple[CraneWaypoint, ...] = Field(min_length=1)


class Task(_Strict):
    """A whole task file. ``name`` defaults to the file's stem."""

    name: str = ""
    robot: Identifier
    limits: Limits = Limits()
    crane: CranePath | None = None
    steps: tuple[Step, ...] = Field(min_length=1)
