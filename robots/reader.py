"""A small URDF reader: base link, movable joints with their limits, and link names.

It reads our generated models and external URDFs (such as pybullet_data's humanoid, which uses
the PyBullet extension joint type ``spherical``) with :mod:`xml.etree.ElementTree`; geometry and
inertia are left to PyBullet. Malformed files raise :class:`UrdfError` naming the file.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

JointKind = Literal["revolute", "continuous", "prismatic", "spherical"]

_MOVABLE: Final = frozenset({"revolute", "continuous", "prismatic", "spherical"})
_UNSUPPORTED: Final = frozenset({"floating", "planar"})


class UrdfError(ValueError):
    """A URDF file is malformed or uses something this reader does not support."""


@dataclass(frozen=True)
class JointInfo:
    """A movable joint as written in a URDF (SI units, radians).

    ``lower``/``upper`` are rad (m for prismatic joints), -inf/inf for continuous and spherical
    joints; ``velocity_limit`` is rad/s or m/s and ``effort_limit`` N·m or N, inf when the URDF
    gives none.
    """

    name: str
    kind: JointKind
    lower: float
    upper: float
    velocity_limit: float
    effort_limit: float
    parent_link: str
    child_link: str

    @property
    def dof(self) -> int:
        """Degrees of freedom of this joint (3 for spherical, else 1)."""
        return 3 if self.kind == "spherical" else 1


def _attr(path: Path, element: ET.Element, key: str) -> str:
    value = element.get(key)
    if value is None:
        raise UrdfError(f"{path}: <{element.tag}> lacks the {key!r} attribute")
    return value


def _float(path: Path, element: ET.Element | None, key: str, default: float) -> float:
    text = None if element is None else element.get(key)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise UrdfError(f"{path}: bad number {text!r} for {key!r}") from None


def _link_of(path: Path, joint: ET.Element, tag: str) -> str:
    element = joint.find(tag)
    if element is None:
        raise UrdfError(f"{path}: joint {joint.get('name')!r} has no <{tag}>")
    return _attr(path, element, "link")


def _joint(path: Path, element: ET.Element, kind: str) -> JointInfo:
    name = _attr(path, element, "name")
    limit = element.find("limit")
    if kind in ("revolute", "prismatic"):
        if limit is None:
            raise UrdfError(f"{path}: {kind} joint {name!r} has no <limit>")
        lower, upper = _float(path, limit, "lower", 0.0), _float(path, limit, "upper", 0.0)
    else:
        lower, upper = -math.inf, math.inf
    return JointInfo(
        name=name,
        kind=cast(JointKind, kind),
        lower=lower,
        upper=upper,
        velocity_limit=_float(path, limit, "velocity", math.inf),
        effort_limit=_float(path, limit, "effort", math.inf),
        parent_link=_link_of(path, element, "parent"),
        child_link=_link_of(path, element, "child"),
    )


def parse_urdf(path: Path) -> tuple[str, tuple[JointInfo, ...], tuple[str, ...]]:
    """Read a URDF file.

    Returns:
        ``(base_link, movable_joints, links)``: the root link (the only link that is no joint's
        child), the non-fixed joints in document order, and every link name in document order.

    Raises:
        FileNotFoundError: the file does not exist.
        UrdfError: the XML is not well-formed or the robot structure is invalid.
    """
    path = Path(path)
    # Some exported URDFs (pybullet_data's humanoid among them) end in NUL padding, which
    # TinyXML-based parsers such as PyBullet's ignore; so do we.
    data = path.read_bytes().rstrip(b"\x00")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise UrdfError(f"{path}: not well-formed URDF XML: {exc}") from exc
    if root.tag != "robot":
        raise UrdfError(f"{path}: root element is <{root.tag}>, expected <robot>")
    links = tuple(_attr(path, link, "name") for link in root.findall("link"))
    if len(set(links)) != len(links):
        raise UrdfError(f"{path}: duplicate link names")
    if not links:
        raise UrdfError(f"{path}: no links")
    known = set(links)
    children: set[str] = set()
    joints: list[JointInfo] = []
    joint_names: set[str] = set()
    for element in root.findall("joint"):
        name, kind = _attr(path, element, "name"), _attr(path, element, "type")
        if name in joint_names:
            raise UrdfError(f"{path}: duplicate joint name {name!r}")
        joint_names.add(name)
        if kind in _UNSUPPORTED or (kind not in _MOVABLE and kind != "fixed"):
            raise UrdfError(f"{path}: joint {name!r} has unsupported type {kind!r}")
        parent, child = _link_of(path, element, "parent"), _link_of(path, element, "child")
        for link in (parent, child):
            if link not in known:
                raise UrdfError(f"{path}: joint {name!r} refers to unknown link {link!r}")
        if child in children:
            raise UrdfError(f"{path}: link {child!r} is the child of more than one joint")
        children.add(child)
        if kind != "fixed":
            joints.append(_joint(path, element, kind))
    roots = [link for link in links if link not in children]
    if len(roots) != 1:
        raise UrdfError(f"{path}: expected exactly one root link, found {roots}")
    return roots[0], tuple(joints), links
