"""Shared fixtures: ZeroMQ contexts that never hang, and a live mirror on random ports."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from scenes import load_scene
from sync.addresses import Endpoints
from tests.helpers import STARTUP_S, Proc, ThreadedMirror

ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture(autouse=True)
def _lessons_of_this_test_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no lessons: what other tests learnt changes no preview."""
    monkeypatch.setenv("HALL_TWIN_LESSONS", str(tmp_path / "lessons.sqlite3"))


@pytest.fixture(scope="session", autouse=True)
def _lessons_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every ``twin live`` the tests start keeps its lessons out of the user's state folder."""
    before = os.environ.get("HALL_TWIN_LESSONS")
    os.environ["HALL_TWIN_LESSONS"] = str(tmp_path_factory.mktemp("lessons") / "lessons.sqlite3")
    yield
    if before is None:
        os.environ.pop("HALL_TWIN_LESSONS", None)
    else:
        os.environ["HALL_TWIN_LESSONS"] = before


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def mirror(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[ThreadedMirror]:
    """The default hall mirrored in a background thread, bound to free ports."""
    twin = ThreadedMirror(load_scene(), Endpoints(ANY_PORT, ANY_PORT, ANY_PORT), context=context)
    twin.start_thread()
    yield twin
    twin.stop_thread()
    twin.close()


def record_hall(path: Path, seconds: float, *faults: str, raw: bool = False) -> Path:
    """``twin live --record PATH`` of the default hall emulated for ``seconds`` with these
    ``--fault`` specs, fault times counted from the recording's start (as ``twin demo``);
    ``raw``: with ``--raw`` (every joint state's vendor frame too)."""
    twin = Proc(
        "live", "--record", str(path), *(["--raw"] if raw else []), "--ingest", ANY_PORT,
        "--fanout", ANY_PORT, "--snapshot", ANY_PORT,
    )  # fmt: skip
    hall = None
    try:
        zero_ns = twin.wait_line(r"time zero (\d+) ns", STARTUP_S).group(1)
        ingest = twin.wait_line(r"ingest (\S+) fan-out", STARTUP_S).group(1)
        fault_args = [arg for fault in faults for arg in ("--fault", fault)]
        hall = Proc(
            "emulate", "--ingest", ingest, "--no-noise", "--seconds", f"{seconds:g}",
            *fault_args, "--t0-ns", zero_ns,
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
def fall_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of the hall: T3-04 falls at 4 s, T3-01 (Tessel, pick_and_place) loses its grip."""
    path = tmp_path_factory.mktemp("fall") / "fall.mcap"
    return record_hall(path, 8.0, "T3-04:fall@4s", "T3-01:lose_grip@1s")


@pytest.fixture(scope="session")
def orca_drop_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of the hall: H2-02 (Orca, pick_and_place too) loses its grip."""
    path = tmp_path_factory.mktemp("orca_drop") / "orca_drop.mcap"
    return record_hall(path, 8.0, "H2-02:lose_grip@1s")
