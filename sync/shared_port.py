"""One TCP port bound by several processes: the kernel spreads the connections among them.

``twin live --workers N`` shards ingest across N processes that all bind the one ingest
endpoint the gateways know. ZeroMQ cannot share a port by itself, but it can bind a socket
to a listening file descriptor made elsewhere (``ZMQ_USE_FD``), and Linux lets several
listening sockets share a port (``SO_REUSEPORT``): each new connection then goes to one of
them (by a hash of its addresses), so each gateway's connection, and every frame on it, is
taken by one worker.

- :func:`reserve` (the twin): picks the port for ``tcp://HOST:*`` (or checks a given one is
  free) and holds it, bound but not listening (so no connection lands on it), until the
  workers listen on it;
- :func:`bind_shared` (each worker): a listening ``SO_REUSEPORT`` socket on that port, handed
  to a ZeroMQ socket's bind.
"""

from __future__ import annotations

import socket
from typing import Final

import zmq

_BACKLOG: Final = 1024


class SharedPortError(OSError):
    """The endpoint cannot be shared (not TCP, bad address, port in use): says why."""


def _host_port(endpoint: str) -> tuple[str, int]:
    if not endpoint.startswith("tcp://"):
        raise SharedPortError(f"{endpoint}: sharded ingest needs a tcp:// endpoint")
    host, sep, port = endpoint[len("tcp://") :].rpartition(":")
    if not sep or not host:
        raise SharedPortError(f"{endpoint}: expected tcp://HOST:PORT")
    if host == "*":
        host = "0.0.0.0"
    if port == "*":
        return host, 0
    try:
        number = int(port)
    except ValueError:
        raise SharedPortError(f"{endpoint}: port {port!r} is not a number") from None
    if not 0 <= number < 65536:
        raise SharedPortError(f"{endpoint}: port {number} is out of range")
    return host, number


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise SharedPortError(f"cannot bind tcp://{host}:{port}: {exc.strerror or exc}") from None
    return sock


def reserve(endpoint: str) -> tuple[socket.socket, str]:
    """Hold ``endpoint``'s port (a free one for ``*``): (the held socket, the endpoint with
    its port). Close the socket once the workers listen."""
    host, port = _host_port(endpoint)
    if port:  # free for us alone? (a port another twin shares would take it without error)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # REUSEADDR, as ZeroMQ's own listeners: a twin restarted on its port is not
            # refused for its old connections in TIME_WAIT, only for a live listener
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]"), port))
            except OSError as exc:
                raise SharedPortError(
                    f"cannot bind tcp://{host}:{port}: {exc.strerror or exc}"
                ) from None
    held = _socket(host, port)
    return held, f"tcp://{host}:{held.getsockname()[1]}"


def bind_shared(zmq_socket: zmq.Socket[bytes], endpoint: str) -> None:
    """Bind ``zmq_socket`` to ``endpoint`` (a port others share) through a listening
    ``SO_REUSEPORT`` socket, whose descriptor ZeroMQ then owns (and closes with it)."""
    host, port = _host_port(endpoint)
    if port == 0:
        raise SharedPortError(f"{endpoint}: a shared endpoint needs its port")
    listener = _socket(host, port)
    try:
        listener.listen(_BACKLOG)
        zmq_socket.setsockopt(zmq.USE_FD, listener.fileno())
        zmq_socket.bind(endpoint)
    except (OSError, zmq.ZMQError) as exc:
        listener.close()
        raise SharedPortError(f"cannot bind {endpoint}: {exc}") from None
    listener.detach()  # ZeroMQ's now
