"""A new manufacturer's robot, end to end, without editing any Python: ``twin robots add`` from a
URDF folder with STL and DAE meshes (and pybullet_data's laikago with OBJ meshes), a scene line,
``twin emulate`` + ``twin live`` (LIVE, its task done from the canonical mapping), and
``twin view --screenshot`` drawing its meshes."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pybullet_data
import pytest
import zmq

from sync.addresses import Endpoints
from sync.fanout import CloneClient, request_status
from tests.helpers import ROOT, STARTUP_S, Proc, wait_for
from tests.robots.acme import MANUFACTURER, write_acme

logging.getLogger("trimesh").setLevel(logging.ERROR)

SCENE = """\
name: new robots
floor: {{size: [5, 4]}}
hub: {{id: HUB, pose: {{xyz: [4.6, 3.6, 0]}}, size: [0.4, 0.4, 0.8]}}
stations:
  - {{id: S1, pose: {{xyz: [1.8, 2, 0], yaw: -90 deg}}}}
  - {{id: S2, pose: {{xyz: [3.2, 2, 0], yaw: -90 deg}}}}
robots:
{robots}
"""
ROBOTS = """\
  - {id: ACME-1, model: acme_a1, station: S1, task: squats}
  - {id: LAIKA-1, model: laikago, station: S2, task: squats}
"""


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},  # no DISPLAY, no HALL_TWIN_ROBOTS
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    acme = write_acme(tmp_path_factory.mktemp("vendor"))
    laikago = Path(pybullet_data.getDataPath()) / "laikago" / "laikago_toes_zup.urdf"
    for args in (
        (str(acme), "--manufacturer", MANUFACTURER, "--out", str(models / "acme_a1")),
        (str(laikago), "--manufacturer", "Unitree", "--model", "laikago", "--out",
         str(models / "laikago"), "--rate-hz", "50"),
    ):  # fmt: skip
        result = twin("robots", "add", *args)
        assert result.returncode == 0, result.stderr
    return models


@pytest.fixture
def scene_file(tmp_path: Path) -> Path:
    path = tmp_path / "hall.yaml"
    path.write_text(SCENE.format(robots=ROBOTS), encoding="utf-8")
    return path


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_new_robots_go_live_and_do_their_task(
    models: Path, scene_file: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    any_port = "tcp://127.0.0.1:*"
    live = Proc("--robots-dir", str(models), "live", str(scene_file),
                "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port)  # fmt: skip
    hall: Proc | None = None
    try:
        match = live.wait_line(r"ingest (\S+) fan-out (\S+) snapshot (\S+)", STARTUP_S)
        endpoints = Endpoints(match.group(1), match.group(2), match.group(3))
        hall = Proc("--robots-dir", str(models), "emulate", str(scene_file),
                    "--ingest", endpoints.ingest, "--no-noise")  # fmt: skip
        hall.wait_line(
            r"LAIKA-1 \(laikago\): squats needs the canonical joints left_hip_pitch, left_knee, "
            r"right_hip_pitch, right_knee, which its package does not map; it idles",
            STARTUP_S,
        )

        def liveness() -> dict[str, str]:
            status = request_status(context, endpoints.snapshot, timeout_s=5.0)
            return {r["robot"]: r["liveness"] for r in status["robots"]}

        wait_for(
            lambda: liveness() == {"ACME-1": "LIVE", "LAIKA-1": "LIVE"},
            timeout_s=STARTUP_S,
            what="both new robots LIVE in twin status",
        )
        status = twin("status", "--snapshot", endpoints.snapshot, "--json")
        assert status.returncode == 0, status.stderr
        assert '"ACME-1"' in status.stdout and '"LIVE"' in status.stdout

        clone = CloneClient(context, endpoints.fanout, endpoints.snapshot)
        try:
            clone.start(timeout_s=5.0)
            acme, laika = clone.robots["ACME-1"], clone.robots["LAIKA-1"]
            assert acme.manufacturer == MANUFACTURER and acme.model == "acme_a1"
            assert "left_knee" in acme.joint_names and "LWP" in acme.joint_names
            assert "FR_lower_leg_2_upper_leg_joint" in laika.joint_names
            knee = acme.joint_names.index("left_knee")
            deepest = 0.0
            deadline = time.monotonic() + 12.0  # a squat takes 4 s, after a 1 s blend-in
            while time.monotonic() < deadline and deepest < 1.0:
                clone.poll(timeout_s=0.1)
                deepest = max(deepest, clone.robots["ACME-1"].positions[knee])
            assert deepest > 1.0, f"ACME-1 never squatted: deepest knee {deepest:.2f} rad"
            laika = clone.robots["LAIKA-1"]
            assert all(math.isfinite(v) for v in laika.positions)
            assert max(abs(v) for v in laika.positions) < 1.0  # idle: stands, does not squat
            assert len(acme.positions) == 27 and len(laika.positions) == 12
        finally:
            clone.close()
    finally:
        if hall is not None:
            hall.stop()
        live.stop()


def test_the_screenshot_draws_the_new_robots_meshes(
    models: Path, scene_file: Path, tmp_path: Path
) -> None:
    with_robots = tmp_path / "with.png"
    result = twin("--robots-dir", str(models), "view", str(scene_file), "--screenshot",
                  str(with_robots), "--size", "640x360")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "b3Warning" not in result.stdout + result.stderr
    empty_scene = tmp_path / "empty.yaml"
    empty_scene.write_text(SCENE.format(robots="  []").replace("robots:\n  []", "robots: []"))
    without = tmp_path / "without.png"
    result = twin("view", str(empty_scene), "--screenshot", str(without), "--size", "640x360")
    assert result.returncode == 0, result.stderr
    a = iio.imread(with_robots).astype(int)
    b = iio.imread(without).astype(int)
    changed = np.abs(a - b).sum(axis=2) > 30
    # both robots are meshes only: whatever differs is their meshes (and their shadows)
    assert changed.sum() > 2000, f"only {changed.sum()} pixels show the new robots"
