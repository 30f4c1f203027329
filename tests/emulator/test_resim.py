"""`twin resim`: a small emulated recording re-simulated from t=1 s, checked against itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenes import DEFAULT_SCENE, parse_scene
from twin.emulator import resim
from twin.emulator.physics import EmulatedHall
from twin.record.recorder import Recorder
from twin.record.recording import open_recording
from twin.record.replay_source import ReplaySource

T0_NS = 1_700_000_000_000_000_000
KEEP = ("K1-01", "T3-02", "H2-01")


def small_scene_text() -> str:
    lines = DEFAULT_SCENE.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(
        line
        for line in lines
        if not (
            line.startswith("  - {id: ") and "model:" in line and not any(k in line for k in KEEP)
        )
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of a three-robot hall, recorded from its start (task time = recording time)."""
    text = small_scene_text()
    scene = parse_scene(text, "scene.yaml")
    path = tmp_path_factory.mktemp("resim") / "hall.mcap"
    with EmulatedHall(scene, seed=3) as hall, Recorder(path, scene, text, twin_version="t") as rec:
        resim._run(hall, rec, 3.0, T0_NS, 3)
    return path


def payloads(path: Path) -> list[tuple[str, int, bytes]]:
    recording = open_recording(path)
    return [
        (m.topic, m.log_time_ns, bytes(m.data))
        for m in recording.iter_messages()
        if m.topic != "/events"
    ]


def test_resim_starts_at_the_recorded_state_on_the_original_clock(
    source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a.mcap"
    result = resim.resimulate(source, 1.0, seconds=2.0, output=out)
    assert result.path == out and result.messages > 0
    recording = open_recording(out)
    assert recording.metadata["resim"]["at_s"] == "1"
    topics = {m.topic for m in recording.iter_messages()}
    for robot_id in KEEP:
        assert f"/joints/{robot_id}" in topics and f"/base/{robot_id}" in topics
        assert f"/foxglove/joints/{robot_id}" in topics
    # the Foxglove channels too: the hall, and its transforms at 30 Hz of the 2 s
    counts = recording.summary()["message_counts"]
    assert counts["/foxglove/scene"] >= 1 and 50 <= counts["/foxglove/tf"] <= 62, counts
    original, again = ReplaySource(open_recording(source)), ReplaySource(recording)
    assert again.start_ns == original.start_ns + 1_000_000_000
    assert again.duration_s == pytest.approx(2.0, abs=0.02)
    original.seek(1.0)
    again.seek(0.0)
    for robot_id in KEEP:
        was, now = original.robots[robot_id], again.robots[robot_id]
        assert now.joint_names == was.joint_names
        assert np.max(np.abs(np.subtract(now.positions, was.positions))) < 1e-3
        assert np.max(np.abs(np.subtract(now.base_position_m, was.base_position_m))) < 0.01


def test_same_seed_same_output_and_friction_changes_it(source: Path, tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.mcap" for n in "abc")
    resim.resimulate(source, 1.0, seconds=1.0, output=a, seed=5)
    resim.resimulate(source, 1.0, seconds=1.0, output=b, seed=5)
    resim.resimulate(source, 1.0, seconds=1.0, output=c, seed=5, overrides={"friction": 0.1})
    first, second, slippery = payloads(a), payloads(b), payloads(c)
    assert first == second
    assert [(t, n) for t, n, _ in first] == [(t, n) for t, n, _ in slippery]
    assert first != slippery


def test_bad_overrides_are_one_line_errors() -> None:
    assert resim.parse_overrides(["friction=0.9", "mass_scale=1.1"]) == {
        "friction": 0.9,
        "mass_scale": 1.1,
    }
    for bad in ("gravity=1", "friction", "friction=abc", "mass_scale=-1", "friction=nan"):
        with pytest.raises(resim.ResimInputError):
            resim.parse_overrides([bad])


def test_cli_writes_the_default_path_and_rejects_a_bad_set(source: Path) -> None:
    twin = [sys.executable, "-m", "twin"]
    done = subprocess.run(
        [*twin, "resim", str(source), "--at", "1", "--seconds", "0.5", "--set", "mass_scale=1.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = source.with_name("hall-resim-1s.mcap")
    assert expected.exists() and str(expected) in done.stdout
    assert "x real time" in done.stdout
    bad = subprocess.run(
        [*twin, "resim", str(source), "--at", "1", "--set", "wind=3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "wind=3" in bad.stderr
