"""A child ``twin`` process (``python -m twin ARGS``) whose stderr a thread drains into a list.

``twin demo`` runs its twin and emulator this way, and the tests run real ``twin live`` and
``twin emulate`` processes through it: the pipe can never fill and block the child, lines can
be waited for by pattern with a timeout, and :meth:`TwinProcess.stop` terminates, then kills.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Final, TextIO

_PR_SET_PDEATHSIG: Final = 1
STOP_TIMEOUT_S: Final = 10.0


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that asks Linux to SIGTERM the child when its parent dies. ``prctl`` is
    looked up here, in the parent: between fork and exec (other threads may hold locks) the
    child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


class TwinProcess:
    """``python -m twin ARGS``; ``env``: extra environment variables; ``die_with_parent``: the
    child is terminated when this process dies (Linux); ``echo``: a pattern, and the child's
    stderr lines matching it are also written to ``echo_to`` as they come."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
        echo: str | None = None,
        echo_to: TextIO | None = None,
    ) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "twin", *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_death_signal() if die_with_parent else None,
        )
        self.lines: list[str] = []
        self._echo = re.compile(echo) if echo is not None and echo_to is not None else None
        self._echo_to = echo_to
        self._cond = threading.Condition()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            if self._echo is not None and self._echo_to is not None and self._echo.search(line):
                self._echo_to.write(line)
                self._echo_to.flush()
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(
        self, pattern: str, timeout_s: float, start: int = 0
    ) -> tuple[re.Match[str], int] | None:
        """The first stderr line from line ``start`` on that matches, and its index; None when
        none did within ``timeout_s`` or the process ended without one."""
        deadline = time.monotonic() + timeout_s
        seen = start
        with self._cond:
            while True:
                for index in range(seen, len(self.lines)):
                    if match := re.search(pattern, self.lines[index]):
                        return match, index
                seen = max(seen, len(self.lines))
                if self.popen.poll() is not None and not self._drainer.is_alive():
                    return None  # it exited, and every line it wrote has been read
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.2))

    def stop(self) -> None:
        """Terminate (a stopped child is continued first), then kill after STOP_TIMEOUT_S."""
        if self.popen.poll() is None:
            if os.name == "posix":
                self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        self._drainer.join(timeout=STOP_TIMEOUT_S)  # the pipe ends with the process
        if self.popen.stderr is not None:
            self.popen.stderr.close()
