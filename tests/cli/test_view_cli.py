"""``twin view`` off screen, as a user runs it: a PNG and an MP4 from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin"},  # no DISPLAY: must work without a screen
    )


def test_screenshot_without_a_display(tmp_path: Path) -> None:
    path = tmp_path / "hall.png"
    result = twin("view", "--screenshot", str(path), "--size", "800x450")
    assert result.returncode == 0, result.stderr
    assert f"screenshot: {path}" in result.stdout
    image = iio.imread(path)
    assert image.shape[:2] == (450, 800)
    assert len(np.unique(image[::4, ::4].reshape(-1, image.shape[2]), axis=0)) > 50


def test_video_without_a_display(tmp_path: Path) -> None:
    path = tmp_path / "hall.mp4"
    result = twin("view", "--video", str(path), "--seconds", "1", "--size", "640x360")
    assert result.returncode == 0, result.stderr
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 24 and frames.shape[1:3] == (360, 640)


def test_no_display_and_no_output_asked_is_one_clear_line() -> None:
    result = twin("view")
    assert result.returncode == 1
    assert "no display here: use --screenshot PNG or --video MP4" in result.stderr
    assert "Traceback" not in result.stderr


def test_live_view_of_a_twin_that_is_not_there() -> None:
    result = twin("view", "--connect", "tcp://127.0.0.1:9", "--screenshot", "x.png")
    assert result.returncode == 1
    assert "no twin at tcp://127.0.0.1:10" in result.stderr and "Traceback" not in result.stderr
