"""``twin live --foxglove``: the live hall over Foxglove's WebSocket protocol, fed off ingest.

The Foxglove channels a recording has (``/foxglove/scene``, ``foxglove.SceneUpdate``;
``/foxglove/tf``, ``foxglove.FrameTransforms``; ``/foxglove/joints/<robot>``,
``foxglove.JointStates``; ``/foxglove/log``, ``foxglove.Log``:
:mod:`twin.record.foxglove_channels`) are served live by foxglove-sdk's WebSocket server,
in a process of its own (:mod:`twin.live.foxglove_worker`), so that its kinematics, its
encoding and its clients never take the mirror's time or its interpreter lock. The
mirror's thread does only this (:class:`FoxgloveFeed`, a
:class:`twin.live.intake.FrameSink` and an event sink):

- per accepted message, one dict store: the newest payload of each topic (older ones are
  dropped, never queued);
- per event of the mirror's (:meth:`FoxgloveFeed.event`), one list append;
- once a display period (:data:`~twin.record.foxglove_channels.DISPLAY_HZ`), the topics
  that changed since, and the events, are marshalled into one ZeroMQ message and sent
  without waiting over a PAIR channel with a high-water mark of :data:`CHANNEL_HWM`
  shipments. A send that would block (the worker is behind) keeps the newest states for
  the next period: a slow worker shows fewer, newer frames and costs ingest nothing.

The server is read-only: it advertises no capability (no client publish, services,
parameters or connection graph). Each client has a bounded queue of
:data:`BACKLOG_MESSAGES` messages in the SDK: when a slow client's queue is full, the SDK
drops its oldest data message (a control message queue that fills disconnects the client);
other clients and the twin are unaffected. A worker that cannot serve (a port in use) says
why in one line and the twin does not start (``twin live``: exit 2); a worker that dies
later is one line on the log and the twin mirrors on.
"""

from __future__ import annotations

import json
import logging
import marshal
import pickle
import time
from collections import deque
from typing import Any, Final

import zmq

from robots.library import model_entry
from scenes.model import Scene
from sync.closing import Closing
from sync.fanout import Event
from sync.worker import WorkerProcess

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8765
DEFAULT_HOST: Final = "127.0.0.1"
BACKLOG_MESSAGES: Final = 64
"""Messages the SDK queues per client (about a second of both channels at 30 Hz)."""
EVENTS_KEPT: Final = 1000  # events waiting for a busy worker; beyond, the oldest go
CHANNEL_HWM: Final = 4  # shipments in flight to the worker; beyond, the newest wait
STOP_TIMEOUT_S: Final = 5.0
HEALTH_EVERY_NS: Final = 500_000_000

# channel tags, twin -> worker
INIT: Final = b"init"
STATES: Final = b"states"  # marshal: (stamp_ns, [(topic, payload), ...], [event, ...])
STOP: Final = b"stop"
# worker -> twin
READY: Final = b"ready"  # json: {"host": ..., "port": ...}
FAILED: Final = b"failed"  # utf-8: why, in one line


class FoxgloveServeError(RuntimeError):
    """The Foxglove server cannot be started (said why, in one line)."""


class FoxgloveFeed(Closing):
    """The twin's side of the live Foxglove server: a frame sink of the mirror
    (``mirror.frame_sinks.append(feed)``) and an event sink
    (``mirror.event_sinks.append(feed.event)``); all methods but the constructor and
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
        # (stamp_ns, kind, source, detail), the newest EVENTS_KEPT
        self._events: deque[tuple[int, str, str, str]] = deque(maxlen=EVENTS_KEPT)
        self.events_dropped = 0  # events not shipped: more than EVENTS_KEPT waited
        self._last_ship_ns = 0
        self._last_health_ns = time.monotonic_ns()
        self._running = False
        self._closed = False
        self._worker = WorkerProcess(
            "twin.live.foxglove_worker",
            what="the Foxglove server process",
            fail=FoxgloveServeError,
            context=context,
            send_hwm=CHANNEL_HWM,
        )
        self._channel = self._worker.channel
        try:
            models = {m: str(model_entry(m).root) for m in sorted({r.model for r in scene.robots})}
            init = {
                "scene": scene,
                "model_roots": models,
                "host": host,
                "port": port,
                "display_hz": display_hz,
                "backlog_messages": BACKLOG_MESSAGES,
            }
            self._worker.send_first(INIT, pickle.dumps(init))
            ready = self._worker.wait_for(_ready)
        except (OSError, zmq.ZMQError) as exc:
            self._stop_worker()
            raise FoxgloveServeError(f"cannot start the Foxglove server process: {exc}") from None
        except BaseException:
            self._stop_worker()
            raise
        self.host = str(ready["host"])
        self.port = int(ready["port"])
        self._running = True

    @property
    def url(self) -> str:
        """What a Foxglove client opens."""
        return f"ws://{self.host}:{self.port}"

    # -- the mirror's side ---------------------------------------------------------

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """One accepted message: its payload becomes its topic's newest."""
        self._newest[frames[0]] = frames[2]

    def event(self, event: Event) -> None:
        """One of the mirror's events (an event sink): a log line at the next shipment (the
        newest :data:`EVENTS_KEPT` wait for a busy worker; older ones are counted)."""
        if len(self._events) == EVENTS_KEPT:
            self.events_dropped += 1  # the append drops the oldest
        self._events.append((event.stamp_ns, event.kind, event.source_id, event.detail))

    def ship(self, now_mono_ns: int) -> None:
        """Once a display period: the states that changed, and the events, to the worker,
        without waiting."""
        if now_mono_ns - self._last_ship_ns < self._period_ns:
            return
        self._last_ship_ns = now_mono_ns
        if now_mono_ns - self._last_health_ns >= HEALTH_EVERY_NS:
            self._last_health_ns = now_mono_ns
            self._check_worker()
        if not (self._newest or self._events) or not self._running:
            return
        body = marshal.dumps((time.time_ns(), list(self._newest.items()), list(self._events)))
        try:
            self._channel.send_multipart((STATES, body), zmq.NOBLOCK, copy=False)
        except zmq.Again:  # the worker is behind: these states wait, newer ones replace them
            self.deferred += 1
            return
        self._newest = {}
        self._events.clear()
        self.shipped += 1

    def _check_worker(self) -> None:
        if self._running:
            code = self._worker.exit_code()
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
            self._worker.tell(STOP)
        self._running = False
        self._stop_worker()

    def _stop_worker(self) -> None:
        self._worker.stop(timeout_s=STOP_TIMEOUT_S, terminate=True)
        self._worker.close()


def _ready(tag: bytes, body: bytes) -> dict[str, Any] | None:
    """The worker's READY (its host and port); its FAILED is the error."""
    if tag == READY:
        ready: dict[str, Any] = json.loads(body)
        return ready
    if tag == FAILED:
        raise FoxgloveServeError(body.decode())
    return None
