"""Primitive shapes with their inertia tensors, and deterministic URDF text rendering.

:mod:`robots.generate` describes a robot as :class:`LinkDef`/:class:`JointDef` records; this module
computes each link's inertia from its primitive collision shape (solid box, cylinder or sphere of
uniform density, centre of mass at the shape centre) and renders URDF text with a fixed float
format, so regenerating a model yields byte-for-byte identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Vec3 = tuple[float, float, float]
RGBA = tuple[float, float, float, float]
ShapeKind = Literal["box", "cylinder", "sphere"]


def fmt(value: float) -> str:
    """Fixed, platform-independent float formatting (9 significant digits, no ``-0``)."""
    text = f"{value:.9g}"
    return "0" if text in ("-0", "0") else text


def fmt_vec(values: Sequence[float]) -> str:
    """Space-separated :func:`fmt` of each value."""
    return " ".join(fmt(v) for v in values)


@dataclass(frozen=True)
class Shape:
    """A primitive shape in link coordinates (axis-aligned; cylinders run along Z).

    ``size``: box ``(x, y, z)`` edge lengths; cylinder ``(radius, length)``; sphere ``(radius,)``.
    """

    kind: ShapeKind
    size: tuple[float, ...]
    center: Vec3 = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        expected = {"box": 3, "cylinder": 2, "sphere": 1}[self.kind]
        if len(self.size) != expected or min(self.size) <= 0.0:
            raise ValueError(f"bad {self.kind} size {self.size}")

    def inertia(self, mass: float) -> Vec3:
        """Principal moments ``(ixx, iyy, izz)`` in kg·m² about the shape centre."""
        if mass <= 0.0:
            raise ValueError("mass must be positive")
        if self.kind == "box":
            x, y, z = self.size
            return (
                mass * (y * y + z * z) / 12.0,
                mass * (x * x + z * z) / 12.0,
                mass * (x * x + y * y) / 12.0,
            )
        if self.kind == "cylinder":
            r, length = self.size
            side = mass * (3.0 * r * r + length * length) / 12.0
            return (side, side, 0.5 * mass * r * r)
        (r,) = self.size
        moment = 0.4 * mass * r * r
        return (moment, moment, moment)

    def geometry_xml(self) -> str:
        """The URDF ``<geometry>`` child element."""
        if self.kind == "box":
            return f'<box size="{fmt_vec(self.size)}"/>'
        if self.kind == "cylinder":
            r, length = self.size
            return f'<cylinder radius="{fmt(r)}" length="{fmt(length)}"/>'
        return f'<sphere radius="{fmt(self.size[0])}"/>'

    def z_extent(self) -> tuple[float, float]:
        """Lowest and highest z of the shape in link coordinates."""
        half = {"box": self.size[-1] / 2.0, "cylinder": self.size[-1] / 2.0}.get(
            self.kind, self.size[0]
        )
        return (self.center[2] - half, self.center[2] + half)


@dataclass(frozen=True)
class LinkDef:
    """A rigid body: its name, mass (kg), shape (used for visual, collision and inertia) and
    material name."""

    name: str
    mass: float
    shape: Shape
    material: str


@dataclass(frozen=True)
class JointDef:
    """A joint between two links; ``limits`` is ``(lower, upper, velocity, effort)`` or None."""

    name: str
    kind: Literal["revolute", "prismatic", "fixed"]
    parent: str
    child: str
    origin: Vec3
    axis: Vec3 = (0.0, 0.0, 1.0)
    limits: tuple[float, float, float, float] | None = None


def _link_xml(link: LinkDef) -> list[str]:
    ixx, iyy, izz = link.shape.inertia(link.mass)
    origin = f'<origin xyz="{fmt_vec(link.shape.center)}" rpy="0 0 0"/>'
    geometry = link.shape.geometry_xml()
    return [
        f'  <link name="{link.name}">',
        "    <inertial>",
        f"      {origin}",
        f'      <mass value="{fmt(link.mass)}"/>',
        f'      <inertia ixx="{fmt(ixx)}" ixy="0" ixz="0" iyy="{fmt(iyy)}" iyz="0"'
        f' izz="{fmt(izz)}"/>',
        "    </inertial>",
        "    <visual>",
        f"      {origin}",
        f"      <geometry>{geometry}</geometry>",
        f'      <material name="{link.material}"/>',
        "    </visual>",
        "    <collision>",
        f"      {origin}",
        f"      <geometry>{geometry}</geometry>",
        "    </collision>",
        "  </link>",
    ]


def _joint_xml(joint: JointDef) -> list[str]:
    lines = [
        f'  <joint name="{joint.name}" type="{joint.kind}">',
        f'    <parent link="{joint.parent}"/>',
        f'    <child link="{joint.child}"/>',
        f'    <origin xyz="{fmt_vec(joint.origin)}" rpy="0 0 0"/>',
    ]
    if joint.kind != "fixed":
        lines.append(f'    <axis xyz="{fmt_vec(joint.axis)}"/>')
    if joint.limits is not None:
        lower, upper, velocity, effort = joint.limits
        lines.append(
            f'    <limit lower="{fmt(lower)}" upper="{fmt(upper)}"'
            f' velocity="{fmt(velocity)}" effort="{fmt(effort)}"/>'
        )
    lines.append("  </joint>")
    return lines


def render_urdf(
    robot: str,
    comment: str,
    materials: Sequence[tuple[str, RGBA]],
    links: Sequence[LinkDef],
    joints: Sequence[JointDef],
) -> str:
    """URDF document text. Links and joints are written interleaved in depth-first order (each
    joint right before its child link), which is also the order PyBullet indexes them in."""
    by_child = {j.child: j for j in joints}
    lines = ['<?xml version="1.0"?>', f"<!-- {comment} -->", f'<robot name="{robot}">']
    for name, rgba in materials:
        lines.append(f'  <material name="{name}"><color rgba="{fmt_vec(rgba)}"/></material>')
    for link in links:
        joint = by_child.get(link.name)
        if joint is not None:
            lines.extend(_joint_xml(joint))
        lines.extend(_link_xml(link))
    lines.append("</robot>")
    return "\n".join(lines) + "\n"
