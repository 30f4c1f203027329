"""The demo's hall: ``twin live`` and ``twin emulate`` as child processes, lessons on.

Both demos (the web page, and the video or window one) start the same pair. The twin gets a
command channel behind temporary keys (made here in a private temporary folder, removed when
the demo ends), so that a lesson the twin learns from one robot's failure reaches the
gateways of every robot it concerns; the emulator sends its telemetry with those keys, acts
on the lessons (the advised pace, a firmer grip) and acknowledges them. The twin's lesson and
failure lines are echoed to this process's stderr, so a newcomer sees a lesson born and
shared. Lessons go to the usual database (``HALL_TWIN_LESSONS`` or the default), so
``twin lessons`` lists them after the demo.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sync.keys import init_keys
from twin.cli.child import TwinProcess

log = logging.getLogger(__name__)

ANY_PORT: Final = "tcp://127.0.0.1:*"
ECHOED: Final = r"^(lesson |lessons: |twin live: lessons off)"
"""The twin's lines the demo shows: the database, lessons made and sent, or why they are off."""


class DemoError(RuntimeError):
    """A child did not start: the message holds its last lines."""


@dataclass(frozen=True)
class DemoEndpoints:
    """Where the demo's twin listens."""

    ingest: str
    fanout: str
    snapshot: str
    command: str


class DemoHall:
    """The twin (started on construction) and, once :meth:`start_emulator` is called, the
    emulated hall; :meth:`stop` ends both and removes the temporary keys."""

    def __init__(
        self, scene_path: Path | None, *, record: Path | None, twin_args: Sequence[str] = ()
    ) -> None:
        """``twin_args``: more options for ``twin live`` (a benchmark's ``--no-lessons``)."""
        self._scene_args = [str(scene_path)] if scene_path is not None else []
        self._record = record
        self._keys_dir = tempfile.TemporaryDirectory(prefix="hall-twin-demo-keys-")
        self.keys = Path(self._keys_dir.name) / "keys"
        init_keys(self.keys)
        record_args = ["--record", str(record)] if record is not None else []
        self.twin = TwinProcess(
            "live", *self._scene_args, "--ingest", ANY_PORT, "--fanout", ANY_PORT,
            "--snapshot", ANY_PORT, "--keys", str(self.keys), "--command", ANY_PORT,
            "--control", ANY_PORT, *record_args, *twin_args,
            die_with_parent=True, echo=ECHOED, echo_to=sys.stderr,
        )  # fmt: skip
        self.hall: TwinProcess | None = None
        self.endpoints: DemoEndpoints | None = None

    def wait_for_twin(self, timeout_s: float) -> DemoEndpoints:
        """The twin's endpoints once it listens; DemoError if it did not start."""
        found = self.twin.wait_for(
            r"ingest (\S+) fan-out (\S+) snapshot (\S+) command (\S+)", timeout_s
        )
        if found is None:
            raise DemoError("the twin did not start:\n" + "".join(self.twin.lines[-20:]))
        ingest, fanout, snapshot, command = found[0].groups()
        self.endpoints = DemoEndpoints(ingest, fanout, snapshot, command)
        return self.endpoints

    def start_emulator(
        self, *, faults: list[str], incidents_every_s: float, timeout_s: float
    ) -> None:
        """Start the emulated hall against the twin (after :meth:`wait_for_twin`); fault times
        count from the recording's start when there is one (fall@8s: 8 s into the file)."""
        if self.endpoints is None:
            raise DemoError("the emulator starts after the twin")
        zero = self.twin.wait_for(r"time zero (\d+) ns", 0.0) if self._record is not None else None
        t0_args = ["--t0-ns", zero[0].group(1)] if zero is not None else []
        fault_args = [a for f in faults for a in ("--fault", f)]
        self.hall = TwinProcess(
            "emulate", *self._scene_args, "--ingest", self.endpoints.ingest,
            "--keys", str(self.keys), "--command", self.endpoints.command,
            *fault_args, *t0_args, "--incidents-every", f"{incidents_every_s:g}",
            die_with_parent=True,
        )  # fmt: skip
        if self.hall.wait_for(r"emulating", timeout_s) is None:
            raise DemoError("the emulator did not start:\n" + "".join(self.hall.lines[-20:]))

    def ended(self) -> bool:
        """Whether the twin or the emulator has exited."""
        return self.twin.popen.poll() is not None or (
            self.hall is not None and self.hall.popen.poll() is not None
        )

    def stop(self) -> None:
        """Stop the emulator, then the twin; remove the temporary keys."""
        try:
            if self.hall is not None:
                self.hall.stop()
            self.twin.stop()
        finally:
            self._keys_dir.cleanup()
