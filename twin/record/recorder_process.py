"""The live twin's recorder: the mirror hands raw frames over, a process of its own records.

``twin live --record`` must not slow ingest, and on a busy twin the recorder's work
(decoding every message into its canonical JSON, packing, compressing: about 20 µs a
message) is as much as the mirror's own. So the mirror's thread does only this: each
accepted message's frames (topic, 32-byte header, payload, as ingest checked them) are put
on a list with their receive time (:meth:`RecorderProcess.frames`, a few hundred ns), and
about every :data:`SHIP_EVERY_NS` (or :data:`SHIP_MESSAGES` messages) the list is marshalled
into one ZeroMQ message and sent, without waiting, to the worker process
(:mod:`twin.record.recorder_worker`), which writes the file with the in-thread
:class:`~twin.record.recorder.Recorder` (:meth:`~twin.record.recorder.Recorder.record_frames`):
the file is the same, byte for byte in its messages, as the in-thread recorder writes.

- Order: events (:meth:`RecorderProcess.event`) and metadata travel in the same list, so
  they keep their place among the messages.
- Never blocking the mirror: the channel is a PAIR socket over ``ipc://`` in a private
  folder; a send that would block, or that would put more than :data:`BACKLOG_MAX_BYTES`
  in flight (what the worker has not yet taken, by its reports), drops the shipment and
  counts its messages (:attr:`RecorderProcess.dropped`, a warning line the first time and
  every :data:`DROP_LOG_EVERY` after); ``twin live`` prints the total at the end.
- The worker runs at the lowest priority (SCHED_IDLE): it gets the CPU time nothing else
  wants, and any other process, the twin first, preempts
  it at once. When the CPUs are short, ingest goes first and the worker catches up from its
  backlog; a machine that never has the time to spare (the worker needs about 20 µs of CPU
  a message) fills the backlog to its bound, and then drops, counted. Told to stop, the
  worker returns to the normal policy to finish the file.
- Errors: the worker says what stopped it (disk full, ...) in one line, which the twin logs
  once; a worker that dies without a word is one line too (its exit status). Either way
  recording stops and the twin mirrors on.
- Durability: the worker flushes about every second (:data:`~twin.record.recorder.FLUSH_EVERY_NS`
  of receive times, and when no message comes); a SIGKILL of the twin loses what the twin
  had not yet shipped (about :data:`SHIP_EVERY_NS`) and, when the worker is behind, what
  still waited in the twin's side of the channel: the worker sees its parent gone, records
  everything it received and closes the file cleanly (a SIGKILL of both loses the
  worker's backlog and its last second). :meth:`RecorderProcess.close` (``twin live``'s
  exit, SIGINT and SIGTERM included) ships the rest and waits for the worker to finish
  the file.
"""

from __future__ import annotations

import json
import logging
import marshal
import pickle
import time
from pathlib import Path
from typing import Any, Final

import zmq

from robots.library import model_entry
from scenes.model import Scene
from sync.closing import Closing
from sync.worker import WorkerProcess
from twin.record.recorder import RecorderError

log = logging.getLogger(__name__)

SHIP_EVERY_NS: Final = 10_000_000
SHIP_MESSAGES: Final = 256
BACKLOG_MAX_BYTES: Final = 512 * 1024 * 1024
"""At most this much shipped and not yet taken by the worker; beyond, shipments are dropped."""
CHANNEL_HWM: Final = 100_000  # shipments; the byte bound above is the one that holds
HEALTH_EVERY_NS: Final = 200_000_000
CLOSE_TIMEOUT_S: Final = 120.0  # the worker may have a backlog to write
DROP_LOG_EVERY: Final = 100
WORKER_NICE: Final = 0

# channel tags, twin -> worker
INIT: Final = b"init"
BATCH: Final = b"batch"
STOP: Final = b"stop"
ACK: Final = b"ack"
# worker -> twin
READY: Final = b"ready"
FAILED: Final = b"failed"
COUNTERS: Final = b"counters"
ERROR: Final = b"error"
DONE: Final = b"done"
# items of a batch
MESSAGES: Final = 0  # (MESSAGES, received_ns, [topic, header, payload, topic, header, ...])
EVENT: Final = 1  # (EVENT, kind, source_id, detail, stamp_ns)
METADATA: Final = 2  # (METADATA, name, {key: value})


class RecorderProcess(Closing):
    """The twin's side of the recorder: a :class:`twin.live.intake.FrameSink` of the mirror
    (``mirror.frame_sinks.append(recorder)``) that ships frames to the worker process.

    All methods run on the mirror's thread.
    """

    def __init__(
        self,
        path: Path,
        scene: Scene,
        scene_text: str,
        *,
        twin_version: str,
        start_ns: int | None = None,
        nice: int = WORKER_NICE,
        idle: bool = True,
        display_hz: float | None = None,
        raw_joints: bool = False,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        """Start the worker, which opens ``path``; :class:`RecorderError` if it cannot.
        ``start_ns``: the recording's time zero (default: when the worker opened the file);
        ``nice``, ``idle``: the worker's priority (a nice increment; SCHED_IDLE);
        ``display_hz``: the worker also writes the Foxglove channels, transforms at this
        rate (:mod:`twin.record.foxglove_channels`; all of it in the worker);
        ``raw_joints``: also the joint states' vendor frames (see
        :class:`~twin.record.recorder.Recorder`)."""
        self.path = Path(path)
        self.start_ns = start_ns  # None: when the worker opens the file (set below)
        self.messages = 0  # recorded, as the worker last reported (all of them after close)
        self.handed = 0  # messages handed over by the mirror
        self.dropped = 0  # messages not recorded: shipments dropped, or recording stopped
        self.failed = 0  # recorded raw only (the worker's count)
        self.error: str | None = None  # why recording stopped, if it did
        self.file_closed_ns: int | None = None  # when close() heard the file was finished
        self._pending: list[tuple[Any, ...]] = []
        self._group: list[bytes] = []  # flat: three frames a message
        self._group_ns = -1
        self._pending_count = 0
        self._last_ship_ns = time.monotonic_ns()
        self._last_health_ns = self._last_ship_ns
        self._shipped_bytes = 0
        self._drops = 0  # shipments dropped
        self._taken_bytes = 0
        self._closed = False
        self._running = False
        self._worker = WorkerProcess(
            "twin.record.recorder_worker",
            [str(nice), *(["--idle"] if idle else [])],
            what=f"the recorder process for {path}",
            fail=RecorderError,
            context=context,
            send_hwm=CHANNEL_HWM,
            receive_hwm=CHANNEL_HWM,
        )
        self._channel = self._worker.channel
        try:
            models = {m: str(model_entry(m).root) for m in sorted({r.model for r in scene.robots})}
            init = {
                "path": str(self.path),
                "scene": scene,
                "scene_text": scene_text,
                "twin_version": twin_version,
                "start_ns": self.start_ns,
                "model_roots": models,
                "display_hz": display_hz,
                "raw_joints": raw_joints,
            }
            self._worker.send_first(INIT, pickle.dumps(init))
            ready = self._worker.wait_for(self._ready)
        except (OSError, zmq.ZMQError) as exc:  # no process, no socket: one line, as a file
            self._stop_worker(timeout_s=2.0)
            raise RecorderError(f"cannot start the recorder process for {path}: {exc}") from None
        except BaseException:
            self._stop_worker(timeout_s=2.0)
            raise
        self.chunk_size_bytes = int(ready["chunk_size_bytes"])
        self.start_ns = int(ready["start_ns"])
        self._running = True

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._worker.pid

    def _ready(self, tag: bytes, body: bytes) -> dict[str, Any] | None:
        """The worker's READY; its FAILED (acknowledged, so it may end) is the error."""
        if tag == READY:
            ready: dict[str, Any] = json.loads(body)
            return ready
        if tag == FAILED:
            self._worker.tell(ACK)
            raise RecorderError(body.decode())
        return None

    # -- the mirror's side: per message, per batch, per tick -----------------------

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """One accepted message (topic, header, payload), received at ``received_ns``."""
        if len(frames) != 3:  # ingest accepts only three: a caller's bug, counted
            self.handed += 1
            self.dropped += 1
            return
        if received_ns != self._group_ns:
            self._group = []
            self._group_ns = received_ns
            self._pending.append((MESSAGES, received_ns, self._group))
        self._group += frames  # flat: three frames a message
        self._pending_count += 1

    def event(self, kind: str, source_id: str, detail: str, stamp_ns: int) -> None:
        """Record an event on ``/events``, in its place among the messages."""
        self._group_ns = -1
        self._pending.append((EVENT, kind, source_id, detail, stamp_ns))

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """One more metadata record."""
        self._group_ns = -1
        self._pending.append((METADATA, name, dict(data)))

    def ship(self, now_mono_ns: int) -> None:
        """Send what is pending if there is enough of it or it waited long enough; now and
        then, read what the worker says and see that it lives."""
        if now_mono_ns - self._last_health_ns >= HEALTH_EVERY_NS:
            self._last_health_ns = now_mono_ns
            self._check_worker()
        if not self._pending:
            return
        if self._pending_count < SHIP_MESSAGES and now_mono_ns - self._last_ship_ns < SHIP_EVERY_NS:
            return
        self._send_pending()
        self._last_ship_ns = now_mono_ns

    def ship_now(self) -> None:
        """Send what is pending now, and read what the worker says."""
        self._check_worker()
        if self._pending:
            self._send_pending()
        self._last_ship_ns = time.monotonic_ns()

    def _send_pending(self) -> None:
        pending, count = self._pending, self._pending_count
        self._pending, self._pending_count, self._group_ns = [], 0, -1
        self.handed += count
        if not self._running:
            self.dropped += count
            return
        body = marshal.dumps(pending)
        if self._shipped_bytes - self._taken_bytes + len(body) > BACKLOG_MAX_BYTES:
            self._drop(count, f"the recorder is more than {BACKLOG_MAX_BYTES >> 20} MiB behind")
            return
        try:
            self._channel.send_multipart((BATCH, body), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._drop(count, "the recorder's channel is full")
            return
        self._shipped_bytes += len(body)

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self._drops += 1
        if self._drops % DROP_LOG_EVERY == 1:
            log.warning("recording: %s; %d messages dropped so far", why, self.dropped)

    def _check_worker(self) -> None:
        """Take the worker's reports; a worker that stopped is one line on the log."""
        self._read_channel()
        if self._running:
            code = self._worker.exit_code()
            if code is not None:
                self._read_channel()  # its last words, if any
                if self._running:
                    self._stopped(f"the recorder process exited unexpectedly ({_exit_text(code)})")

    def _read_channel(self) -> bytes | None:
        """Read every report waiting; returns a DONE report's body if one came."""
        done = None
        while True:
            try:
                tag, body = self._channel.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return done
            except ValueError:  # pragma: no cover - not two frames: not our worker
                continue
            if tag in (COUNTERS, DONE):
                self._counters(json.loads(body))
                done = body if tag == DONE else done
            elif tag == ERROR:
                self._worker.tell(ACK)  # the worker may end at once
                if self._running:
                    self._stopped(body.decode())

    def _counters(self, counters: dict[str, int]) -> None:
        self.messages = counters["messages"]
        self.failed = counters["failed"]
        self._taken_bytes = counters["taken_bytes"]

    def _stopped(self, why: str) -> None:
        self._running = False
        self.error = why
        log.error("recording to %s stopped: %s (the twin mirrors on)", self.path, why)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Ship the rest, let the worker finish the file (summary, footer) and stop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._send_pending()
            if self._running:
                self._finish()
        finally:
            self._stop_worker(timeout_s=2.0)

    def _finish(self) -> None:
        self._worker.tell(STOP)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._channel.poll(100, zmq.POLLIN) and self._read_channel() is not None:
                self.file_closed_ns = time.monotonic_ns()
                self._worker.tell(ACK)
                return
            if not self._running:  # it reported an error
                return
            code = self._worker.exit_code()
            if code is not None:
                self._read_channel()
                if self._running:
                    self._stopped(f"the recorder process exited unexpectedly ({_exit_text(code)})")
                return
        self._stopped(f"the recorder process did not finish the file in {CLOSE_TIMEOUT_S:g} s")

    def _stop_worker(self, *, timeout_s: float) -> None:
        self._worker.stop(timeout_s=timeout_s)
        self._worker.close()


def _exit_text(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit status {code}"
