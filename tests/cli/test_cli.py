"""The ``twin`` command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from robots import get_model
from scenes import DEFAULT_SCENE


def twin(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_scene_check_json_on_the_default_hall() -> None:
    result = twin("scene", "check", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"robots", "manufacturers", "benches", "cranes", "panels"} <= set(data)
    assert len(data["robots"]) >= 6
    assert len(data["manufacturers"]) >= 3
    assert sum(m["robots"] for m in data["manufacturers"]) == len(data["robots"])
    assert len(data["benches"]) >= 4 and len(data["cranes"]) >= 1 and len(data["panels"]) >= 2


def test_scene_check_table_names_every_robot() -> None:
    result = twin("scene", "check", str(DEFAULT_SCENE))
    assert result.returncode == 0, result.stderr
    for robot_id in ("K1-01", "K1-03", "H2-01", "T3-02"):
        assert robot_id in result.stdout
    assert "Kestrel Robotics" in result.stdout and "C1" in result.stdout


def test_bad_scene_exits_2_with_the_key_path_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(
        DEFAULT_SCENE.read_text(encoding="utf-8").replace(
            "    rail_height: 8", "    rail_hieght: 8"
        ),
        encoding="utf-8",
    )
    result = twin("scene", "check", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(
        line.startswith(f"{bad}:")
        and "cranes[0].rail_hieght: unknown key 'rail_hieght' (did you mean 'rail_height'?)" in line
        for line in lines
    ), lines
    assert lines[-1] == "2 problems; scene not loaded"  # the typo, and the missing key it leaves


def test_missing_scene_file_exits_2(tmp_path: Path) -> None:
    result = twin("scene", "check", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_robots_lists_models_with_dof_and_height() -> None:
    result = twin("robots", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert {rows[m]["dof"] for m in ("kestrel_k1", "orca_h2", "tessel_t3")} == {27, 32, 23}
    assert len({rows[m]["manufacturer"] for m in rows}) == len(rows)
    assert rows["pybullet_humanoid"]["external"] is True
    assert all(1.0 < row["height_m"] < 2.2 for row in rows.values())


def test_robots_json_gives_a_gateway_writer_units_limits_signs_and_the_base_point() -> None:
    result = twin("robots", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    for name in ("kestrel_k1", "orca_h2", "tessel_t3"):
        row = rows[name]
        model = get_model(name)
        # the base point and how high it stands
        assert row["base_link"] == "pelvis" and "origin of link 'pelvis'" in row["position_ref"]
        assert row["standing"]["base_height_m"] == pytest.approx(model.base_height_m)
        assert row["standing"]["base_orientation_xyzw"] == [0.0, 0.0, 0.0, 1.0]
        assert 0.7 < row["standing"]["base_height_m"] < row["standing"]["height_m"]
        assert row["payload"].startswith(
            {"packed_f32": "3N float32", "packed_deg_f64": "3N float64", "map": "MessagePack map"}[
                row["encoding"]
            ]
        )
        assert "right-hand rule" in row["sign_convention"] and "SI" in row["limit_units"]
        # the wire order, and per joint its units on the wire, limits and axis
        assert [j["name"] for j in row["wire_order"]] == list(model.profile.joint_names)
        for joint in row["wire_order"]:
            info = model.joint(joint["name"])
            assert joint["lower"] == info.lower and joint["upper"] == info.upper
            assert joint["velocity_limit"] == info.velocity_limit > 0
            assert joint["effort_limit"] == info.effort_limit > 0
            assert joint["axis"] == pytest.approx(info.axis)
            assert joint["axis_in_base"] == pytest.approx(info.axis_in_base)
            assert sorted(map(abs, joint["axis"])) == [0.0, 0.0, 1.0]
            assert joint["child_link"] == info.child_link
            units = joint["wire_units"]
            if joint["kind"] == "prismatic":
                assert units == {"position": "m", "velocity": "m/s", "effort": "N"}
            else:
                unit = row["position_unit"]
                assert units == {"position": unit, "velocity": f"{unit}/s", "effort": "N·m"}
    assert rows["orca_h2"]["position_unit"] == "deg"  # degrees on the wire, limits in rad
    grip = next(j for j in rows["orca_h2"]["wire_order"] if j["name"] == "R_GRIP")
    assert grip["wire_units"]["position"] == "m" and grip["axis"] == [0.0, -1.0, 0.0]
    knee = next(j for j in rows["kestrel_k1"]["wire_order"] if j["name"] == "l_knee_joint")
    assert knee["axis_in_base"] == [0.0, 1.0, 0.0] and knee["lower"] == 0.0 < knee["upper"]
    # an external model's spherical joints have no single axis
    assert any(j["axis"] is None for j in rows["pybullet_humanoid"]["wire_order"])


def test_headless_demo_runs_emulator_twin_and_viewer_and_writes_a_video(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twin",
            "demo",
            "--headless",
            "--seconds",
            "2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # no DISPLAY; lessons (on in every demo) into the test's own database
        env={"PATH": "/usr/bin:/bin", "HALL_TWIN_LESSONS": str(tmp_path / "lessons.sqlite3")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training hall A" in result.stdout and "World built in" in result.stdout
    video, picture = tmp_path / "hall.mp4", tmp_path / "hall.png"
    assert f"video: {video} (48 frames, 2 s)" in result.stdout
    assert f"screenshot: {picture}" in result.stdout
    frames = iio.imread(video, index=None)
    assert frames.shape[0] == 48
    # the robots move between the first and the last frame: it is the live hall
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 60
    assert "emulator -> twin" in result.stderr


@pytest.mark.parametrize(
    ("spec", "why"),
    [("nonsense", "expected ROBOT:RULE"), ("K9-99:drop=0.1", "no robot 'K9-99'")],
)
def test_a_bad_demo_fault_is_one_line_and_exit_2_before_anything_starts(
    spec: str, why: str
) -> None:
    result = twin("demo", "--fault", spec, "--seconds", "5", timeout_s=60.0)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and "--fault" in lines[0], result.stderr
    assert "http://" not in result.stdout  # no page was served
