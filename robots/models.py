"""Registry of the robot models known to the hall, loaded from URDF.

:func:`get_model` returns a validated, cached :class:`RobotModel` for each name in
:func:`model_names`: the three generated models (:mod:`robots.vendors`) and ``pybullet_humanoid``,
the external DeepMimic-style humanoid shipped with ``pybullet_data``. Every model goes through
the same :func:`robots.reader.parse_urdf` path. The external humanoid is Y-up, so its
``base_orientation_xyzw`` turns it Z-up; its standing heights are measured once by loading it in a
private PyBullet DIRECT client (it is about four times human size; PyBullet's own examples load it
with ``globalScaling=0.25``, which scales both heights by the same factor).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from robots.bullet import quiet_stdout
from robots.profiles import TelemetryProfile, identity_profile, profile_for_spec
from robots.reader import JointInfo, parse_urdf
from robots.spec import BASE_LINK, ModelSpec, urdf_path
from robots.vendors import SPECS

logger = logging.getLogger(__name__)

Quaternion = tuple[float, float, float, float]

IDENTITY_XYZW: Final[Quaternion] = (0.0, 0.0, 0.0, 1.0)
Y_UP_TO_Z_UP_XYZW: Final[Quaternion] = (math.sin(math.pi / 4.0), 0.0, 0.0, math.cos(math.pi / 4.0))
"""+90 degrees about X: a Y-up model's +Y becomes +Z (and its +Z becomes -Y); X stays forward."""

PYBULLET_HUMANOID: Final = "pybullet_humanoid"
PYBULLET_HUMANOID_SCALE: Final = 0.25


class UnknownModelError(KeyError):
    """No robot model of that name; the message lists the known names."""

    def __init__(self, name: str, known: Sequence[str] | None = None) -> None:
        self.model = name
        self.known = tuple(model_names() if known is None else known)
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


_PROFILES: Final[Mapping[str, TelemetryProfile]] = MappingProxyType(
    {name: profile_for_spec(spec) for name, spec in SPECS.items()}
)
"""Profiles of the generated models, built (and so validated) at import time."""


def _generated(spec: ModelSpec) -> RobotModel:
    path = urdf_path(spec.name)
    base, joints, links = parse_urdf(path)
    if base != BASE_LINK:
        raise ValueError(f"{path}: base link is {base!r}, expected {BASE_LINK!r}")
    return RobotModel(
        name=spec.name,
        manufacturer=spec.manufacturer,
        urdf_path=path,
        height_m=round(spec.height_m, 9),
        base_height_m=round(spec.base_height_m, 9),
        base_orientation_xyzw=IDENTITY_XYZW,
        base_link=base,
        joints=joints,
        links=links,
        profile=_PROFILES[spec.name],
        external=False,
    )


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


def _pybullet_humanoid() -> RobotModel:
    path = pybullet_humanoid_path()
    base, joints, links = parse_urdf(path)
    # The DeepMimic humanoid is modelled about 4x human size; PyBullet's own examples load it
    # with globalScaling=0.25, which makes it a 1.6 m person.
    low, high = measure_standing_extent(path, Y_UP_TO_Z_UP_XYZW, PYBULLET_HUMANOID_SCALE)
    logger.debug("%s: standing extent z %.4f .. %.4f", path, low, high)
    return RobotModel(
        name=PYBULLET_HUMANOID,
        manufacturer="Bullet Physics (external)",
        urdf_path=path,
        height_m=round(high - low, 6),
        base_height_m=round(-low, 6),
        base_orientation_xyzw=Y_UP_TO_Z_UP_XYZW,
        base_link=base,
        joints=joints,
        links=links,
        profile=identity_profile(
            "Bullet Physics (external)", ((j.name, j.kind) for j in joints), rate_hz=60.0
        ),
        external=True,
        scale=PYBULLET_HUMANOID_SCALE,
    )


_REGISTRY: Final[Mapping[str, Callable[[], RobotModel]]] = MappingProxyType(
    {
        **{name: functools.partial(_generated, spec) for name, spec in SPECS.items()},
        PYBULLET_HUMANOID: _pybullet_humanoid,
    }
)


def model_names() -> tuple[str, ...]:
    """Names of every known model: the generated ones, then ``pybullet_humanoid``."""
    return tuple(_REGISTRY)


@functools.cache
def _load(name: str) -> RobotModel:
    return _REGISTRY[name]()


def get_model(name: str) -> RobotModel:
    """The (cached) model called ``name``.

    Raises:
        UnknownModelError: no such model; the message lists the known names.
    """
    if name not in _REGISTRY:
        raise UnknownModelError(name, model_names())
    return _load(name)
