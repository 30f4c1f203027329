"""A status flood: many real DEALER and REQ sockets asking a twin for its status, fast.

Usage (a process of its own, so the flood does not share the twin's interpreter)::

    python -m benchmarks.status_flood ENDPOINT --rate 5000 --seconds 3 [--sockets 50]

Sends ``--rate`` requests a second in total, spread over ``--sockets`` DEALER sockets
(pipelined, never waiting for answers) and a few REQ sockets (``ZMQ_REQ_RELAXED``: each
asks again without waiting, like an impatient ``twin status`` in a loop), for
``--seconds``; reads whatever answers come. Prints one JSON line: ``sent``, ``answered``.
Used by ``benchmarks/sync.py --status-flood R`` and by the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Final

import zmq

STATUS: Final = b"status"
REQ_SOCKETS: Final = 4
BATCH_S: Final = 0.005


def flood(endpoint: str, *, rate_hz: float, seconds: float, sockets: int) -> dict[str, int]:
    """Flood ``endpoint`` with status requests; return what was sent and answered."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealers: list[zmq.Socket[bytes]] = []
    reqs: list[zmq.Socket[bytes]] = []
    sent = answered = 0
    try:
        for kind, group, count in ((zmq.DEALER, dealers, sockets), (zmq.REQ, reqs, REQ_SOCKETS)):
            for _ in range(count):
                socket = context.socket(kind)
                socket.setsockopt(zmq.LINGER, 0)
                socket.setsockopt(zmq.SNDHWM, 100_000)
                if kind == zmq.REQ:
                    socket.setsockopt(zmq.REQ_RELAXED, 1)
                socket.connect(endpoint)
                group.append(socket)
        everyone = dealers + reqs
        start = time.monotonic()
        end = start + seconds
        turn = 0
        while (now := time.monotonic()) < end:
            due = int((now - start) * rate_hz) - sent
            for _ in range(max(0, due)):
                socket = everyone[turn % len(everyone)]
                turn += 1
                try:
                    if socket.socket_type == zmq.DEALER:
                        socket.send_multipart([b"", STATUS], zmq.NOBLOCK)
                    else:
                        socket.send(STATUS, zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:
                    pass
            for socket in everyone:
                while socket.poll(0, zmq.POLLIN):
                    socket.recv_multipart()
                    answered += 1
            time.sleep(BATCH_S)  # pacing the sender, not waiting on a condition
    finally:
        context.destroy(linger=0)
    return {"sent": sent, "answered": answered}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one flood; print its JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--rate", type=float, default=5000.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sockets", type=int, default=50, help="DEALER sockets")
    args = parser.parse_args(argv)
    result = flood(args.endpoint, rate_hz=args.rate, seconds=args.seconds, sockets=args.sockets)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
