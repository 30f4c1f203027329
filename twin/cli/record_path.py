"""Where a bare ``--record`` writes: ``recordings/<UTC time>.mcap`` (e.g. ``20261125T011500Z``).

``twin live --record`` and ``twin demo --record`` take an optional value. Typer's
parser has no option whose value may be left out, so :func:`expand_bare_record`
rewrites the command line before typer sees it, with click's rule for optional values:
a ``--record`` that is the last word, or is followed by another option (a word that
starts with ``-``), becomes ``--record=recordings/<UTC time>.mcap``; ``--record PATH``
and ``--record=PATH`` are left alone. So a bare ``--record`` goes after the scene
argument (``twin live my_hall.yaml --record``): ``twin live --record my_hall.yaml``
names the file to write, and the recorder refuses to overwrite a file that is not an
MCAP recording.

``twin live --foxglove [PORT]`` likewise (:func:`expand_bare_foxglove`): a ``--foxglove``
not followed by a port number becomes ``--foxglove=8765``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

RECORDINGS_DIR: Final = Path("recordings")
COMMANDS_WITH_OPTIONAL_RECORD: Final = frozenset({"live", "demo"})
GLOBAL_FLAGS: Final = frozenset({"-v", "--verbose"})
FOXGLOVE_DEFAULT_PORT: Final = 8765
"""Foxglove's own default WebSocket port (what its *Open connection* dialog proposes)."""


def default_recording_path(now_ns: int | None = None, folder: Path = RECORDINGS_DIR) -> Path:
    """``folder/<UTC time>.mcap`` for ``now_ns`` (default: now); ``-2``, ``-3``... are
    appended when a recording of that second already exists there."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    stamp = datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}.mcap"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.mcap"
    return path


def expand_bare_record(argv: Sequence[str], now_ns: int | None = None) -> list[str]:
    """``argv`` (without the program name) with a bare ``--record`` of ``twin live`` or
    ``twin demo`` given its default path; any other command line is returned unchanged."""
    args = list(argv)
    command_at = next((i for i, a in enumerate(args) if a not in GLOBAL_FLAGS), None)
    if command_at is None or args[command_at] not in COMMANDS_WITH_OPTIONAL_RECORD:
        return args
    for i in range(command_at + 1, len(args)):
        if args[i] == "--":  # the end of options: what follows is positional
            break
        if args[i] != "--record":
            continue
        following = args[i + 1] if i + 1 < len(args) else None
        if following is None or (following.startswith("-") and len(following) > 1):
            args[i] = f"--record={default_recording_path(now_ns)}"
    return args


def expand_bare_foxglove(argv: Sequence[str]) -> list[str]:
    """``argv`` with a ``twin live --foxglove`` not followed by a port number given
    :data:`FOXGLOVE_DEFAULT_PORT`; any other command line is returned unchanged."""
    args = list(argv)
    command_at = next((i for i, a in enumerate(args) if a not in GLOBAL_FLAGS), None)
    if command_at is None or args[command_at] != "live":
        return args
    for i in range(command_at + 1, len(args)):
        if args[i] == "--":
            break
        if args[i] != "--foxglove":
            continue
        following = args[i + 1] if i + 1 < len(args) else None
        if following is None or not following.isdigit():
            args[i] = f"--foxglove={FOXGLOVE_DEFAULT_PORT}"
    return args
