"""A helper process of the twin's, on a private channel: start it, greet it, wait for its
word, and stop it.

The twin hands work it must never wait for to child processes: the recorder
(:mod:`twin.record.recorder_process`), the live Foxglove server
(:mod:`twin.live.foxglove_feed`) and the snapshot/status server (:mod:`sync.replies`). Each
is ``python -m MODULE CHANNEL PARENT_PID [ARGS...]``, talking to the twin over a ZeroMQ PAIR
socket on ``ipc://`` in a folder of the twin's own (mode 0700: no other user can connect to
it, which a TCP port on 127.0.0.1 would allow), and each stops by itself when the twin's
process is gone (:func:`orphaned`). :class:`WorkerProcess` is the twin's side of all of
them; what they say to each other (tags and bodies) is each module's own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import zmq

from sync.addresses import close_quietly
from sync.closing import Closing

START_TIMEOUT_S: Final = 60.0
"""How long a worker may take to connect and answer (a loaded machine imports slowly)."""
_POLL_MS: Final = 100
_ROOT: Final = str(Path(__file__).resolve().parent.parent)

T = TypeVar("T")


class WorkerProcess(Closing):
    """``python -m module CHANNEL PARENT_PID *args`` with a PAIR channel to it.

    ``fail`` makes the exception raised when the worker does not start (its message says
    what did not start: ``what``). The channel (:attr:`channel`) is the caller's to use once
    the worker runs; all methods run on one thread.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        what: str,
        fail: Callable[[str], Exception],
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        send_hwm: int | None = None,
        receive_hwm: int | None = None,
    ) -> None:
        self.what = what
        self._fail = fail
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self._folder = tempfile.mkdtemp(prefix="twin-worker-")  # 0700: ours alone
        self.channel = self._context.socket(zmq.PAIR)
        self.channel.setsockopt(zmq.LINGER, 0)
        if send_hwm is not None:
            self.channel.setsockopt(zmq.SNDHWM, send_hwm)
        if receive_hwm is not None:
            self.channel.setsockopt(zmq.RCVHWM, receive_hwm)
        self.process: subprocess.Popen[bytes] | None = None
        try:
            endpoint = f"ipc://{self._folder}/channel"
            self.channel.bind(endpoint)
            path_env = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, endpoint, str(os.getpid()), *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=path_env),
            )  # fmt: skip
        except (OSError, zmq.ZMQError) as exc:  # no process, no socket: one line
            self._release()
            raise fail(f"cannot start {what}: {exc}") from None
        except BaseException:
            self._release()
            raise

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self.process.pid if self.process is not None else None

    def exit_code(self) -> int | None:
        """The worker's exit status once it has ended, else None."""
        return self.process.poll() if self.process is not None else None

    def send_first(self, tag: bytes, body: bytes, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """The first message, sent once the worker has connected (one that died first, or
        never connected, is the ``fail`` error rather than a wait forever)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.channel.poll(_POLL_MS, zmq.POLLOUT):
                self.channel.send_multipart((tag, body), zmq.NOBLOCK)
                return
            if self.exit_code() is not None:
                break
        raise self._fail(f"{self.what} did not start")

    def wait_for(
        self, answer: Callable[[bytes, bytes], T | None], *, timeout_s: float = START_TIMEOUT_S
    ) -> T:
        """The worker's word: each two-frame message goes to ``answer`` (which returns what
        was waited for, None to wait on, or raises); the ``fail`` error if the worker ends
        or stays silent."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.channel.poll(_POLL_MS, zmq.POLLIN):
                frames = self.channel.recv_multipart()
                if len(frames) == 2:
                    found = answer(frames[0], frames[1])
                    if found is not None:
                        return found
                continue
            if self.exit_code() is not None:
                break
        raise self._fail(f"{self.what} did not start")

    def tell(self, tag: bytes, body: bytes = b"") -> bool:
        """Send without waiting; False if the channel is full or gone."""
        try:
            self.channel.send_multipart((tag, body), zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def stop(self, *, timeout_s: float, terminate: bool = False) -> None:
        """Wait ``timeout_s`` for the worker to end (it was told to), then end it:
        SIGTERM first when ``terminate`` (it may still tidy up), else SIGKILL."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
            return
        if terminate:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout_s)
                return
        process.kill()
        process.wait(timeout=5.0)

    def close(self) -> None:
        """Release the channel, the context if it is ours, and the folder (idempotent; stop
        the worker first)."""
        self._release()

    def _release(self) -> None:
        close_quietly(self.channel)
        if self._owns_context and not self._context.closed:
            self._context.term()
        shutil.rmtree(self._folder, ignore_errors=True)


def orphaned(parent_pid: int) -> bool:
    """Whether the twin that started this worker is gone (the worker then stops)."""
    return os.getppid() != parent_pid


def connect(
    endpoint: str,
    *,
    receive_hwm: int | None = None,
    send_hwm: int | None = None,
    linger_ms: int = 0,
) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes]]:
    """The worker's side of the channel: a new context and its PAIR socket, connected
    (``linger_ms``: how long its last words may wait for the twin when it closes)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    channel = context.socket(zmq.PAIR)
    channel.setsockopt(zmq.LINGER, linger_ms)
    if receive_hwm is not None:
        channel.setsockopt(zmq.RCVHWM, receive_hwm)
    if send_hwm is not None:
        channel.setsockopt(zmq.SNDHWM, send_hwm)
    channel.connect(endpoint)
    return context, channel
