"""Sharded ingest (``twin live --workers N``): N worker processes share the ingest port.

The one-process twin receives, checks and accounts for every message on its own thread,
which on this project's 2-core machine carries 100 robots x 500 Hz with little to spare
(``docs/scaling.md``). With ``--workers N`` the twin instead starts N
:mod:`twin.live.shard_worker` processes that all bind the ingest endpoint the gateways
know (``SO_REUSEPORT``: :mod:`sync.shared_port`); the kernel hands each new gateway
connection to one of them. Each runs the twin's own ingest rules over its connections and
sends the twin a digest every few milliseconds (:mod:`twin.live.shard_digest`), which the
twin's thread applies to its links (:meth:`twin.live.intake.Intake.take_digests`): a few
operations per robot per digest instead of a few per message.

What changes with workers (said in ``docs/protocol.md`` and ``docs/scaling.md``):

- the spread is per connection: one gateway speaking for many robots lands on one worker,
  so the load spreads when there are at least as many gateway connections as workers;
- sequences and epochs are still judged once, by the twin (:mod:`twin.live.shard_merge`
  replays each worker's runs of accepted messages through the twin's own trackers), so the
  counters and events are a one-process twin's;
- a state reaches the twin up to a digest period later (2-4 ms); the sinks that see every
  message (the dispatch gate's arrival times) see each robot's newest state per digest; the
  recorder still gets every frame the twin accepted, in order per connection.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Final

import msgspec
import zmq

from robots.library import model_entry
from scenes.model import Scene
from sync.shared_port import reserve
from sync.worker import WorkerProcess
from twin.live.shard_digest import Digest, load
from twin.live.shard_worker import CONFIG, DIGEST, FAILED, INIT, READY, STOP

log = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 5.0
CHANNEL_HWM: Final = 64


class ShardError(RuntimeError):
    """The workers could not start (said why, in one line)."""


class IngestShards:
    """The twin's side of N ingest workers: start them, take their digests, stop them."""

    def __init__(
        self,
        scene: Scene,
        endpoint: str,
        workers: int,
        *,
        keys: Path | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        if workers < 2:
            raise ShardError(f"--workers {workers}: sharded ingest needs at least 2 workers")
        try:
            held, self.endpoint = reserve(endpoint)
        except OSError as exc:
            raise ShardError(str(exc)) from None
        self.processes: list[WorkerProcess] = []
        self.digests = 0
        self.frames_dropped = 0
        self.accepted_by_worker = [0] * workers
        self.bad_digests = 0
        self._next = 0
        self._told_exit: set[int] = set()
        try:
            for index in range(workers):
                self.processes.append(
                    WorkerProcess(
                        "twin.live.shard_worker",
                        what=f"ingest worker {index}",
                        fail=ShardError,
                        context=context,
                        receive_hwm=CHANNEL_HWM,
                    )
                )
            init = {
                "scene": scene,
                "endpoint": self.endpoint,
                "keys": str(keys) if keys is not None else None,
                "model_roots": {
                    m: str(model_entry(m).root) for m in sorted({r.model for r in scene.robots})
                },
            }
            for index, process in enumerate(self.processes):
                process.send_first(INIT, pickle.dumps({**init, "worker": index}))
            for process in self.processes:
                process.wait_for(self._ready)
        except BaseException:
            self.close()
            raise
        finally:
            held.close()  # the workers listen on the port now (or never will)

    @staticmethod
    def _ready(tag: bytes, body: bytes) -> bool | None:
        if tag == READY:
            return True
        if tag == FAILED:
            raise ShardError(body.decode())
        return None

    @property
    def channels(self) -> list[zmq.Socket[bytes]]:
        """The workers' channels (the mirror polls them where it polled the ingest socket)."""
        return [p.channel for p in self.processes]

    def configure(self, *, frames: bool) -> None:
        """Tell the workers whether to send the accepted frames (the twin records)."""
        body = json.dumps({"frames": frames}).encode()
        for process in self.processes:
            process.tell(CONFIG, body)

    def take(self, limit: int) -> list[Digest]:
        """The digests waiting, at most ``limit`` (never waits); a worker that ended is one
        line on the log."""
        found: list[Digest] = []
        count = len(self.processes)
        self._next = (self._next + 1) % max(1, count)  # round robin: no worker starves
        for turn in range(count):
            process_index = (self._next + turn) % count
            channel = self.processes[process_index].channel
            while len(found) < limit:
                try:
                    tag, body = channel.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if tag == DIGEST:
                    try:
                        digest = load(body)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        self.bad_digests += 1  # a bug of ours: never the twin's end
                        log.warning("ingest worker %d: a digest that does not decode: %s",
                                    process_index, exc)  # fmt: skip
                        continue
                    self.frames_dropped += digest.frames_dropped
                    self.accepted_by_worker[digest.worker] += digest.accepted
                    found.append(digest)
        self.digests += len(found)
        return found

    def check(self) -> list[str]:
        """Lines for the workers that ended unexpectedly (each said once)."""
        lines = []
        for index, process in enumerate(self.processes):
            code = process.exit_code()
            if code is not None and index not in self._told_exit:
                self._told_exit.add(index)
                lines.append(
                    f"ingest worker {index} exited ({code}); its gateways reconnect to the others"
                )
        return lines

    def status(self) -> dict[str, Any]:
        """The workers' part of ``twin status``."""
        return {
            "workers": len(self.processes),
            "alive": sum(1 for p in self.processes if p.exit_code() is None),
            "digests": self.digests,
            "accepted_by_worker": list(self.accepted_by_worker),
            "frames_dropped": self.frames_dropped,
            "bad_digests": self.bad_digests,
        }

    def cpu_s(self) -> float:
        """The workers' CPU time so far (user + system, from /proc; 0 where unreadable)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def close(self) -> None:
        """Stop the workers (they send a last digest, not taken) and release their channels."""
        for process in self.processes:
            process.tell(STOP)
        for process in self.processes:
            process.stop(timeout_s=STOP_TIMEOUT_S, terminate=True)
            process.close()
        self.processes = []
