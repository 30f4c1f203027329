"""What ZeroMQ does to a socket's connections, counted: a socket monitor read without waiting.

ZeroMQ refuses some input before any message reaches the application: a frame over
``ZMQ_MAXMSGSIZE`` makes it drop the sender's connection, and a CURVE handshake with an
unknown key never completes. Neither reaches ``recv``; both are visible only as monitor
events. :class:`SocketMonitor` counts them (``connected``, ``disconnected``,
``handshake_failed_auth``, ...), so the twin's status shows every connection it lost.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from sync.addresses import close_quietly

log = logging.getLogger(__name__)

EVENT_NAMES: Final[dict[zmq.Event, str]] = {
    zmq.EVENT_ACCEPTED: "connected",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshake_succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed_protocol",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_failed_auth",
}
_MAX_EVENTS_PER_POLL: Final = 1000


class SocketMonitor:
    """Counts a socket's connection events (create it before the socket binds)."""

    def __init__(self, socket: zmq.Socket[bytes]) -> None:
        mask = 0
        for event in EVENT_NAMES:
            mask |= event
        self._pipe = socket.get_monitor_socket(mask)
        self._pipe.setsockopt(zmq.LINGER, 0)
        self.counts: Counter[str] = Counter()

    def poll(self) -> None:
        """Count the events that happened since the last call (never waits)."""
        for _ in range(_MAX_EVENTS_PER_POLL):
            try:
                message = recv_monitor_message(self._pipe, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed under us (shutdown)
                return
            name = EVENT_NAMES.get(zmq.Event(int(message["event"])))
            if name is not None:
                self.counts[name] += 1

    def close(self) -> None:
        """Close the monitor's pipe."""
        close_quietly(self._pipe)
