"""The export's recordings beside the session's: one with the raw joint frames too, and its
copy as the recorder wrote it before the joint-state blocks."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.dataset.copies import legacy_copy
from tests.helpers import STARTUP_S, Proc

ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture(scope="session")
def raw_fall_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``twin live --record --raw`` of the default hall emulated for 8 s, T3-04 falling at
    4 s and T3-01 losing its grip (as ``fall_recording``): joint-state blocks, and every
    joint state's vendor frame beside them."""
    path = tmp_path_factory.mktemp("raw_fall") / "raw_fall.mcap"
    twin = Proc(
        "live", "--record", str(path), "--raw", "--ingest", ANY_PORT, "--fanout", ANY_PORT,
        "--snapshot", ANY_PORT,
    )  # fmt: skip
    hall = None
    try:
        zero_ns = twin.wait_line(r"time zero (\d+) ns", STARTUP_S).group(1)
        ingest = twin.wait_line(r"ingest (\S+) fan-out", STARTUP_S).group(1)
        hall = Proc(
            "emulate", "--ingest", ingest, "--no-noise", "--seconds", "8",
            "--fault", "T3-04:fall@4s", "--fault", "T3-01:lose_grip@1s", "--t0-ns", zero_ns,
        )  # fmt: skip
        assert hall.popen.wait(timeout=STARTUP_S) == 0, "".join(hall.stderr)[-2000:]
        twin.popen.send_signal(signal.SIGTERM)
        twin.popen.wait(timeout=30.0)
        twin.wait_line(r"recorded \d+ messages to", 5.0)
    finally:
        twin.stop()
        if hall is not None:
            hall.stop()
    return path


@pytest.fixture(scope="session")
def legacy_fall_recording(
    raw_fall_recording: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``raw_fall_recording`` as the recorder before the blocks wrote it: a JSON
    ``/joints/<robot>`` message per state beside its raw frame."""
    return legacy_copy(raw_fall_recording, tmp_path_factory.mktemp("legacy") / "legacy_fall.mcap")
