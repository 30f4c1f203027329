"""Generate the URDF files of the hall's robot models from their parametric specs.

Run ``python -m robots.generate`` to (re)write the package of every model in
:data:`robots.vendors.SPECS` (``robots/<model>/<model>.urdf`` and its ``robot.yaml``), or
``python -m robots.generate --check`` to verify that the checked-in files equal fresh generation
(exit status 1 otherwise). Output is byte-for-byte deterministic.

Kinematic layout (Z up, X forward, Y left; every joint origin has zero rotation, so at zero joint
angles all link frames are parallel to the pelvis frame): the base link is the pelvis box; each
leg is hip yaw -> hip roll -> hip pitch (roll and pitch share a point) -> knee -> ankle pitch ->
ankle roll -> foot box whose sole lies ``spec.base_height_m`` below the pelvis frame; the spine is
spine yaw (-> waist -> spine pitch) -> torso box, topped by neck yaw -> neck pitch -> head sphere
(or a fixed head); each arm hangs from the torso: shoulder pitch -> roll -> yaw -> elbow -> wrist
yaw (-> pitch (-> roll)) -> hand box, optionally with a prismatic finger.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from robots.canonical import is_canonical
from robots.package import PackageFile, Standing, Telemetry
from robots.package_writer import render_package
from robots.spec import BASE_LINK, MODELS_DIR, ModelSpec
from robots.urdf_writer import JointDef, LinkDef, Shape, Vec3, render_urdf
from robots.vendors import SPECS

logger = logging.getLogger(__name__)


_MATERIAL_OF_ROLE: Final = {
    "pelvis": "primary",
    "waist": "joint",
    "torso": "primary",
    "neck": "joint",
    "head": "secondary",
    "thigh": "primary",
    "shank": "secondary",
    "foot": "accent",
    "upper_arm": "primary",
    "forearm": "secondary",
    "hand": "accent",
    "finger": "accent",
    "joint": "joint",
}
_AXES: Final[dict[str, Vec3]] = {
    "yaw": (0.0, 0.0, 1.0),
    "roll": (1.0, 0.0, 0.0),
    "pitch": (0.0, 1.0, 0.0),
    "knee": (0.0, 1.0, 0.0),
    "elbow": (0.0, 1.0, 0.0),
}


@dataclass
class _Builder:
    spec: ModelSpec
    parts: list[tuple[str, str, Shape]] = field(default_factory=list)  # link, role, shape
    joints: list[JointDef] = field(default_factory=list)

    def link(self, key: str, role: str, shape: Shape) -> str:
        name = self.spec.link_name(key)
        self.parts.append((name, role, shape))
        return name

    def joint(self, key: str, parent: str, child: str, origin: Vec3) -> None:
        """A revolute joint (prismatic for grippers) with the spec's limits, or a fixed one."""
        spec = self.spec
        if key not in spec.dofs:
            self.joints.append(JointDef(spec.joint_name(key), "fixed", parent, child, origin))
            return
        lim = spec.limits_for(key)
        limits = (lim.lower, lim.upper, lim.velocity, lim.effort)
        suffix = key.rsplit("_", 1)[-1]
        kind: Literal["revolute", "prismatic"] = "revolute"
        if suffix == "gripper":  # the finger opens outwards, away from the body
            kind, axis = "prismatic", (0.0, 1.0 if key.startswith("left") else -1.0, 0.0)
        else:
            axis = _AXES[suffix]
        self.joints.append(
            JointDef(spec.joint_name(key), kind, parent, child, origin, axis, limits)
        )

    def links(self) -> list[LinkDef]:
        """Links with masses: the spec's fractions per role, normalised to its total mass."""
        fractions = self.spec.mass_fractions
        total = sum(fractions[role] for _, role, _ in self.parts)
        return [
            LinkDef(
                name,
                self.spec.mass_kg * fractions[role] / total,
                shape,
                f"{self.spec.name}_{_MATERIAL_OF_ROLE[role]}",
            )
            for name, role, shape in self.parts
        ]


def _sphere(r: float, z: float = 0.0) -> Shape:
    return Shape("sphere", (r,), (0.0, 0.0, z))


def _rod(r: float, length: float, down: bool = True) -> Shape:
    """Cylinder of ``length`` hanging below (or standing on) the link origin."""
    return Shape("cylinder", (r, length), (0.0, 0.0, -length / 2.0 if down else length / 2.0))


def _leg(b: _Builder, side: str, sign: float, pelvis: str) -> None:
    L = b.spec.length
    jr = L("joint_radius")
    hip_drop, thigh, shank, ankle = L("hip_drop"), L("thigh"), L("shank"), L("ankle_height")
    yaw = b.link(f"{side}_hip_yaw", "joint", _rod(jr, hip_drop))
    b.joint(
        f"{side}_hip_yaw",
        pelvis,
        yaw,
        (0.0, sign * L("hip_width") / 2.0, -L("pelvis_height") / 2.0),
    )
    roll = b.link(f"{side}_hip_roll", "joint", _sphere(jr))
    b.joint(f"{side}_hip_roll", yaw, roll, (0.0, 0.0, -hip_drop))
    thigh_link = b.link(f"{side}_thigh", "thigh", _rod(L("thigh_radius"), thigh))
    b.joint(f"{side}_hip_pitch", roll, thigh_link, (0.0, 0.0, 0.0))
    shank_link = b.link(f"{side}_shank", "shank", _rod(L("shank_radius"), shank))
    b.joint(f"{side}_knee", thigh_link, shank_link, (0.0, 0.0, -thigh))
    ankle_link = b.link(f"{side}_ankle", "joint", _sphere(min(jr, 0.4 * ankle)))
    b.joint(f"{side}_ankle_pitch", shank_link, ankle_link, (0.0, 0.0, -shank))
    sole = Shape(
        "box",
        (L("foot_length"), L("foot_width"), 0.6 * ankle),
        (L("foot_forward"), 0.0, -0.7 * ankle),
    )
    foot = b.link(f"{side}_foot", "foot", sole)
    b.joint(f"{side}_ankle_roll", ankle_link, foot, (0.0, 0.0, 0.0))


def _arm(b: _Builder, side: str, sign: float, torso: str) -> None:
    s, L = b.spec, b.spec.length
    jr, ua, fa, hand_len = L("joint_radius"), L("upper_arm"), L("forearm"), L("hand")
    yaw_offset = 0.2 * ua
    origin = (0.0, sign * L("shoulder_width") / 2.0, s.torso_length - L("shoulder_drop"))
    shoulder = b.link(f"{side}_shoulder", "joint", _sphere(jr))
    b.joint(f"{side}_shoulder_pitch", torso, shoulder, origin)
    ring = b.link(f"{side}_shoulder_roll", "joint", _rod(jr, yaw_offset))
    b.joint(f"{side}_shoulder_roll", shoulder, ring, (0.0, 0.0, 0.0))
    upper = b.link(f"{side}_upper_arm", "upper_arm", _rod(L("upper_arm_radius"), ua - yaw_offset))
    b.joint(f"{side}_shoulder_yaw", ring, upper, (0.0, 0.0, -yaw_offset))
    fr = L("forearm_radius")
    forearm = b.link(f"{side}_forearm", "forearm", _rod(fr, fa))
    b.joint(f"{side}_elbow", upper, forearm, (0.0, 0.0, -(ua - yaw_offset)))
    # the joint still to place, its parent link and its origin; extra wrist DOFs add gimbal links
    key, parent, origin = f"{side}_wrist_yaw", forearm, (0.0, 0.0, -fa)
    for extra, gimbal_key in (("wrist_pitch", "wrist"), ("wrist_roll", "wrist_gimbal")):
        if s.has(f"{side}_{extra}"):
            gimbal = b.link(f"{side}_{gimbal_key}", "joint", _sphere(0.8 * jr))
            b.joint(key, parent, gimbal, origin)
            key, parent, origin = f"{side}_{extra}", gimbal, (0.0, 0.0, 0.0)
    palm = Shape("box", (2.2 * fr, 1.2 * fr, hand_len), (0.0, 0.0, -hand_len / 2.0))
    hand = b.link(f"{side}_hand", "hand", palm)
    b.joint(key, parent, hand, origin)
    if s.has(f"{side}_gripper"):
        finger_shape = Shape(
            "box", (1.6 * fr, 0.4 * fr, 0.5 * hand_len), (0.0, 0.0, -0.25 * hand_len)
        )
        finger = b.link(f"{side}_finger", "finger", finger_shape)
        b.joint(f"{side}_gripper", hand, finger, (0.0, sign * 0.8 * fr, -0.5 * hand_len))


def build_model(spec: ModelSpec) -> tuple[list[LinkDef], list[JointDef]]:
    """Links (depth-first, base first) and joints of a model at its spec's dimensions."""
    b, L = _Builder(spec), spec.length
    pelvis = b.link(
        BASE_LINK,
        "pelvis",
        Shape("box", (L("pelvis_depth"), L("pelvis_width"), L("pelvis_height"))),
    )
    _leg(b, "left", 1.0, pelvis)
    _leg(b, "right", -1.0, pelvis)
    jr, top = L("joint_radius"), (0.0, 0.0, L("pelvis_height") / 2.0)
    torso_box = Shape(
        "box",
        (L("torso_depth"), L("torso_width"), spec.torso_length),
        (0.0, 0.0, spec.torso_length / 2.0),
    )
    if spec.has("spine_pitch"):
        waist = b.link("waist", "waist", _rod(1.8 * jr, L("waist"), down=False))
        b.joint("spine_yaw", pelvis, waist, top)
        torso = b.link("torso", "torso", torso_box)
        b.joint("spine_pitch", waist, torso, (0.0, 0.0, L("waist")))
    else:
        torso = b.link("torso", "torso", torso_box)
        b.joint("spine_yaw", pelvis, torso, top)
    head_sphere = _sphere(L("head_radius"), L("head_radius"))
    if spec.has("neck_yaw"):
        neck = b.link("neck", "neck", _rod(jr, L("neck"), down=False))
        b.joint("neck_yaw", torso, neck, (0.0, 0.0, spec.torso_length))
        head = b.link("head", "head", head_sphere)
        b.joint("neck_pitch", neck, head, (0.0, 0.0, L("neck")))
    else:
        head = b.link("head", "head", head_sphere)
        b.joint("head_fixed", torso, head, (0.0, 0.0, spec.torso_length + L("neck")))
    _arm(b, "left", 1.0, torso)
    _arm(b, "right", -1.0, torso)
    links = b.links()
    _check_standing_extent(spec, links, b.joints)
    return links, b.joints


def _check_standing_extent(
    spec: ModelSpec, links: Sequence[LinkDef], joints: Sequence[JointDef]
) -> None:
    """At zero joints (pure translations) the soles must be at -base_height and the head top at
    height - base_height, relative to the pelvis frame."""
    offset: dict[str, Vec3] = {BASE_LINK: (0.0, 0.0, 0.0)}
    for j in joints:  # depth-first order: parents come first
        p = offset[j.parent]
        offset[j.child] = (p[0] + j.origin[0], p[1] + j.origin[1], p[2] + j.origin[2])
    extents = [[offset[link.name][2] + z for z in link.shape.z_extent()] for link in links]
    low, high = min(e[0] for e in extents), max(e[1] for e in extents)
    if (
        abs(low + spec.base_height_m) > 1e-9
        or abs(high - spec.height_m + spec.base_height_m) > 1e-9
    ):
        raise ValueError(f"{spec.name}: standing extent {low}..{high} does not match the spec")


def build_urdf(spec: ModelSpec) -> str:
    """The complete URDF text of a model."""
    links, joints = build_model(spec)
    total = sum(link.mass for link in links)
    comment = (
        f"{spec.name} by {spec.manufacturer} (fictional). Generated by robots.generate from "
        f"robots/vendors.py; do not edit. Height {spec.height_m:.3f} m, pelvis frame "
        f"{spec.base_height_m:.4f} m above the soles at zero joints, mass {total:.2f} kg, "
        f"{len(spec.dofs)} DOF."
    )
    materials = [(f"{spec.name}_{role}", rgba) for role, rgba in sorted(spec.colors.items())]
    return render_urdf(spec.name, comment, materials, links, joints)


def build_package_yaml(spec: ModelSpec) -> str:
    """The ``robot.yaml`` of a generated model: its spec's wire order, unit, rate and encoding;
    every canonical DOF maps to itself, vendor-only joints (grippers) stay unmapped."""
    wire = tuple(spec.joint_name(key) for key in spec.wire_order)
    package = PackageFile(
        model=spec.name,
        manufacturer=spec.manufacturer,
        urdf=f"{spec.name}.urdf",
        base_link=BASE_LINK,
        standing=Standing(
            height_m=round(spec.height_m, 9), base_height_m=round(spec.base_height_m, 9)
        ),
        telemetry=Telemetry(
            encoding=spec.encoding,
            position_unit=spec.position_unit,
            rate_hz=spec.rate_hz,
            wire_order=wire,
        ),
        canonical={spec.joint_name(k): k for k in spec.wire_order if is_canonical(k)},
    )
    unmapped = [spec.joint_name(k) for k in spec.wire_order if not is_canonical(k)]
    header = [
        f"{spec.name} by {spec.manufacturer} (fictional): a hall-twin robot package.",
        "Generated by robots.generate from robots/vendors.py; do not edit.",
    ]
    return render_package(package, header=header, unmapped=unmapped)


def package_files(spec: ModelSpec) -> dict[str, bytes]:
    """The files of a generated model's package, by name inside its folder."""
    return {
        f"{spec.name}.urdf": build_urdf(spec).encode("utf-8"),
        "robot.yaml": build_package_yaml(spec).encode("utf-8"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m robots.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only verify the checked-in files")
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="models folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir: Path = args.out
    stale: list[Path] = []
    for name, spec in SPECS.items():
        for file_name, data in package_files(spec).items():
            path = out_dir / name / file_name
            if path.exists() and path.read_bytes() == data:
                logger.info("%s: up to date", path)
            elif args.check:
                stale.append(path)
                logger.error("%s: differs from fresh generation", path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                logger.info("%s: written", path)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
