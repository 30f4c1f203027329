"""What the mirror asks of a command gate: the seam between the live mirror and dispatch.

The mirror polls the gate's sockets in its loop, lets it expire overdue requests each tick,
reports its status and closes it; :class:`twin.dispatch.gate.DispatchGate` is the one gate
there is (``twin live --keys``). The live room names only this protocol, so the arrow points
one way: dispatch knows the mirror, the mirror does not know dispatch.
"""

from __future__ import annotations

from typing import Any, Protocol

import zmq


class CommandGate(Protocol):
    """A command channel served from the mirror's loop (see the module docstring)."""

    @property
    def sockets(self) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """(command, control): the mirror polls both."""
        ...

    def serve_command(self) -> None:
        """Handle every waiting message from gateways."""
        ...

    def serve_control(self) -> None:
        """Handle every waiting control request."""
        ...

    def expire(self, now_mono_ns: int) -> None:
        """Answer or forget requests whose time is up."""
        ...

    def status(self) -> dict[str, Any]:
        """The ``dispatch`` part of ``twin status``."""
        ...

    def close(self) -> None:
        """Close the gate's sockets."""
        ...
