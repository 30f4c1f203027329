"""The ``twin`` command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

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
