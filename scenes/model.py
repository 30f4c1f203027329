"""The scene schema: what a hall description may say, as typed, frozen models.

A scene describes the facility only (floor, workbenches and their items, gantry
cranes, robot stations and the robots on them, the data hub, LED panels, sensors).
Values are SI inside; files may write units (see :mod:`scenes.units`). Coordinates:
Z up, right-handed; the floor spans ``[0, size_x] x [0, size_y]`` from the origin
corner; yaw is measured about +Z from +X.

Cross-field rules that need the whole scene (overlaps, references, limits against the
floor) live in :mod:`scenes.checks`; this module checks each value on its own.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scenes.units import Angle, Length, Mass, Speed, Torque

PositiveLength = Annotated[Length, Field(gt=0)]
NonNegativeLength = Annotated[Length, Field(ge=0)]
PositiveSpeed = Annotated[Speed, Field(gt=0)]
PositiveMass = Annotated[Mass, Field(gt=0)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]

TaskKind = Literal[
    "walking",
    "squats",
    "pick_and_place",
    "torque_wrench",
    "sensor_calibration",
    "precision_assembly",
    "idle",
]
ItemKind = Literal["torque_wrench", "sensor_array", "precision_component", "fixture", "part_bin"]
PanelShows = Literal[
    "robots_live", "tasks_running", "failures_today", "lessons", "data_rate", "clock"
]
SensorKind = Literal["camera", "lidar"]


class _Strict(BaseModel):
    """Base for every scene node: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Pose(_Strict):
    """A pose in the hall frame: position (m) and orientation (roll, pitch, yaw; rad).

    ``yaw`` alone is the common case; ``rpy`` gives all three angles (XYZ extrinsic,
    as PyBullet's ``getQuaternionFromEuler``). Giving both is an error.
    """

    xyz: tuple[Length, Length, Length]
    yaw: Angle | None = None
    rpy: tuple[Angle, Angle, Angle] | None = None

    @model_validator(mode="after")
    def _one_orientation(self) -> Pose:
        if self.yaw is not None and self.rpy is not None:
            raise ValueError("give either yaw or rpy, not both")
        return self

    @property
    def euler_rad(self) -> tuple[float, float, float]:
        """(roll, pitch, yaw) in radians."""
        if self.rpy is not None:
            return self.rpy
        return (0.0, 0.0, self.yaw or 0.0)

    @property
    def yaw_rad(self) -> float:
        """Heading about +Z in radians."""
        return self.euler_rad[2]


class Floor(_Strict):
    """The hall floor: ``size`` is (x, y) in metres; ``ceiling`` the clear height."""

    size: tuple[PositiveLength, PositiveLength]
    ceiling: PositiveLength = 10.0


class Item(_Strict):
    """Something lying on a workbench top; ``offset`` is from the top's centre (m)."""

    id: Identifier
    kind: ItemKind
    offset: tuple[Length, Length] = (0.0, 0.0)
    size: tuple[PositiveLength, PositiveLength, PositiveLength]
    mass: PositiveMass
    rated_torque: Annotated[Torque, Field(gt=0)] | None = None
    fixed: bool = False


class Bench(_Strict):
    """A workbench: footprint ``size`` (length along its x, depth along its y), top height."""

    id: Identifier
    pose: Pose
    size: tuple[PositiveLength, PositiveLength]
    height: PositiveLength
    items: tuple[Item, ...] = ()


class Axis(_Strict):
    """One crane axis: travel limits (m, in the hall frame) and top speed (m/s)."""

    travel: tuple[Length, Length]
    speed: PositiveSpeed

    @model_validator(mode="after")
    def _ordered(self) -> Axis:
        if not self.travel[0] < self.travel[1]:
            raise ValueError(f"travel must be [low, high] with low < high, got {list(self.travel)}")
        return self


class CraneLoad(_Strict):
    """A load hanging from the hook."""

    mass: PositiveMass
    size: tuple[PositiveLength, PositiveLength, PositiveLength]


class CraneHome(_Strict):
    """Where the crane stands at start (m, hall frame; hoist = hook height)."""

    bridge: Length
    trolley: Length
    hoist: Length


class Crane(_Strict):
    """A gantry crane: two rails along X at ``rail_y`` and ``rail_height``.

    The bridge spans the rails and travels along X (``bridge.travel`` is its x range);
    the trolley runs along the bridge in Y; the hoist sets the hook's height above the
    floor (``hoist.travel`` is that height's range).
    """

    id: Identifier
    rail_y: tuple[Length, Length]
    rail_height: PositiveLength
    bridge: Axis
    trolley: Axis
    hoist: Axis
    home: CraneHome
    load: CraneLoad | None = None


class Station(_Strict):
    """A place where one robot trains; its pose is the robot's home pose."""

    id: Identifier
    pose: Pose
    bench: Identifier | None = None


class Robot(_Strict):
    """A robot at its station: which model, whose, and what it trains."""

    id: Identifier
    model: str
    manufacturer: str | None = None
    station: Identifier
    task: TaskKind


class Hub(_Strict):
    """The shared data hub every robot streams to (a rack on the floor)."""

    id: Identifier
    pose: Pose
    size: tuple[PositiveLength, PositiveLength, PositiveLength]


class Panel(_Strict):
    """An LED status panel on a wall: ``size`` is (width, height) of the face."""

    id: Identifier
    pose: Pose
    size: tuple[PositiveLength, PositiveLength]
    shows: tuple[PanelShows, ...] = ("robots_live", "tasks_running", "failures_today")


class Sensor(_Strict):
    """A fixed hall sensor (camera or LiDAR) looking from ``pose``."""

    id: Identifier
    kind: SensorKind
    pose: Pose
    fov: Annotated[Angle, Field(gt=0, le=2 * math.pi)] = math.radians(90.0)
    range: PositiveLength = 30.0
    rate_hz: Annotated[float, Field(gt=0)] = 10.0


class Scene(_Strict):
    """A whole training hall."""

    name: str
    floor: Floor
    hub: Hub
    benches: tuple[Bench, ...] = ()
    cranes: tuple[Crane, ...] = ()
    stations: tuple[Station, ...] = ()
    robots: tuple[Robot, ...] = ()
    panels: tuple[Panel, ...] = ()
    sensors: tuple[Sensor, ...] = ()
    robot_dirs: tuple[str, ...] = ()
    """Extra robot models folders (relative to the scene file), put on the models path."""

    def bench(self, bench_id: str) -> Bench:
        """The bench with this id (KeyError if none)."""
        for bench in self.benches:
            if bench.id == bench_id:
                return bench
        raise KeyError(f"no bench {bench_id!r} in scene {self.name!r}")

    def station(self, station_id: str) -> Station:
        """The station with this id (KeyError if none)."""
        for station in self.stations:
            if station.id == station_id:
                return station
        raise KeyError(f"no station {station_id!r} in scene {self.name!r}")

    def robot(self, robot_id: str) -> Robot:
        """The robot with this id (KeyError if none)."""
        for robot in self.robots:
            if robot.id == robot_id:
                return robot
        raise KeyError(f"no robot {robot_id!r} in scene {self.name!r}")
