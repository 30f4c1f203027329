"""``twin live --foxglove``: the live hall over Foxglove's WebSocket protocol, fed off ingest.

The Foxglove channels a recording has (``/foxglove/scene``, ``foxglove.SceneUpdate``;
``/foxglove/tf``, ``foxglove.FrameTransforms``: :mod:`twin.record.foxglove_channels`) are
served live by foxglove-sdk's WebSocket server, in a process of its own
(:mod:`twin.live.foxglove_worker`), so that its kinematics, its encoding and its clients
never take the mirror's time or its interpreter lock. The mirror's thread does only this
(:class:`FoxgloveFeed`, a :class:`twin.live.intake.FrameSink`):

- per accepted message, one dict store: the newest payload of each topic (older ones are
  dropped, never queued);
- once a display period (:data:`~twin.record.foxglove_channels.DISPLAY_HZ`), the topics that
  changed since are marshalled into one ZeroMQ message and sent without waiting over a PAIR
  channel with a high-water mark of :data:`CHANNEL_HWM` shipments. A send that would block
  (the worker is behind) keeps the newest states for the next period: a slow worker shows
  fewer, newer frames and costs ingest nothing.

The server is read-only: it advertises no capability (no client publish, services,
parameters or connection graph). Each client has a bounded queue of
:data:`BACKLOG_MESSAGES` messages in the SDK: when a slow client's queue is full, the SDK
drops its oldest data message (a control message queue that fills disconnects the client);
other clients and the twin are unaffected. A worker that cannot serve (a port in use) says
why in one line and the twin does not start (``twin live``: exit 2); a worker that dies
later is one line on the log and the twin mirrors on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import zmq

from robots.library import model_entry
from scenes.model import Scene
from sync.addresses import close_quietly
from sync.closing import Closing

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8765
DEFAULT_HOST: Final = "127.0.0.1"
BACKLOG_MESSAGES: Final = 64
"""Messages the SDK queues per client (about a second of both channels at 30 Hz)."""
CHANNEL_HWM: Final = 4  # shipments in flight to the worker; beyond, the newest wait
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 5.0
HEALTH_EVERY_NS: Final = 500_000_000

# channel tags, twin -> worker
INIT: Final = b"init"
STATES: Final = b"states"  # marshal: (stamp_ns, [(topic, payload), ...])
STOP: Final = b"stop"
# worker -> twin
READY: Final = b"ready"  # json: {"host": ..., "port": ...}
FAILED: Final = b"failed"  # utf-8: why, in one line


class FoxgloveServeError(RuntimeError):
    """The Foxglove server cannot be started (said why, in one line)."""


class FoxgloveFeed(Closing):
    """The twin's side of the live Foxglove server: a frame sink of the mirror
    (``mirror.frame_sinks.append(feed)``); all methods but the constructor and
    :meth:`close` run on the mirror's thread."""

    def __init__(
        self,
        scene: Scene,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        display_hz: float,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        """Start the worker and its server on ``host``:``port`` (0: any free port);
        :class:`FoxgloveServeError` if it cannot serve."""
        if not display_hz > 0:
            raise ValueError(f"display_hz must be positive, got {display_hz}")
        self.host = host
        self.port = port
        self.shipped = 0  # shipments sent
        self.deferred = 0  # display periods whose states waited for a busy worker
        self.error: str | None = None
        self._period_ns = round(1e9 / display_hz)
        self._newest: dict[bytes, bytes] = {}
        self._last_ship_ns = 0
        self._last_health_ns = time.monotonic_ns()
        self._running = False
        self._closed = False
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self._folder = tempfile.mkdtemp(prefix="twin-foxglove-")  # 0700: ours alone
        self._channel = self._context.socket(zmq.PAIR)
        self._channel.setsockopt(zmq.LINGER, 0)
        self._channel.setsockopt(zmq.SNDHWM, CHANNEL_HWM)
        self._process: subprocess.Popen[bytes] | None = None
        try:
            endpoint = f"ipc://{self._folder}/channel"
            self._channel.bind(endpoint)
            root = str(Path(__file__).resolve().parent.parent.parent)
            path_env = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "twin.live.foxglove_worker", endpoint, str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=path_env),
            )
            models = {m: str(model_entry(m).root) for m in sorted({r.model for r in scene.robots})}
            init = {
                "scene": scene,
                "model_roots": models,
                "host": host,
                "port": port,
                "display_hz": display_hz,
                "backlog_messages": BACKLOG_MESSAGES,
            }
            self._send(INIT, pickle.dumps(init))
            ready = self._wait_ready()
        except (OSError, zmq.ZMQError) as exc:
            self._stop_worker()
            self._release()
            raise FoxgloveServeError(f"cannot start the Foxglove server process: {exc}") from None
        except BaseException:
            self._stop_worker()
            self._release()
            raise
        self.host = str(ready["host"])
        self.port = int(ready["port"])
        self._running = True

    @property
    def url(self) -> str:
        """What a Foxglove client opens."""
        return f"ws://{self.host}:{self.port}"

    def _send(self, tag: bytes, body: bytes) -> None:
        """A start-up message, once the worker has connected (one that died is an error)."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._channel.poll(100, zmq.POLLOUT):
                self._channel.send_multipart((tag, body), zmq.NOBLOCK)
                return
            if self._process.poll() is not None:
                break
        raise FoxgloveServeError("the Foxglove server process did not start")

    def _wait_ready(self) -> dict[str, Any]:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._channel.poll(100, zmq.POLLIN):
                tag, body = self._channel.recv_multipart()
                if tag == READY:
                    ready: dict[str, Any] = json.loads(body)
                    return ready
                if tag == FAILED:
                    raise FoxgloveServeError(body.decode())
            if self._process.poll() is not None:
                break
        raise FoxgloveServeError("the Foxglove server process did not start")

    # -- the mirror's side ---------------------------------------------------------

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """One accepted message: its payload becomes its topic's newest."""
        self._newest[frames[0]] = frames[2]

    def ship(self, now_mono_ns: int) -> None:
        """Once a display period: the states that changed to the worker, without waiting."""
        if now_mono_ns - self._last_ship_ns < self._period_ns:
            return
        self._last_ship_ns = now_mono_ns
        if now_mono_ns - self._last_health_ns >= HEALTH_EVERY_NS:
            self._last_health_ns = now_mono_ns
            self._check_worker()
        if not self._newest or not self._running:
            return
        body = marshal.dumps((time.time_ns(), list(self._newest.items())))
        try:
            self._channel.send_multipart((STATES, body), zmq.NOBLOCK, copy=False)
        except zmq.Again:  # the worker is behind: these states wait, newer ones replace them
            self.deferred += 1
            return
        self._newest = {}
        self.shipped += 1

    def _check_worker(self) -> None:
        if self._running and self._process is not None:
            code = self._process.poll()
            if code is not None:
                self._running = False
                self.error = f"the Foxglove server process exited unexpectedly (status {code})"
                log.error("%s; the twin mirrors on", self.error)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server and its process."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            with contextlib.suppress(zmq.ZMQError):
                self._channel.send_multipart((STOP, b""), zmq.NOBLOCK)
        self._running = False
        self._stop_worker()
        self._release()

    def _stop_worker(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)

    def _release(self) -> None:
        close_quietly(self._channel)
        if self._owns_context:
            self._context.term()
        shutil.rmtree(self._folder, ignore_errors=True)
