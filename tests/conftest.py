"""Shared fixtures: ZeroMQ contexts that never hang, and a live mirror on random ports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from scenes import load_scene
from sync.addresses import Endpoints
from sync.fanout import request_status
from twin.mirror import Mirror

ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def mirror(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Mirror]:
    """The default hall mirrored in a background thread, bound to free ports."""
    twin = Mirror(load_scene(), Endpoints(ANY_PORT, ANY_PORT, ANY_PORT), context=context)
    stop = threading.Event()
    thread = threading.Thread(target=twin.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    twin.stop_thread = lambda: (stop.set(), thread.join(timeout=10.0))  # type: ignore[attr-defined]
    yield twin
    stop.set()
    thread.join(timeout=10.0)
    assert not thread.is_alive(), "the mirror loop did not stop"
    twin.close()


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
