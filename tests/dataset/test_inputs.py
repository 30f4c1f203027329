"""``twin export lerobot`` on the other kinds of recording (a re-simulation's, a preview's),
and its progress bar, as a terminal shows it."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.dataset.test_export import episodes, frames, recorded
from tests.helpers import ROOT
from twin.dataset.export import Options, export
from twin.emulator.resim import resimulate

FPS = 50.0


def _pooled(out: Path) -> list[dict[str, Any]]:
    return episodes(out / "pooled")


def test_a_resimulation_exports_like_a_live_recording(tmp_path: Path, fall_recording: Path) -> None:
    resim = tmp_path / "resim.mcap"
    resimulate(fall_recording, 1.0, seconds=2.0, output=resim)
    out = tmp_path / "ds"
    summary = export(Options([resim], out, fps=FPS))
    rows = _pooled(out)
    assert len({r["robot_id"] for r in rows}) == 8  # every robot, from re-simulated states
    assert sum(r["length"] for r in rows) == pytest.approx(8 * 2.0 * FPS, rel=0.1)
    assert summary.recorded_s == pytest.approx(8 * 2.0, rel=0.05)  # robot-seconds
    # each frame of K1-01 lies between the re-simulated states around its instant
    table = frames(out / "kestrel_k1")
    source = recorded(resim, "K1-01")
    t = source["t_ns"]
    checked = 0
    for row in (r for r in episodes(out / "kestrel_k1") if r["robot_id"] == "K1-01"):
        first, end = row["dataset_from_index"], row["dataset_to_index"]
        state = np.array(table["observation.state"].to_pylist()[first:end])
        for k in range(0, row["length"], 5):
            at = row["start_ns"] + round(k * 1e9 / FPS)
            right = int(np.searchsorted(t, at, side="right"))
            left, nxt = max(right - 1, 0), min(right, len(t) - 1)
            low = np.minimum(source["position"][left], source["position"][nxt]) - 1e-5
            high = np.maximum(source["position"][left], source["position"][nxt]) + 1e-5
            assert np.all((state[k] >= low) & (state[k] <= high)), k
            checked += 1
    assert checked >= 15


def test_a_preview_recording_exports_its_robot(tmp_path: Path) -> None:
    report = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "twin", "preview", str(ROOT / "scenes/tasks/heavy_lift.yaml"),
         "--json", "--report", str(report)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # passed or not, the recording is written
    preview = json.loads(done.stdout)
    out = tmp_path / "ds"
    # the other robots stand at their stations at 10 Hz: the previewed one is what to export
    export(Options([report / "preview.mcap"], out, fps=FPS, robots=[preview["robot"]]))
    rows = _pooled(out)
    assert {r["robot_id"] for r in rows} == {preview["robot"]}
    assert sum(r["length"] for r in rows) == pytest.approx(preview["simulated_s"] * FPS, rel=0.1)


def test_the_progress_bar_counts_the_recordings_on_a_terminal(
    tmp_path: Path, fall_recording: Path, orca_drop_recording: Path
) -> None:
    """On a terminal (a pseudo-terminal here) the export draws rich's bar, which ends at
    2/2 with the last recording's name; ``--json`` or a pipe draws none."""
    out = tmp_path / "ds"
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "twin", "export", "lerobot", str(fall_recording),
         str(orca_drop_recording), "--out", str(out), "--jobs", "2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 300.0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the export ended
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    text = seen.decode(errors="replace")
    assert "exporting" in text
    assert "2/2" in text and orca_drop_recording.name in text
    assert (out / "pooled" / "meta" / "info.json").is_file()


def test_the_progress_callback_sees_every_recording(
    tmp_path: Path, fall_recording: Path, orca_drop_recording: Path
) -> None:
    calls: list[tuple[int, int, str]] = []
    export(
        Options(
            [fall_recording, orca_drop_recording],
            tmp_path / "ds",
            fps=FPS,
            jobs=2,
            progress=lambda done, total, name: calls.append((done, total, name)),
        )
    )
    assert [(d, t) for d, t, _ in calls] == [(1, 2), (2, 2)]
    assert {name for _, _, name in calls} == {fall_recording.name, orca_drop_recording.name}
