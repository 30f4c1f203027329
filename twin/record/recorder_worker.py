"""The recorder's own process: frames in from the twin, the MCAP file written.

Started by :class:`twin.record.recorder_process.RecorderProcess` as ``python -m
twin.record.recorder_worker ENDPOINT PARENT_PID NICE [--idle]``, it lowers its priority,
connects to the twin's PAIR channel, takes the start-up parameters (path, scene, models),
opens the file with the in-thread :class:`~twin.record.recorder.Recorder` and says
``ready`` (or ``failed`` and why). Then, until told to stop:

- each shipment (a marshalled list of message groups, events and metadata, in order) is
  recorded (:meth:`~twin.record.recorder.Recorder.record_frames`,
  :meth:`~twin.record.recorder.Recorder.event`);
- about every second the file is flushed: every second of the messages' receive times
  (:meth:`~twin.record.recorder.Recorder.record_frames`, so a worker catching up from a
  backlog writes the chunks a recorder keeping up would), and, once caught up, a second
  after the last flush also when nothing more comes (``flush_if_due``);
- every :data:`REPORT_EVERY_NS` its counters go back (messages recorded, bytes taken: the
  twin bounds its backlog with them);
- an error (disk full, ...) is one line back to the twin, and the worker ends (closing
  what it can of the file).

Once told to stop (or when the twin is gone) it returns to the normal scheduling policy,
so the twin's exit does not wait on a busy machine's spare time. SIGINT is ignored (the
twin decides when recording stops; a Ctrl-C reaches the whole process group). On SIGTERM
the worker goes on until the twin says stop or is gone, for at most :data:`TERM_GRACE_S`.
When the twin is gone (SIGKILL), the worker records what it had received and closes the
file cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import marshal
import os
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import zmq

from sync.worker import connect, orphaned
from twin.record.recorder_process import (
    ACK,
    BATCH,
    CHANNEL_HWM,
    COUNTERS,
    DONE,
    ERROR,
    EVENT,
    FAILED,
    INIT,
    MESSAGES,
    METADATA,
    READY,
    STOP,
)

log = logging.getLogger(__name__)

POLL_MS: Final = 100
REPORT_EVERY_NS: Final = 100_000_000
TERM_GRACE_S: Final = 10.0
ACK_TIMEOUT_MS: Final = 2000
INIT_TIMEOUT_MS: Final = 30_000


class _Worker:
    """The worker's state: the channel, the recorder, its counters."""

    def __init__(self, channel: zmq.Socket[bytes], parent_pid: int) -> None:
        from twin.record.recorder import Recorder

        self.channel = channel
        self.parent_pid = parent_pid
        self.recorder: Recorder | None = None
        self.taken_bytes = 0
        self.reported_ns = 0
        self.term_deadline: float | None = None

    def start(self, init: dict[str, Any]) -> None:
        """Open the file; RecorderError (or any error) if it cannot be."""
        from robots.library import add_model_dirs
        from twin.record.recorder import Recorder

        add_model_dirs([Path(p) for p in init["model_roots"].values()], "the twin's models")
        self.recorder = Recorder(
            Path(init["path"]),
            init["scene"],
            init["scene_text"],
            twin_version=init["twin_version"],
            start_ns=init["start_ns"],
            display_hz=init["display_hz"],
            raw_joints=init.get("raw_joints", False),
        )

    def take(self, body: bytes) -> None:
        """Record one shipment."""
        recorder = self.recorder
        assert recorder is not None
        self.taken_bytes += len(body)
        for item in marshal.loads(body):
            tag = item[0]
            if tag == MESSAGES:
                recorder.record_frames(item[1], item[2])
            elif tag == EVENT:
                recorder.event(item[1], item[2], item[3], item[4])
            elif tag == METADATA:
                recorder.add_metadata(item[1], item[2])

    def counters(self) -> bytes:
        recorder = self.recorder
        return json.dumps(
            {
                "messages": recorder.messages if recorder is not None else 0,
                "failed": recorder.failed if recorder is not None else 0,
                "taken_bytes": self.taken_bytes,
            }
        ).encode()

    def tell(self, tag: bytes, body: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):  # the twin is gone or not reading
            self.channel.send_multipart((tag, body), zmq.NOBLOCK)

    def parent_alive(self) -> bool:
        return not orphaned(self.parent_pid)

    def run(self) -> bool:
        """Record until told to stop (True) or the twin is gone (False)."""
        recorder = self.recorder
        assert recorder is not None
        channel = self.channel
        while True:
            caught_up = True
            if channel.poll(POLL_MS, zmq.POLLIN):
                caught_up = False
                for _ in range(64):  # then look at the clock and the parent again
                    try:
                        tag, body = channel.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        caught_up = True
                        break
                    if tag == BATCH:
                        self.take(body)
                    elif tag == STOP:
                        _normal_priority()  # the twin waits for the file: finish it now
                        return True
            now_ns = time.monotonic_ns()
            if caught_up:  # behind, record_frames flushes by the messages' receive times
                recorder.flush_if_due(now_ns)
            if now_ns - self.reported_ns >= REPORT_EVERY_NS:
                self.reported_ns = now_ns
                self.tell(COUNTERS, self.counters())
            if not self.parent_alive():
                _normal_priority()
                self.drain()
                return False
            if self.term_deadline is not None and time.monotonic() > self.term_deadline:
                return False

    def drain(self) -> None:
        """The twin is gone: record what already came."""
        while True:
            try:
                tag, body = self.channel.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if tag == BATCH:
                self.take(body)

    def wait_ack(self) -> None:
        """After ``done``: the twin acknowledges (so the report is not lost at close)."""
        deadline = time.monotonic() + ACK_TIMEOUT_MS / 1000
        while time.monotonic() < deadline and self.parent_alive():
            if self.channel.poll(POLL_MS, zmq.POLLIN):
                try:
                    tag, _ = self.channel.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                if tag == ACK:
                    return


_M_TRIM_THRESHOLD: Final = -1  # glibc's mallopt parameters
_M_TOP_PAD: Final = -2
_M_MMAP_THRESHOLD: Final = -3
HEAP_KEEP_BYTES: Final = 256 * 1024 * 1024


def _keep_freed_memory() -> None:
    """glibc maps every allocation over 128 KiB afresh and unmaps it when freed; a block's
    numpy temporaries (a MiB or so each, a dozen a block) then cost a page fault per 4 KiB
    every time, about half the work of making a block. Allocations up to 32 MiB come from
    the heap instead, and up to :data:`HEAP_KEEP_BYTES` of freed heap is kept for the next
    block. Elsewhere than glibc, nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP_BYTES)
    mallopt(_M_TOP_PAD, 16 * 1024 * 1024)


def _lower_priority(nice: int, *, idle: bool) -> None:
    """Run after everything else: ``nice``, and SCHED_IDLE when ``idle`` (the CPU time no
    other process wants; any of them preempts the worker at once). Where not allowed, the
    worker runs at the twin's priority."""
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _normal_priority() -> None:
    """Back to the normal policy (allowed from SCHED_IDLE within RLIMIT_NICE), so that
    the rest is written and the file closed on a busy machine too."""
    if hasattr(os, "SCHED_OTHER"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def serve(endpoint: str, parent_pid: int, nice: int, *, idle: bool = False) -> int:
    """The worker's life; 0 when the file was finished, 1 on an error, 2 without start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the twin decides when to stop
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file size limit: an error line, not death
    _lower_priority(nice, idle=idle)
    _keep_freed_memory()
    context, channel = connect(endpoint, receive_hwm=CHANNEL_HWM)
    worker = _Worker(channel, parent_pid)

    def on_term(signum: int, frame: FrameType | None) -> None:
        worker.term_deadline = time.monotonic() + TERM_GRACE_S

    signal.signal(signal.SIGTERM, on_term)
    try:
        if not channel.poll(INIT_TIMEOUT_MS, zmq.POLLIN):
            return 2
        tag, body = channel.recv_multipart()
        if tag != INIT:
            return 2
        try:
            worker.start(pickle.loads(body))
        except Exception as exc:  # its one line goes back to the twin
            worker.tell(FAILED, str(exc).encode())
            worker.wait_ack()
            return 2
        assert worker.recorder is not None
        ready = {
            "chunk_size_bytes": worker.recorder.chunk_size_bytes,
            "start_ns": worker.recorder.start_ns,
        }
        worker.tell(READY, json.dumps(ready).encode())
        return _record(worker)
    finally:
        context.destroy(linger=0)


def _record(worker: _Worker) -> int:
    recorder = worker.recorder
    assert recorder is not None
    try:
        stopped = worker.run()
        recorder.close()
    except Exception as exc:  # disk full, ...: one line to the twin, then end
        try:
            recorder.close()
        except Exception:  # the file stays as far as it got
            log.debug("closing after an error failed too", exc_info=True)
        worker.tell(ERROR, f"{exc} ({recorder.messages} messages recorded)".encode())
        worker.wait_ack()
        return 1
    worker.tell(DONE, worker.counters())
    if stopped:
        worker.wait_ack()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m twin.record.recorder_worker ENDPOINT PARENT_PID NICE [--idle]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("parent_pid", type=int)
    parser.add_argument("nice", type=int)
    parser.add_argument("--idle", action="store_true", help="SCHED_IDLE")
    args = parser.parse_args(argv)
    return serve(args.endpoint, args.parent_pid, args.nice, idle=args.idle)


if __name__ == "__main__":
    sys.exit(main())
