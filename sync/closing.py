"""A base for objects that hold resources (sockets, PyBullet clients, files) and a ``close()``.

``with Thing(...) as thing:`` closes it on the way out, whatever happens inside; ``close()``
must be idempotent, so closing by hand as well is harmless. It lives in ``sync`` (the lowest
package that owns resources) so both the wire and the twin can use it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """Context-manager protocol on top of the subclass's idempotent :meth:`close`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
