"""Tests of the robots package: generated URDFs, profiles, canonical mapping, external humanoid."""

from __future__ import annotations

import dataclasses
import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robots import (
    CANONICAL_JOINTS,
    JointInfo,
    RobotModel,
    TelemetryProfile,
    UnknownModelError,
    UrdfError,
    get_model,
    model_names,
    parse_urdf,
)
from robots.bullet import pb as p
from robots.canonical import hanim_joint, mirror
from robots.generate import build_urdf, main
from robots.spec import urdf_path
from robots.vendors import SPECS

GENERATED = ("kestrel_k1", "orca_h2", "tessel_t3")
EXPECTED_DOF = {"kestrel_k1": 27, "orca_h2": 32, "tessel_t3": 23}
PB_KIND = {"revolute": p.JOINT_REVOLUTE, "prismatic": p.JOINT_PRISMATIC}


@pytest.fixture
def client() -> Iterator[int]:
    cid = p.connect(p.DIRECT)
    try:
        yield cid
    finally:
        p.disconnect(physicsClientId=cid)


def load(model: RobotModel, cid: int, z: float = 0.0) -> int:
    return int(
        p.loadURDF(
            str(model.loadable_urdf),
            basePosition=(0.0, 0.0, z),
            baseOrientation=model.base_orientation_xyzw,
            flags=p.URDF_USE_INERTIA_FROM_FILE,
            globalScaling=model.scale,
            physicsClientId=cid,
        )
    )


def pb_joints(body: int, cid: int) -> dict[str, tuple[Any, ...]]:
    """getJointInfo of every non-fixed joint by name."""
    infos = (
        p.getJointInfo(body, i, physicsClientId=cid)
        for i in range(p.getNumJoints(body, physicsClientId=cid))
    )
    return {info[1].decode(): info for info in infos if info[2] != p.JOINT_FIXED}


def urdf_inertials(path: Path) -> dict[str, tuple[float, tuple[float, ...], str]]:
    """Link -> (mass, (ixx, iyy, izz, ixy, ixz, iyz), material of its visual)."""
    result = {}
    for link in ET.parse(path).getroot().findall("link"):
        inertial = link.find("inertial")
        assert inertial is not None, link.get("name")
        mass = float(inertial.find("mass").get("value"))  # type: ignore[union-attr,arg-type]
        inertia = inertial.find("inertia")
        assert inertia is not None
        moments = tuple(
            float(inertia.get(k, "0")) for k in ("ixx", "iyy", "izz", "ixy", "ixz", "iyz")
        )
        material = link.find("visual/material")
        result[str(link.get("name"))] = (
            mass,
            moments,
            "" if material is None else str(material.get("name")),
        )
    return result


def aabb_z(body: int, cid: int) -> tuple[float, float]:
    boxes = [
        p.getAABB(body, i, physicsClientId=cid)
        for i in range(-1, p.getNumJoints(body, physicsClientId=cid))
    ]
    return min(lo[2] for lo, _ in boxes), max(hi[2] for _, hi in boxes)


def test_model_names() -> None:
    # the built-in packages, in folder order
    assert model_names() == ("kestrel_k1", "orca_h2", "pybullet_humanoid", "tessel_t3")


@pytest.mark.parametrize("name", GENERATED)
def test_generated_model_loads_and_matches_parsed_joints(name: str, client: int) -> None:
    model = get_model(name)
    assert model.dof == EXPECTED_DOF[name] == len(model.joints)
    assert not model.external and model.base_link == "pelvis"
    assert model.base_orientation_xyzw == (0.0, 0.0, 0.0, 1.0)
    joints = pb_joints(load(model, client), client)
    assert set(joints) == {j.name for j in model.joints}
    assert len(joints) == EXPECTED_DOF[name]
    for j in model.joints:
        info = joints[j.name]
        assert info[2] == PB_KIND[j.kind], j.name
        assert info[8] == pytest.approx(j.lower) and info[9] == pytest.approx(j.upper), j.name
        assert info[10] == pytest.approx(j.effort_limit), j.name
        assert info[11] == pytest.approx(j.velocity_limit), j.name
        assert info[12].decode() == j.child_link
        assert j.lower < j.upper and j.velocity_limit > 0 and j.effort_limit > 0


@pytest.mark.parametrize("name", GENERATED)
def test_joint_axes_follow_names(name: str, client: int) -> None:
    model = get_model(name)
    joints = pb_joints(load(model, client), client)
    expected = {
        "yaw": (0, 0, 1),
        "roll": (1, 0, 0),
        "pitch": (0, 1, 0),
        "knee": (0, 1, 0),
        "elbow": (0, 1, 0),
    }
    for j in model.joints:
        canonical = model.profile.canonical_name(j.name)
        if canonical == j.name:  # gripper: slides sideways
            assert j.kind == "prismatic" and abs(joints[j.name][13][1]) == pytest.approx(1.0)
            continue
        axis = expected[canonical.rsplit("_", 1)[-1]]
        assert joints[j.name][13] == pytest.approx(axis), j.name


@pytest.mark.parametrize("name", GENERATED)
def test_checked_in_urdf_equals_fresh_generation(name: str) -> None:
    fresh = build_urdf(SPECS[name])
    assert urdf_path(name).read_bytes() == fresh.encode("utf-8")
    assert build_urdf(SPECS[name]) == fresh  # deterministic
    assert "mesh" not in fresh


def test_generate_cli_check_and_write(tmp_path: Path) -> None:
    assert main(["--check"]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 1  # nothing there yet
    assert main(["--out", str(tmp_path)]) == 0
    for name in GENERATED:
        assert (tmp_path / name / f"{name}.urdf").read_bytes() == urdf_path(name).read_bytes()
        yaml_file = urdf_path(name).with_name("robot.yaml")
        assert (tmp_path / name / "robot.yaml").read_bytes() == yaml_file.read_bytes()
    assert main(["--check", "--out", str(tmp_path)]) == 0


def test_vendor_naming_styles() -> None:
    kestrel, orca, tessel = (set(get_model(n).profile.joint_names) for n in GENERATED)
    assert {
        "l_hip_yaw_joint",
        "l_knee_joint",
        "torso_yaw_joint",
        "neck_pitch_joint",
        "r_wrist_pitch_joint",
    } <= kestrel
    assert {
        "L_HIP_Y",
        "L_HIP_R",
        "L_HIP_P",
        "L_KNEE",
        "L_ANK_P",
        "L_ANK_R",
        "WAIST_Y",
        "WAIST_P",
    } <= orca
    assert {
        "NECK_Y",
        "NECK_P",
        "L_SHO_P",
        "L_SHO_R",
        "L_SHO_Y",
        "L_ELB",
        "L_WRI_Y",
        "L_WRI_P",
        "L_WRI_R",
    } <= orca
    assert {"L_GRIP", "R_GRIP", "R_WRI_R"} <= orca
    assert {
        "LeftHipYaw",
        "LeftKnee",
        "TorsoYaw",
        "LeftShoulderPitch",
        "LeftWristYaw",
        "RightAnkleRoll",
    } <= tessel
    assert not any("Neck" in n for n in tessel)


@pytest.mark.parametrize("name", GENERATED)
def test_profile_covers_every_joint_and_maps_to_canonical(name: str) -> None:
    model = get_model(name)
    profile = model.profile
    assert sorted(profile.joint_names) == sorted(j.name for j in model.joints)
    assert len(set(profile.joint_names)) == len(profile.joint_names)
    assert set(profile.to_canonical.values()) <= set(CANONICAL_JOINTS)
    assert len(set(profile.to_canonical.values())) == len(profile.to_canonical)
    for vendor in profile.joint_names:
        canonical = profile.canonical_name(vendor)
        assert canonical in CANONICAL_JOINTS or (canonical == vendor and vendor.endswith("GRIP"))
        assert profile.vendor_name(canonical) == vendor
        assert model.joint(canonical) == model.joint(vendor)
        assert model.child_link_of(canonical) == model.joint(vendor).child_link
    unmapped = [v for v in profile.joint_names if v not in profile.to_canonical]
    assert unmapped == (["L_GRIP", "R_GRIP"] if name == "orca_h2" else [])


def test_orca_grippers_kept_under_vendor_name() -> None:
    orca = get_model("orca_h2")
    for grip in ("L_GRIP", "R_GRIP"):
        assert orca.profile.canonical_name(grip) == grip
        assert orca.joint(grip).kind == "prismatic"
        assert 0.0 <= orca.joint(grip).lower < orca.joint(grip).upper <= 0.1  # metres
        assert orca.position_scale(grip) == 1.0
    assert orca.position_scale("L_KNEE") == pytest.approx(math.pi / 180.0)


def test_profiles_units_rates_encodings_and_orders_differ() -> None:
    profiles = {n: get_model(n).profile for n in GENERATED}
    assert {n: pr.rate_hz for n, pr in profiles.items()} == {
        "kestrel_k1": 500.0,
        "orca_h2": 200.0,
        "tessel_t3": 100.0,
    }
    assert {n: pr.position_unit for n, pr in profiles.items()} == {
        "kestrel_k1": "rad",
        "orca_h2": "deg",
        "tessel_t3": "rad",
    }
    assert profiles["kestrel_k1"].encoding == "packed_f32"
    assert profiles["orca_h2"].encoding == "packed_deg_f64"
    assert profiles["tessel_t3"].encoding == "map"
    assert [pr.manufacturer for pr in profiles.values()] == [
        "Kestrel Robotics",
        "Orca Mechatronics",
        "Tessel Humanoids",
    ]
    for a, b in itertools.combinations(GENERATED, 2):
        common = set(profiles[a].canonical_joint_names) & set(profiles[b].canonical_joint_names)
        order_a = [c for c in profiles[a].canonical_joint_names if c in common]
        order_b = [c for c in profiles[b].canonical_joint_names if c in common]
        assert order_a != order_b, (a, b)
    # the wire order is independent of the URDF document order
    assert list(profiles["orca_h2"].joint_names) != [j.name for j in get_model("orca_h2").joints]


def test_unknown_joint_names_raise_clear_key_errors() -> None:
    tessel = get_model("tessel_t3")
    with pytest.raises(KeyError, match="neck_yaw"):
        tessel.joint("neck_yaw")  # canonical, but Tessel has no neck
    with pytest.raises(KeyError, match="Tessel Humanoids"):
        tessel.profile.vendor_name("bogus")
    with pytest.raises(KeyError):
        tessel.profile.canonical_name("bogus")


def test_profile_validation_rejects_inconsistent_profiles() -> None:
    def make(names: tuple[str, ...], mapping: dict[str, str]) -> TelemetryProfile:
        return TelemetryProfile("X", names, "rad", 50.0, "map", mapping)

    with pytest.raises(ValueError, match="more than once"):
        make(("a", "a"), {})
    with pytest.raises(ValueError, match="not canonical"):
        make(("a",), {"a": "left_toe"})
    with pytest.raises(ValueError, match="mapped twice"):
        make(("a", "b"), {"a": "left_knee", "b": "left_knee"})
    model = get_model("kestrel_k1")
    partial = make(model.profile.joint_names[:-1], {})
    with pytest.raises(ValueError, match="every movable joint"):
        dataclasses.replace(model, profile=partial)


def test_canonical_skeleton() -> None:
    assert len(CANONICAL_JOINTS) == len(set(CANONICAL_JOINTS)) == 32
    for name in (
        "left_hip_yaw",
        "right_ankle_roll",
        "spine_pitch",
        "neck_roll",
        "left_elbow",
        "right_wrist_roll",
    ):
        assert name in CANONICAL_JOINTS
    assert [
        hanim_joint(n) for n in ("left_hip_pitch", "right_knee", "left_ankle_pitch", "neck_yaw")
    ] == [
        "l_hip",
        "r_knee",
        "l_talocrural",
        "skullbase",
    ]
    assert (
        hanim_joint("right_wrist_yaw") == "r_radiocarpal" and mirror("left_elbow") == "right_elbow"
    )


@pytest.mark.parametrize("name", GENERATED)
def test_masses_and_inertias_are_physical(name: str, client: int) -> None:
    model = get_model(name)
    inertials = urdf_inertials(model.urdf_path)
    assert set(inertials) == set(model.links)
    total = sum(mass for mass, _, _ in inertials.values())
    assert 35.0 <= total <= 75.0
    assert total == pytest.approx(SPECS[name].mass_kg, rel=1e-6)
    for link, (mass, (ixx, iyy, izz, ixy, ixz, iyz), material) in inertials.items():
        assert mass > 0.0, link
        assert (ixy, ixz, iyz) == (0.0, 0.0, 0.0) and min(ixx, iyy, izz) > 0.0, link
        assert ixx + iyy >= izz and ixx + izz >= iyy and iyy + izz >= ixx, link
        if material.endswith("_joint") and not link.startswith(("WAIST", "waist")):
            assert 0.3 <= mass <= 1.0, link  # small intermediate links of multi-DOF joints
    body = load(model, client)
    names = {-1: model.base_link} | {
        i: p.getJointInfo(body, i, physicsClientId=client)[12].decode()
        for i in range(p.getNumJoints(body, physicsClientId=client))
    }
    pb_total = 0.0
    for index, link in names.items():
        mass, _, diag = p.getDynamicsInfo(body, index, physicsClientId=client)[:3]
        a, b, c = diag
        assert mass == pytest.approx(inertials[link][0]) and mass > 0.0
        assert min(diag) > 0.0 and a + b >= c and a + c >= b and b + c >= a, link
        assert diag == pytest.approx(inertials[link][1][:3], rel=1e-6)
        pb_total += mass
    assert pb_total == pytest.approx(total)


@pytest.mark.parametrize("name", GENERATED)
def test_every_link_has_visual_and_collision(name: str, client: int) -> None:
    model = get_model(name)
    body = load(model, client)
    visual_links = {row[1] for row in p.getVisualShapeData(body, physicsClientId=client)}
    for index in range(-1, p.getNumJoints(body, physicsClientId=client)):
        assert index in visual_links
        assert p.getCollisionShapeData(body, index, physicsClientId=client), index
    root = ET.parse(model.urdf_path).getroot()
    assert all(
        link.find("visual") is not None and link.find("collision") is not None
        for link in root.iter("link")
    )


@pytest.mark.parametrize("name", (*GENERATED, "pybullet_humanoid"))
def test_stands_on_floor_at_base_height(name: str, client: int) -> None:
    model = get_model(name)
    low, high = aabb_z(load(model, client, z=model.base_height_m), client)
    tolerance = 0.01 if not model.external else 0.01 * model.height_m
    assert abs(low) < tolerance
    assert high == pytest.approx(model.height_m, abs=0.02 if not model.external else tolerance)


def test_heights_masses_and_link_lengths_differ() -> None:
    models = [get_model(n) for n in GENERATED]
    assert [m.height_m for m in models] == pytest.approx([1.65, 1.80, 1.45], abs=0.03)
    assert len({m.height_m for m in models}) == 3 and len({m.base_height_m for m in models}) == 3
    lengths = [SPECS[n].segment_lengths() for n in GENERATED]
    for key in lengths[0]:
        assert len({round(seg[key], 6) for seg in lengths}) == 3, key


def test_link_lengths_in_urdf_differ_by_model(client: int) -> None:
    thighs = set()
    for name in GENERATED:
        model = get_model(name)
        body = load(model, client)
        joints = pb_joints(body, client)
        hip = joints[model.profile.vendor_name("left_hip_pitch")][0]
        knee = joints[model.profile.vendor_name("left_knee")][0]
        hip_z = p.getLinkState(body, hip, physicsClientId=client)[4][2]  # URDF link frame
        knee_z = p.getLinkState(body, knee, physicsClientId=client)[4][2]
        thigh = hip_z - knee_z
        assert thigh == pytest.approx(SPECS[name].segment_lengths()["thigh"])
        thighs.add(round(thigh, 6))
    assert len(thighs) == 3


def test_limits_plausible_and_manufacturer_specific() -> None:
    knees = {n: get_model(n).joint("left_knee") for n in GENERATED}
    for knee in knees.values():
        assert knee.lower == 0.0 and 2.2 <= knee.upper <= 2.5
        assert 100.0 <= knee.effort_limit <= 300.0
    assert len({k.effort_limit for k in knees.values()}) == 3
    for name in GENERATED:
        model = get_model(name)
        hip = model.joint("right_hip_pitch")
        assert -2.2 <= hip.lower <= -1.8 and 0.5 <= hip.upper <= 1.7
        assert 10.0 <= model.joint("left_wrist_yaw").effort_limit <= 30.0
        left, right = model.joint("left_hip_roll"), model.joint("right_hip_roll")
        assert (right.lower, right.upper) == pytest.approx((-left.upper, -left.lower))


def test_external_pybullet_humanoid(client: int) -> None:
    model = get_model("pybullet_humanoid")
    assert model.external and model.manufacturer.endswith("(external)")
    assert model.urdf_path.name == "humanoid.urdf" and model.urdf_path.parent.name == "humanoid"
    body = load(model, client, z=model.base_height_m)
    pb = pb_joints(body, client)
    assert len(pb) == len(model.joints) == 12 and set(pb) == {j.name for j in model.joints}
    kinds = {j.name: j.kind for j in model.joints}
    assert {n for n, k in kinds.items() if k == "spherical"} == {
        n for n, i in pb.items() if i[2] == p.JOINT_SPHERICAL
    }
    assert model.dof == 8 * 3 + 4
    profile = model.profile
    assert (profile.rate_hz, profile.position_unit, profile.encoding) == (60.0, "rad", "map")
    for hinge in ("left_knee", "right_knee", "left_elbow", "right_elbow"):
        assert profile.canonical_name(hinge) == hinge and model.joint(hinge).kind == "revolute"
    for spherical in ("right_hip", "left_shoulder", "chest", "neck", "left_ankle"):
        assert profile.canonical_name(spherical) == spherical
        assert math.isinf(model.joint(spherical).upper)
    knee = model.joint("right_knee")
    assert (knee.lower, knee.upper, knee.effort_limit, knee.velocity_limit) == (
        -3.14,
        0.0,
        1000.0,
        0.5,
    )
    # Y-up model turned Z-up: standing figure much taller than wide, feet below the base.
    aabbs = [
        p.getAABB(body, i, physicsClientId=client)
        for i in range(-1, p.getNumJoints(body, physicsClientId=client))
    ]
    width_y = max(hi[1] for _, hi in aabbs) - min(lo[1] for lo, _ in aabbs)
    assert model.height_m > 2.5 * width_y
    assert model.base_height_m > 0.4 * model.height_m
    # loaded at PyBullet's own example scale it is a person, not a 6 m giant
    assert model.scale == 0.25 and 1.4 < model.height_m < 1.9


def test_unknown_model_error_lists_known_names() -> None:
    with pytest.raises(UnknownModelError) as excinfo:
        get_model("atlas")
    message = str(excinfo.value)
    assert "atlas" in message
    for name in model_names():
        assert name in message
    assert isinstance(excinfo.value, KeyError)


def test_parse_urdf_reports_file_on_bad_xml(tmp_path: Path) -> None:
    bad = tmp_path / "broken.urdf"
    bad.write_text("<robot name='x'><link name='a'></robot>")
    with pytest.raises(UrdfError, match=r"broken\.urdf"):
        parse_urdf(bad)
    two_roots = tmp_path / "two.urdf"
    two_roots.write_text("<robot name='x'><link name='a'/><link name='b'/></robot>")
    with pytest.raises(UrdfError, match="one root"):
        parse_urdf(two_roots)


def test_parse_urdf_handles_continuous_and_missing_limits(tmp_path: Path) -> None:
    path = tmp_path / "wheel.urdf"
    path.write_text(
        "<robot name='w'><link name='a'/><link name='b'/><link name='c'/>"
        "<joint name='spin' type='continuous'><parent link='a'/><child link='b'/></joint>"
        "<joint name='weld' type='fixed'><parent link='b'/><child link='c'/></joint></robot>"
    )
    base, joints, links = parse_urdf(path)
    assert (base, links) == ("a", ("a", "b", "c"))
    assert joints == (
        JointInfo(
            "spin", "continuous", -math.inf, math.inf, math.inf, math.inf, "a", "b",
            axis=(1.0, 0.0, 0.0), axis_in_base=(1.0, 0.0, 0.0),
        ),
    )  # fmt: skip


def test_parse_urdf_turns_each_axis_into_the_base_frame(tmp_path: Path) -> None:
    """``axis`` is the URDF's (normalised), ``axis_in_base`` the same axis seen from the base
    link with every joint at zero: through the ``<origin rpy>`` of the joints above it,
    fixed ones included, and its own."""
    path = tmp_path / "arm.urdf"
    path.write_text(
        "<robot name='arm'><link name='base'/><link name='mount'/><link name='upper'/>"
        "<link name='lower'/><link name='finger'/>"
        # a fixed mount yawed +90 deg: its x is the base's y
        "<joint name='weld' type='fixed'><parent link='base'/><child link='mount'/>"
        "<origin xyz='0 0 1' rpy='0 0 1.5707963267948966'/></joint>"
        "<joint name='shoulder' type='revolute'><parent link='mount'/><child link='upper'/>"
        "<axis xyz='2 0 0'/><limit lower='-1' upper='1' velocity='2' effort='3'/></joint>"
        # pitched -90 deg about y: its z is the base's ... x turned by the mount's yaw
        "<joint name='elbow' type='revolute'><parent link='upper'/><child link='lower'/>"
        "<origin rpy='0 -1.5707963267948966 0'/><axis xyz='0 0 1'/>"
        "<limit lower='-1' upper='1'/></joint>"
        "<joint name='slide' type='prismatic'><parent link='lower'/><child link='finger'/>"
        "<axis xyz='0 -1 0'/><limit lower='0' upper='0.04'/></joint></robot>"
    )
    _, joints, _ = parse_urdf(path)
    by_name = {j.name: j for j in joints}
    assert by_name["shoulder"].axis == (1.0, 0.0, 0.0)
    assert by_name["shoulder"].axis_in_base == pytest.approx((0.0, 1.0, 0.0))
    # Ry(-90 deg) takes z to -x; the mount's yaw takes -x to -y
    assert by_name["elbow"].axis == (0.0, 0.0, 1.0)
    assert by_name["elbow"].axis_in_base == pytest.approx((0.0, -1.0, 0.0))
    # Ry(-90) keeps y; the yaw takes -y to +x
    assert by_name["slide"].axis_in_base == pytest.approx((1.0, 0.0, 0.0))


@pytest.mark.parametrize("name", GENERATED)
def test_parsed_axes_are_the_ones_pybullet_loads(name: str, client: int) -> None:
    model = get_model(name)
    joints = pb_joints(load(model, client), client)
    for j in model.joints:
        assert joints[j.name][13] == pytest.approx(j.axis), j.name
        assert j.axis_in_base == pytest.approx(j.axis), j.name  # no joint origin is rotated
