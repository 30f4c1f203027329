"""Where the twin's sockets live: defaults, environment overrides, and socket options.

| endpoint | default (twin binds) | environment variable |
|---|---|---|
| telemetry ingest (gateways connect and publish) | tcp://127.0.0.1:7700 | HALL_TWIN_INGEST |
| viewer fan-out (viewers connect and subscribe) | tcp://127.0.0.1:7702 | HALL_TWIN_FANOUT |
| snapshot / status (request-reply) | tcp://127.0.0.1:7703 | HALL_TWIN_SNAPSHOT |
| command channel (gateways connect; CURVE) | tcp://127.0.0.1:7701 | HALL_TWIN_COMMAND |
| dispatch control (``twin dispatch``; CURVE) | tcp://127.0.0.1:7704 | HALL_TWIN_CONTROL |

The last two exist only when the twin runs with a key directory (``twin live --keys DIR``).

A command-line flag beats the environment, which beats the default. To serve other
machines, bind ``tcp://0.0.0.0:7700`` (and tell the gateways the twin's address).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

import zmq

DEFAULT_INGEST: Final = "tcp://127.0.0.1:7700"
DEFAULT_FANOUT: Final = "tcp://127.0.0.1:7702"
DEFAULT_SNAPSHOT: Final = "tcp://127.0.0.1:7703"
DEFAULT_COMMAND: Final = "tcp://127.0.0.1:7701"
DEFAULT_CONTROL: Final = "tcp://127.0.0.1:7704"

ENV_INGEST: Final = "HALL_TWIN_INGEST"
ENV_FANOUT: Final = "HALL_TWIN_FANOUT"
ENV_SNAPSHOT: Final = "HALL_TWIN_SNAPSHOT"
ENV_COMMAND: Final = "HALL_TWIN_COMMAND"
ENV_CONTROL: Final = "HALL_TWIN_CONTROL"

# High-water marks, chosen deliberately:
INGEST_RCVHWM: Final = 200_000
"""Twin's ingest queue: 2 s of the design load (100 robots x 500 Hz x 2 streams)."""
GATEWAY_SNDHWM: Final = 10_000
"""A gateway buffers up to ~20 s at 500 Hz while the twin is away; beyond, PUB drops (the
twin counts those as sequence gaps)."""
FANOUT_SNDHWM: Final = 64
"""Per viewer: ~2 s of display updates. A slow viewer loses updates (it sees the gap in the
fan-out sequence and asks for a fresh snapshot); ingest never waits for it."""
MAX_MESSAGE_BYTES: Final = 1 << 20
"""ZMQ_MAXMSGSIZE on ingest: a peer sending a bigger frame is disconnected by ZeroMQ."""


@dataclass(frozen=True)
class Endpoints:
    """The endpoints of one twin (command and control exist only with ``--keys``)."""

    ingest: str = DEFAULT_INGEST
    fanout: str = DEFAULT_FANOUT
    snapshot: str = DEFAULT_SNAPSHOT
    command: str = DEFAULT_COMMAND
    control: str = DEFAULT_CONTROL

    @classmethod
    def resolve(
        cls,
        ingest: str | None = None,
        fanout: str | None = None,
        snapshot: str | None = None,
        command: str | None = None,
        control: str | None = None,
    ) -> Endpoints:
        """Flag, else environment variable, else default, for each endpoint."""
        return cls(
            ingest=ingest or os.environ.get(ENV_INGEST) or DEFAULT_INGEST,
            fanout=fanout or os.environ.get(ENV_FANOUT) or DEFAULT_FANOUT,
            snapshot=snapshot or os.environ.get(ENV_SNAPSHOT) or DEFAULT_SNAPSHOT,
            command=command or os.environ.get(ENV_COMMAND) or DEFAULT_COMMAND,
            control=control or os.environ.get(ENV_CONTROL) or DEFAULT_CONTROL,
        )


def close_quietly(socket: zmq.Socket[bytes]) -> None:
    """Close a socket without lingering on unsent messages."""
    socket.close(linger=0)
