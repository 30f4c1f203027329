"""Helpers for tests: waiting on conditions, reading a twin's status, child processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from sync.fanout import request_status
from twin.cli.child import TwinProcess
from twin.live.mirror import Mirror


class ThreadedMirror(Mirror):
    """A mirror whose loop runs in a background thread (tests read it over its sockets)."""

    def start_thread(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, kwargs={"stop": self._stop}, daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        """Stop the loop; afterwards the world may be read directly (no other thread)."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        assert not self._thread.is_alive(), "the mirror loop did not stop"


def wait_for(
    condition: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.005, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(interval_s)


def status_of(context: zmq.Context[zmq.Socket[bytes]], twin: Mirror) -> dict[str, Any]:
    return request_status(context, twin.endpoints.snapshot, timeout_s=2.0)


def robot_row(status: dict[str, Any], robot_id: str) -> dict[str, Any]:
    return next(r for r in status["robots"] if r["robot"] == robot_id)


class Proc(TwinProcess):
    """A ``twin`` child process for tests: :meth:`wait_line` reads its stderr lines in order
    (each wait starts after the line the previous one matched) and fails the test on timeout."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(*args, env=env)
        self._cursor = 0

    @property
    def stderr(self) -> list[str]:
        return self.lines

    def wait_line(self, pattern: str, timeout_s: float) -> re.Match[str]:
        found = self.wait_for(pattern, timeout_s, start=self._cursor)
        if found is None:
            pytest.fail(f"no line matching {pattern!r}; stderr: {''.join(self.lines)[-2000:]}")
        match, index = found
        self._cursor = index + 1
        return match


ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 60.0  # building two worlds on a loaded 2-core machine


def run_replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``twin replay ARGS`` in a child with no display (off-screen rendering), from ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "twin", "replay", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
