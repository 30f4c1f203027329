"""Robot packages: drafted from a manufacturer's URDF, checked with exact problems, found on the
models path, loaded with their meshes in the world."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from robots import PackageError, find_models, get_model, model_names
from robots.draft import propose_one
from robots.library import ENV_ROBOTS, model_in
from robots.package import check_package
from scenes import SceneError, parse_scene
from tests.helpers import ROOT
from tests.robots.acme import MANUFACTURER, expected_mapping, write_acme
from twin import World

logging.getLogger("trimesh").setLevel(logging.ERROR)  # no scipy: normals fall back, noisily


def twin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def acme_urdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_acme(tmp_path_factory.mktemp("vendor"))


@pytest.fixture(scope="module")
def acme_models(acme_urdf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the package `twin robots add` drafts from the Acme URDF."""
    models = tmp_path_factory.mktemp("models")
    result = twin(
        "robots", "add", str(acme_urdf), "--manufacturer", MANUFACTURER,
        "--out", str(models / "acme_a1"), "--rate-hz", "250",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "LWP" in result.stdout and "no body part in the name" in result.stdout
    return models


@pytest.fixture
def on_path(acme_models: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(ENV_ROBOTS, str(acme_models))
    yield acme_models


def test_names_are_read_as_manufacturers_write_them() -> None:
    y = (0.0, 1.0, 0.0)
    assert propose_one("left_hip_pitch_joint", y)[0] == "left_hip_pitch"
    assert propose_one("waist_yaw_joint", y)[0] == "spine_yaw"
    assert propose_one("L_KNEE", y)[0] == "left_knee"
    assert propose_one("LeftAnklePitch", y)[0] == "left_ankle_pitch"
    assert propose_one("R_SHO_R", y)[0] == "right_shoulder_roll"
    assert propose_one("l_hip", (1.0, 0.0, 0.0)) == ("left_hip_roll", "rotation from the URDF axis")
    assert propose_one("l_hip", (0.6, 0.8, 0.0))[0] is None  # a skewed axis: no guess
    assert propose_one("FR_thigh_joint", y)[0] is None
    assert propose_one("left_ankle_yaw", y) == (None, "left_ankle_yaw is no canonical joint")


def test_add_drafts_a_package_with_meshes_mapping_and_height(acme_models: Path) -> None:
    root = acme_models / "acme_a1"
    urdf_text = (root / "acme_a1.urdf").read_text(encoding="utf-8")
    assert "package://" not in urdf_text and 'filename="meshes/' in urdf_text
    assert len(list((root / "meshes").glob("*.stl"))) > 30
    assert len(list((root / "meshes").glob("*.dae"))) > 5
    assert check_package(root) == []
    model = model_in(root)
    assert dict(model.profile.to_canonical) == expected_mapping()
    assert model.profile.joint_names == tuple(j.name for j in model.joints)
    assert model.profile.rate_hz == 250.0 and model.profile.encoding == "packed_f32"
    kestrel = get_model("kestrel_k1")  # same kinematics, mesh primitives
    assert model.height_m == pytest.approx(kestrel.height_m, abs=0.01)
    assert model.base_height_m == pytest.approx(kestrel.base_height_m, abs=0.01)
    assert model.external and model.manufacturer == MANUFACTURER


def test_add_refuses_to_overwrite_and_bad_options(acme_urdf: Path, acme_models: Path) -> None:
    again = twin("robots", "add", str(acme_urdf), "--manufacturer", "X", "--out",
                 str(acme_models / "acme_a1"))  # fmt: skip
    assert again.returncode == 2
    assert "already holds a package (robot.yaml); --force replaces it" in again.stderr
    bad = twin("robots", "add", str(acme_urdf), "--manufacturer", "X", "--encoding", "cbor")
    assert bad.returncode == 2
    assert "--encoding 'cbor': expected packed_f32, packed_deg_f64 or map" in bad.stderr
    missing = twin("robots", "add", "nope.urdf", "--manufacturer", "X")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in again.stderr + bad.stderr + missing.stderr


def test_models_path_lists_and_finds_the_new_model(on_path: Path) -> None:
    assert "acme_a1" in model_names() and "kestrel_k1" in model_names()
    entry = next(e for e in find_models() if e.name == "acme_a1")
    assert entry.origin == ENV_ROBOTS and entry.root == (on_path / "acme_a1").resolve()
    listing = twin("robots", "--json", env={ENV_ROBOTS: str(on_path)})
    assert listing.returncode == 0, listing.stderr
    rows = {row["model"]: row for row in json.loads(listing.stdout)}
    acme = rows["acme_a1"]
    assert acme["origin"] == ENV_ROBOTS and acme["telemetry_rate_hz"] == 250.0
    wire = acme["wire_order"]
    assert [w["name"] for w in wire][:3] == ["l_hip_yaw_joint", "l_hip_roll_joint",
                                             "left_hip_pitch_joint"]  # fmt: skip
    knee = next(w for w in wire if w["name"] == "L_KNEE")
    assert knee["canonical"] == "left_knee" and knee["kind"] == "revolute"
    assert knee["lower"] < knee["upper"] and knee["effort_limit"] > 0
    assert next(w for w in wire if w["name"] == "LWP")["canonical"] == "LWP"
    # --robots-dir does the same as the environment
    flag = twin("--robots-dir", str(on_path), "robots", "--json", env={ENV_ROBOTS: ""})
    assert "acme_a1" in {row["model"] for row in json.loads(flag.stdout)}


def test_a_scene_names_its_own_models_folder(acme_models: Path, tmp_path: Path) -> None:
    scene_file = tmp_path / "hall.yaml"
    scene_file.write_text(
        f"""\
name: acme hall
robot_dirs: [{os.path.relpath(acme_models, tmp_path)}]
floor: {{size: [6, 6]}}
hub: {{id: HUB, pose: {{xyz: [5, 5, 0]}}, size: [0.5, 0.5, 1]}}
stations: [{{id: S1, pose: {{xyz: [3, 3, 0]}}}}]
robots: [{{id: ACME-1, model: acme_a1, station: S1, task: idle}}]
""",
        encoding="utf-8",
    )
    result = twin("scene", "check", str(scene_file), "--json", env={ENV_ROBOTS: ""})
    assert result.returncode == 0, result.stderr
    robots = json.loads(result.stdout)["robots"]
    assert robots[0]["model"] == "acme_a1" and robots[0]["manufacturer"] == MANUFACTURER
    scene_file.write_text(
        scene_file.read_text(encoding="utf-8").replace(
            "robot_dirs: [", "robot_dirs: [no_such_dir, "
        ),
        encoding="utf-8",
    )
    bad = twin("scene", "check", str(scene_file), env={ENV_ROBOTS: ""})
    assert bad.returncode == 2
    assert f"{scene_file}:2: robot_dirs[0]: no such folder 'no_such_dir'" in bad.stderr


def test_the_mesh_robot_stands_in_the_world_on_its_collision_meshes(on_path: Path) -> None:
    text = """\
name: acme
floor: {size: [6, 6]}
hub: {id: HUB, pose: {xyz: [5, 5, 0]}, size: [0.5, 0.5, 1]}
stations: [{id: S1, pose: {xyz: [3, 3, 0]}}]
robots: [{id: ACME-1, model: acme_a1, station: S1, task: idle}]
"""
    from robots.bullet import pb

    with World(parse_scene(text), robots_fixed_base=False) as world:
        body = world.robot("ACME-1").body
        shapes = pb.getCollisionShapeData(body, -1, physicsClientId=world.client)
        assert shapes and shapes[0][2] == pb.GEOM_MESH  # the URDF's own collision mesh
        world.set_joint_positions("ACME-1", {"left_knee": 0.4})
        assert world.joint_positions("ACME-1")["left_knee"] == pytest.approx(0.4)
        world.step(240)  # a second of falling: the soles' meshes meet the floor, not sink
        low = min(
            pb.getAABB(body, i, physicsClientId=world.client)[0][2]
            for i in range(-1, pb.getNumJoints(body, physicsClientId=world.client))
        )
        assert low > -0.02


def _copy(acme_models: Path, tmp_path: Path) -> Path:
    root = tmp_path / "acme_a1"
    shutil.copytree(acme_models / "acme_a1", root)
    return root


def _edit(root: Path, old: str, new: str) -> None:
    path = root / "robot.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _line(root: Path, needle: str) -> int:
    lines = (root / "robot.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def _check(root: Path) -> list[str]:
    result = twin("robots", "check", str(root))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()


def test_each_bad_package_gives_its_exact_message(acme_models: Path, tmp_path: Path) -> None:
    yaml_file = f"{tmp_path}/acme_a1/robot.yaml"
    root = _copy(acme_models, tmp_path)
    # a mesh file gone
    (root / "meshes" / "pelvis_visual0.stl").unlink()
    urdf_lines = (root / "acme_a1.urdf").read_text(encoding="utf-8").splitlines()
    line = next(i for i, t in enumerate(urdf_lines, 1) if "pelvis_visual0.stl" in t)
    assert _check(root) == [
        f"{root}/acme_a1.urdf:{line}: mesh 'meshes/pelvis_visual0.stl': no such file"
    ]
    shutil.rmtree(root)

    root = _copy(acme_models, tmp_path)
    _edit(root, "    - l_hip_roll_joint\n", "    - l_hip_roll_jiont\n")
    n, key = _line(root, "l_hip_roll_jiont"), _line(root, "wire_order:")
    assert _check(root) == [
        f"{yaml_file}:{key}: telemetry.wire_order: movable joints of acme_a1.urdf missing "
        "(every one goes on the wire once): l_hip_roll_joint",
        f"{yaml_file}:{n}: telemetry.wire_order[1]: 'l_hip_roll_jiont' is not a movable joint "
        "of acme_a1.urdf",
    ]
    shutil.rmtree(root)

    root = _copy(acme_models, tmp_path)
    _edit(root, "  R_KNEE: right_knee", "  R_KNEE: left_knee")
    n = _line(root, "R_KNEE: left_knee")
    assert _check(root) == [
        f"{yaml_file}:{n}: canonical.R_KNEE: canonical joint 'left_knee' mapped twice "
        "(also by 'L_KNEE')"
    ]
    _edit(root, "R_KNEE: left_knee", "R_KNEE: right_kne")
    assert _check(root) == [
        f"{yaml_file}:{n}: canonical.R_KNEE: 'right_kne' is not a canonical joint "
        "(did you mean 'right_knee'?)"
    ]
    shutil.rmtree(root)

    root = _copy(acme_models, tmp_path)
    _edit(root, "position_unit: rad", "position_unit: deg")
    n = _line(root, "position_unit: deg")
    assert _check(root) == [
        f"{yaml_file}:{n}: telemetry.position_unit: packed_f32 carries rad, not deg"
    ]
    _edit(root, "position_unit: deg", "position_unit: grad")
    assert _check(root) == [
        f"{yaml_file}:{n}: telemetry.position_unit: 'grad' is not one of 'rad' or 'deg'"
    ]
    shutil.rmtree(root)

    root = _copy(acme_models, tmp_path)
    _edit(root, "rate_hz: 250.0", "rate_hz: 250.0\n  rate: 5")
    n = _line(root, "rate: 5")
    assert _check(root) == [
        f"{yaml_file}:{n}: telemetry.rate: unknown key 'rate' (did you mean 'rate_hz'?)"
    ]
    shutil.rmtree(root)

    root = _copy(acme_models, tmp_path)
    _edit(root, "urdf: acme_a1.urdf", "urdf: gone.urdf")
    n = _line(root, "urdf: gone.urdf")
    assert _check(root) == [f"{yaml_file}:{n}: urdf: no such file '{root}/gone.urdf'"]
    (root / "robot.yaml").write_text("a: [b", encoding="utf-8")
    (line_text,) = _check(root)
    assert line_text.startswith(f"{yaml_file}:") and "YAML syntax error" in line_text


def test_a_broken_package_on_the_path_is_named_not_unknown(
    acme_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(acme_models, tmp_path)
    _edit(root, "  R_KNEE: right_knee", "  R_KNEE: left_knee")
    monkeypatch.setenv(ENV_ROBOTS, str(tmp_path))
    assert "acme_a1" not in model_names()
    with pytest.raises(PackageError, match="mapped twice"):
        get_model("acme_a1")
    text = """\
name: acme
floor: {size: [6, 6]}
hub: {id: HUB, pose: {xyz: [5, 5, 0]}, size: [0.5, 0.5, 1]}
stations: [{id: S1, pose: {xyz: [3, 3, 0]}}]
robots: [{id: ACME-1, model: acme_a1, station: S1, task: idle}]
"""
    with pytest.raises(SceneError, match=r"robots\[0\]\.model: the package of model 'acme_a1' has"):
        parse_scene(text, "hall.yaml")
