"""A small URDF reader: base link, movable joints with their limits, and link names.

It reads our generated models and external URDFs (such as pybullet_data's humanoid, which uses
the PyBullet extension joint type ``spherical``) with :mod:`xml.etree.ElementTree`; geometry and
inertia are left to PyBullet. Malformed files raise :class:`UrdfError` naming the file.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal, cast

JointKind = Literal["revolute", "continuous", "prismatic", "spherical"]
Vec3 = tuple[float, float, float]
Matrix3 = tuple[Vec3, Vec3, Vec3]
_IDENTITY: Final[Matrix3] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

_MOVABLE: Final = frozenset({"revolute", "continuous", "prismatic", "spherical"})
_UNSUPPORTED: Final = frozenset({"floating", "planar"})


class UrdfError(ValueError):
    """A URDF file is malformed or uses something this reader does not support."""


@dataclass(frozen=True)
class JointInfo:
    """A movable joint as written in a URDF (SI units, radians).

    ``lower``/``upper`` are rad (m for prismatic joints), -inf/inf for continuous and spherical
    joints; ``velocity_limit`` is rad/s or m/s and ``effort_limit`` N·m or N, inf when the URDF
    gives none. ``axis`` is the URDF's ``<axis xyz>`` (unit length; (1, 0, 0) when absent) in
    the joint's frame, and ``axis_in_base`` the same axis in the base (root) link's frame with
    every joint at zero: a positive value turns the child link about it by the right-hand rule
    (moves it along it, for prismatic joints). Both are None for spherical joints.
    """

    name: str
    kind: JointKind
    lower: float
    upper: float
    velocity_limit: float
    effort_limit: float
    parent_link: str
    child_link: str
    axis: Vec3 | None = (1.0, 0.0, 0.0)
    axis_in_base: Vec3 | None = None

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


def _vector(path: Path, element: ET.Element | None, key: str, default: Vec3) -> Vec3:
    text = None if element is None else element.get(key)
    if text is None:
        return default
    try:
        x, y, z = (float(v) for v in text.split())
    except ValueError:
        raise UrdfError(f"{path}: bad vector {text!r} for {key!r} (expected 3 numbers)") from None
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise UrdfError(f"{path}: bad vector {text!r} for {key!r} (not finite)")
    return x, y, z


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> Matrix3:
    """URDF ``rpy``: fixed-axis X, then Y, then Z, so R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return (
        (cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr),
        (sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr),
        (-sp, cp * sr, cp * cr),
    )


def _matmul(a: Matrix3, b: Matrix3) -> Matrix3:
    rows = tuple(
        (
            sum(a[i][k] * b[k][0] for k in range(3)),
            sum(a[i][k] * b[k][1] for k in range(3)),
            sum(a[i][k] * b[k][2] for k in range(3)),
        )
        for i in range(3)
    )
    return rows[0], rows[1], rows[2]


def _apply(m: Matrix3, v: Vec3) -> Vec3:
    x, y, z = (m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2] for i in range(3))
    return x, y, z


def _axis(path: Path, element: ET.Element, name: str, kind: str) -> Vec3 | None:
    if kind == "spherical":
        return None
    x, y, z = _vector(path, element.find("axis"), "xyz", (1.0, 0.0, 0.0))
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0.0:
        raise UrdfError(f"{path}: joint {name!r} has a zero <axis>")
    return x / norm, y / norm, z / norm


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
        axis=_axis(path, element, name, kind),
    )


def _in_base(
    path: Path, joints: list[JointInfo], parents: dict[str, tuple[str, Matrix3]], base: str
) -> tuple[JointInfo, ...]:
    """The joints with ``axis_in_base``: each joint's frame turned back to the base link
    through the ``<origin rpy>`` of every joint above it (all joints at zero)."""
    frames: dict[str, Matrix3] = {base: _IDENTITY}

    def frame_of(link: str) -> Matrix3:
        chain: list[str] = []
        while link not in frames:  # walk up to a link whose frame is known (no recursion)
            if link not in parents or len(chain) > len(parents):
                raise UrdfError(
                    f"{path}: link {chain[0] if chain else link!r} is not below {base!r}"
                )
            chain.append(link)
            link = parents[link][0]
        for child in reversed(chain):
            parent, rotation = parents[child]
            frames[child] = _matmul(frames[parent], rotation)
        return frames[link if not chain else chain[0]]

    out = []
    for joint in joints:
        axis = None
        if joint.axis is not None:
            x, y, z = _apply(frame_of(joint.child_link), joint.axis)
            axis = (round(x, 9) + 0.0, round(y, 9) + 0.0, round(z, 9) + 0.0)
        out.append(replace(joint, axis_in_base=axis))
    return tuple(out)


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
    parents: dict[str, tuple[str, Matrix3]] = {}  # child link: (parent link, joint rotation)
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
        roll, pitch, yaw = _vector(path, element.find("origin"), "rpy", (0.0, 0.0, 0.0))
        parents[child] = (parent, _rpy_matrix(roll, pitch, yaw))
        if kind != "fixed":
            joints.append(_joint(path, element, kind))
    roots = [link for link in links if link not in children]
    if len(roots) != 1:
        raise UrdfError(f"{path}: expected exactly one root link, found {roots}")
    return roots[0], _in_base(path, joints, parents, roots[0]), links
