"""Shared fixtures: ZeroMQ contexts that never hang, and a live mirror on random ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from scenes import load_scene
from sync.addresses import Endpoints
from tests.helpers import ThreadedMirror

ANY_PORT = "tcp://127.0.0.1:*"


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
