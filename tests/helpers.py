"""Helpers for tests: waiting on conditions, reading a twin's status, child processes."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from sync.fanout import request_status
from twin.mirror import Mirror


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


class Proc:
    """A child process whose stderr is drained by a thread (so it can never block on it)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        """``twin ARGS...``; ``env``: extra environment variables."""
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "twin", *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r}; stderr: {''.join(self.stderr)[-2000:]}")
            if match := re.search(pattern, line):
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"no line matching {pattern!r}; stderr: {''.join(self.stderr)[-2000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            if os.name == "posix":
                self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10.0)
