"""A shipment's messages sorted into their robots' joint blocks in a few C-level calls.

The recorder process receives the accepted messages of a receive time as one flat list of
frames, three a message (topic, 32-byte header, payload: ``[t0, h0, p0, t1, h1, p1, ...]``,
what :meth:`twin.record.recorder_process.RecorderProcess.frames` ships). Nearly all of
them are joint states going into their robot's block as they came. Looked at one by one
in Python that cost about 1 µs a message, as much as the rest of the recorder; here a
shipment is read with slices, ``map`` and one stable ``argsort`` (:func:`group_frames`),
and Python's own loop runs once per robot present, not once per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Final

import numpy as np
from numpy.typing import NDArray

ANY_SIZE: Final = 0
"""A fast route's expected payload size when any size goes (the map encodings)."""
_NO_ROUTE: Final = -2  # the size looked up for a topic without a fast route: never matches


class FastRoutes:
    """The topics whose messages :func:`group_frames` groups: each one's code (its place in
    the order they were added) and the payload size it takes (:data:`ANY_SIZE`: any)."""

    __slots__ = ("codes", "sizes")

    def __init__(self) -> None:
        self.codes: dict[bytes, int] = {}
        self.sizes: NDArray[np.intp] = np.array([_NO_ROUTE], dtype=np.intp)

    def add(self, wire_topic: bytes, payload_size: int) -> int:
        """A topic's code (``payload_size``: what its payloads must measure, or ANY_SIZE);
        ValueError if it has one already."""
        if wire_topic in self.codes:
            raise ValueError(f"{wire_topic!r} has a fast route already")
        code = len(self.codes)
        self.codes[wire_topic] = code
        # the last entry stays the sentinel that code -1 (no fast route) reads
        self.sizes = np.array([*self.sizes[:-1].tolist(), payload_size, _NO_ROUTE], dtype=np.intp)
        return code


Group = tuple[int, tuple[bytes, ...], tuple[bytes, ...]]
"""A fast route's code, and its messages' headers and payloads in the order received."""


def group_frames(flat: Sequence[bytes], routes: FastRoutes) -> tuple[list[int], list[Group]]:
    """Split a shipment (``flat``: three frames a message): the indexes of the messages no
    fast route takes (a topic without one, or a payload not of its size), in order, and the
    fast routes' groups, each in the order received. ValueError if ``flat`` is not three
    frames a message."""
    if len(flat) % 3:
        raise ValueError(f"{len(flat)} frames, not three a message")
    count = len(flat) // 3
    if count == 0:
        return [], []
    topics = flat[0::3]
    payloads = flat[2::3]
    codes = np.fromiter(map(routes.codes.get, topics, repeat(-1, count)), np.intp, count)
    sizes = np.fromiter(map(len, payloads), np.intp, count)
    wanted = routes.sizes[codes]
    fast = (wanted == sizes) | (wanted == ANY_SIZE)
    slow: list[int] = []
    taken: NDArray[np.intp] | None = None  # None: all of them
    if not fast.all():
        slow = np.flatnonzero(~fast).tolist()
        taken = np.flatnonzero(fast)
        if not taken.size:
            return slow, []
        codes = codes[taken]
    headers = flat[1::3]
    first = int(codes[0])
    if (codes == first).all():  # one robot: no sorting
        if taken is None:
            return slow, [(first, tuple(headers), tuple(payloads))]
        order = taken.tolist()
        return slow, [(first, _pick(headers, order), _pick(payloads, order))]
    order_array = np.argsort(codes, kind="stable")
    sorted_codes = codes[order_array]
    if taken is not None:
        order_array = taken[order_array]
    cuts = (np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1).tolist()
    order = order_array.tolist()
    picked_headers = _pick(headers, order)
    picked_payloads = _pick(payloads, order)
    starts = [0, *cuts]
    ends = [*cuts, len(order)]
    return slow, [
        (code, picked_headers[start:end], picked_payloads[start:end])
        for code, start, end in zip(sorted_codes[starts].tolist(), starts, ends, strict=True)
    ]


def _pick(items: Sequence[bytes], order: list[int]) -> tuple[bytes, ...]:
    """``items`` at ``order``, as a tuple (itemgetter returns a bare item for one index)."""
    if len(order) == 1:
        return (items[order[0]],)
    picked: tuple[bytes, ...] = itemgetter(*order)(items)
    return picked
