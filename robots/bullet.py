"""PyBullet, imported and used without its C-level chatter on standard output.

``import pybullet`` prints a build banner on stderr, and the URDF importer printf()s
warnings straight to file descriptor 1. A command that prints JSON on stdout (``twin ...
--json``, the benchmarks) would be corrupted, and a bad-input message would not be the
one clear line it should be, so every module imports PyBullet from here and wraps
loaders in :func:`quiet_stdout`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

_LIBC = ctypes.CDLL(None)


def _flush_stdout() -> None:
    """Flush Python's and C's stdout buffers (best effort)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    _LIBC.fflush(None)  # C stdio buffers what printf() wrote until exit when stdout is a pipe


@contextlib.contextmanager
def quiet_stdout(fds: tuple[int, ...] = (1,)) -> Iterator[None]:
    """Send C-level output on ``fds`` (default: stdout) to /dev/null for the block."""
    _flush_stdout()
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    saved: list[tuple[int, int]] = []
    try:
        for fd in fds:
            with contextlib.suppress(OSError):  # no such descriptor: nothing to silence
                saved.append((fd, os.dup(fd)))
        with Path(os.devnull).open("wb") as devnull:
            for fd, _ in saved:
                os.dup2(devnull.fileno(), fd)
            yield
            _flush_stdout()
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


with quiet_stdout((1, 2)):  # the build banner goes to stderr
    import pybullet

pb = pybullet
"""The pybullet module (import it from here, never directly)."""

__all__ = ["pb", "quiet_stdout"]
