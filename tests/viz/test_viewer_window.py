"""The interactive viewer in a real window (Xvfb): it opens, and a click on a robot selects it.

The test set-up (``make test``) installs Xvfb and xdotool. The viewer logs where each
robot is on screen when it is ready; the test clicks there like a person would and
waits for the viewer to say it selected that robot and opened its joint panel.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

STARTUP_S = 90.0


@pytest.fixture
def display() -> Iterator[str]:
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.fail("Xvfb and xdotool are needed (make test installs them: scripts/system-deps.sh)")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as reader:
            number = reader.readline().strip()  # Xvfb writes its display number when ready
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def test_click_on_a_robot_selects_it_and_opens_its_joint_panel(display: str) -> None:
    env = {**os.environ, "DISPLAY": display}
    viewer = subprocess.Popen(
        [sys.executable, "-m", "twin", "-v", "view", "--size", "1024x640"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def drain() -> None:
        assert viewer.stderr is not None
        for line in viewer.stderr:
            seen.append(line)
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()

    def wait_line(pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if viewer.poll() is not None:
                    break
                continue
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no {pattern!r} from the viewer; it said: {''.join(seen)[-3000:]}")

    try:
        ready = wait_line(r"viewer ready; robots on screen: (.*)$", STARTUP_S)
        places = dict(
            (robot, (int(x), int(y)))
            for robot, x, y in re.findall(r"(\S+)@(-?\d+),(-?\d+)", ready.group(1))
        )
        target = "K1-01"
        x, y = places[target]
        assert 0 < x < 1024 and 0 < y < 640, places
        subprocess.run(
            ["xdotool", "mousemove", "--sync", str(x), str(y), "click", "1"],
            env=env,
            check=True,
            timeout=20,
        )
        selected = wait_line(r"selected (\S+); joint panel shown", 30.0)
        assert selected.group(1) == target
    finally:
        viewer.terminate()
        try:
            viewer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            viewer.kill()
            viewer.wait(timeout=10)
