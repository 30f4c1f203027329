"""A robot model as the twin uses it: URDF, how it stands, joints, telemetry profile.

:class:`RobotModel` is what every room reads of a robot; :func:`model_from_package` builds one
from a checked package (:mod:`robots.package`), measuring the standing heights in a private
PyBullet DIRECT client when the package asks for that. Which packages exist and which one a
name means is :mod:`robots.library`'s job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from robots.bullet import quiet_stdout
from robots.package import Package, Standing, loadable_urdf
from robots.profiles import TelemetryProfile
from robots.reader import JointInfo

logger = logging.getLogger(__name__)

Quaternion = tuple[float, float, float, float]

PYBULLET_HUMANOID: Final = "pybullet_humanoid"


class UnknownModelError(KeyError):
    """No robot model of that name; the message lists the known names."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.model = name
        self.known = tuple(known)
        super().__init__(f"unknown robot model {name!r}; known models: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RobotModel:
    """A robot model: its URDF, how to place it standing, its joints and telemetry profile.

    ``base_height_m`` is the height of the base link frame above the soles when the model stands
    upright with all joints at zero and ``base_orientation_xyzw`` applied; ``height_m`` is the top
    of the head above the soles in that pose. Validated on construction: the profile must list
    every movable joint exactly once.
    """

    name: str
    manufacturer: str
    urdf_path: Path
    height_m: float
    base_height_m: float
    base_orientation_xyzw: Quaternion
    base_link: str
    joints: tuple[JointInfo, ...]
    links: tuple[str, ...]
    profile: TelemetryProfile
    external: bool
    scale: float = 1.0
    """``globalScaling`` to load the URDF with (heights above already include it)."""
    package_dir: Path | None = None
    """The package folder the model was read from (holding ``robot.yaml``)."""
    load_path: Path | None = None
    """The URDF to hand PyBullet (mesh paths resolved); ``urdf_path`` when None."""
    measured: bool = False
    """Whether the standing heights were measured at load rather than given."""
    _by_name: Mapping[str, JointInfo] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        movable = [j.name for j in self.joints]
        missing = sorted(set(movable) - set(self.profile.joint_names))
        extra = sorted(set(self.profile.joint_names) - set(movable))
        if missing or extra or len(movable) != len(self.profile.joint_names):
            raise ValueError(
                f"{self.name}: telemetry profile must list every movable joint exactly once "
                f"(missing {missing}, not movable joints {extra})"
            )
        if self.base_link not in self.links:
            raise ValueError(f"{self.name}: base link {self.base_link!r} is not a link")
        object.__setattr__(self, "_by_name", MappingProxyType({j.name: j for j in self.joints}))

    @property
    def loadable_urdf(self) -> Path:
        """The URDF file PyBullet loads for this model (mesh paths resolved)."""
        return self.load_path if self.load_path is not None else self.urdf_path

    @property
    def dof(self) -> int:
        """Number of degrees of freedom (a spherical joint counts 3)."""
        return sum(j.dof for j in self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Vendor names of the movable joints in URDF document order."""
        return tuple(j.name for j in self.joints)

    def joint(self, name: str) -> JointInfo:
        """A movable joint by vendor or canonical name.

        Raises:
            KeyError: no such joint on this model.
        """
        try:
            return self._by_name[self.profile.vendor_name(name)]
        except KeyError as exc:
            raise KeyError(f"{self.name}: {exc.args[0]}") from None

    def child_link_of(self, name: str) -> str:
        """Child link of a joint given by vendor or canonical name (raises KeyError)."""
        return self.joint(name).child_link

    def canonical_name(self, name: str) -> str:
        """Canonical name of a joint (vendor or canonical name), or its vendor name if none."""
        return self.profile.canonical_name(self.profile.vendor_name(name))

    def position_scale(self, name: str) -> float:
        """Factor turning this joint's telemetry position into SI (rad or m)."""
        if self.joint(name).kind == "prismatic" or self.profile.position_unit == "rad":
            return 1.0
        return math.pi / 180.0


def measure_standing_extent(
    path: Path, orientation_xyzw: Quaternion, scale: float = 1.0
) -> tuple[float, float]:
    """Lowest and highest z of a model's collision AABBs when loaded at the origin with the given
    orientation, ``globalScaling`` and all joints at zero (in a private PyBullet DIRECT client)."""
    from robots.bullet import pb as p

    client = p.connect(p.DIRECT)
    try:
        with quiet_stdout():  # the URDF importer printf()s warnings (e.g. missing <axis>)
            body = p.loadURDF(
                str(path),
                basePosition=(0.0, 0.0, 0.0),
                baseOrientation=orientation_xyzw,
                flags=p.URDF_USE_INERTIA_FROM_FILE,
                globalScaling=scale,
                physicsClientId=client,
            )
        count = p.getNumJoints(body, physicsClientId=client)
        boxes = [p.getAABB(body, i, physicsClientId=client) for i in range(-1, count)]
    finally:
        p.disconnect(physicsClientId=client)
    return min(float(lo[2]) for lo, _ in boxes), max(float(hi[2]) for _, hi in boxes)


def pybullet_humanoid_path() -> Path:
    """Path of ``humanoid/humanoid.urdf`` in the installed ``pybullet_data`` package."""
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "humanoid" / "humanoid.urdf"


def model_from_package(package: Package, *, external: bool) -> RobotModel:
    """The model a checked package describes; its standing heights measured in PyBullet when
    ``robot.yaml`` says ``standing: measure``."""
    spec = package.spec
    load_path = loadable_urdf(package)
    if isinstance(spec.standing, Standing):
        height_m, base_height_m, measured = (
            spec.standing.height_m,
            spec.standing.base_height_m,
            False,
        )
    else:
        low, high = measure_standing_extent(load_path, package.orientation_xyzw, spec.scale)
        logger.debug("%s: standing extent z %.4f .. %.4f", package.urdf_path, low, high)
        height_m, base_height_m, measured = round(high - low, 6), round(-low, 6), True
    return RobotModel(
        name=spec.model,
        manufacturer=spec.manufacturer,
        urdf_path=package.urdf_path,
        height_m=height_m,
        base_height_m=base_height_m,
        base_orientation_xyzw=package.orientation_xyzw,
        base_link=package.base_link,
        joints=package.joints,
        links=package.links,
        profile=package.profile,
        external=external,
        scale=spec.scale,
        package_dir=package.root,
        load_path=load_path,
        measured=measured,
    )
