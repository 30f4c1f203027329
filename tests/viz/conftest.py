"""Fixtures of the viewer tests: a headless Chromium for the web pages, and a mirror whose
robot MOVING moves all the time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import zmq
from playwright.sync_api import Browser, sync_playwright

from robots import get_model
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import Kind
from tests.helpers import ThreadedMirror
from tests.viz.web_pages import CHROMIUM, CHROMIUM_ARGS

MOVING = "K1-03"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless with software WebGL, for one test module."""
    assert CHROMIUM.exists(), "chromium is missing: scripts/system-deps.sh installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def moving(mirror: ThreadedMirror) -> Iterator[ThreadedMirror]:
    """The mirror, with MOVING's joints sent anew every 20 ms until the test ends."""
    stop = threading.Event()
    model = get_model("kestrel_k1")
    codec = codec_for(model)
    names = model.profile.joint_names
    lower = np.array([model.joint(j).lower for j in names])
    upper = np.array([model.joint(j).upper for j in names])
    zeros = np.zeros(len(names))

    def feed() -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        gateway = Gateway(context, mirror.endpoints.ingest)
        try:
            gateway.wait_for_subscriber(10.0)
            rng = np.random.default_rng(7)
            while not stop.wait(0.02):
                positions = lower + rng.random(len(names)) * (upper - lower)
                gateway.send(Kind.JOINT_STATE, MOVING, codec.encode(positions, zeros, zeros))
        finally:
            gateway.close()
            context.destroy(linger=0)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield mirror
    stop.set()
    feeder.join(timeout=10.0)
