"""The replay index's storage: per stream, log times, a compact table of values, integers.

Rows are appended one message at a time while a recording is read, in blocks (no
doubling, no Python lists of floats kept); a block is stored as float32 when that holds
every value exactly (Kestrel's packed float32 joints, flags), else as float64, so the
index is compact and lossless. See :class:`viz.replay_source.ReplaySource`.
"""

from __future__ import annotations

from array import array
from typing import Final

import numpy as np
from numpy.typing import NDArray

BLOCK_ROWS: Final = 4096


class Rows:
    """A growable table of numbers, filled a row at a time in blocks of ``BLOCK_ROWS``.

    Compact and lossless: a full block is kept as float32 when that holds every value
    exactly (Kestrel's packed float32 joints, flags), else as float64; :meth:`array`
    gives float32 only if every block was. No doubling, no Python lists of floats.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._blocks: list[NDArray[np.float32] | NDArray[np.float64]] = []
        self._open = np.empty((BLOCK_ROWS, width))
        self._k = 0
        self.n = 0

    def append(self, row: list[float] | tuple[float, ...]) -> None:
        self._open[self._k] = row
        self._k += 1
        self.n += 1
        if self._k == BLOCK_ROWS:
            self._close_block()

    def _close_block(self) -> None:
        block = self._open[: self._k]
        narrow = block.astype(np.float32)
        exact = bool(np.array_equal(narrow, block))  # NaN never occurs: ingest refuses it
        self._blocks.append(narrow if exact else block.copy())
        self._k = 0

    def array(self) -> NDArray[np.float32] | NDArray[np.float64]:
        """The rows, one array (float32 when every value is a float32 exactly)."""
        if self._k:
            self._close_block()
        self._open = np.empty((0, self.width))
        if not self._blocks:
            return np.zeros((0, self.width), dtype=np.float32)
        blocks, self._blocks = self._blocks, []
        if all(b.dtype == np.float32 for b in blocks):
            narrow: NDArray[np.float32] = np.concatenate(blocks)
            return narrow
        wide: NDArray[np.float64] = np.concatenate([b.astype(np.float64) for b in blocks])
        return wide


class Stream:
    """One channel's messages: log times (ns), a table of values and integer fields
    (sender stamp, epoch), a row per message; ``labels``: a string field, when any."""

    def __init__(self, width: int, ints: int = 0) -> None:
        self._times = array("q")
        self._ints = array("q")
        self.ints_width = ints
        self.rows = Rows(width)
        self.labels: list[str] = []
        self.log_ns: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.values: NDArray[np.float32] | NDArray[np.float64] = np.zeros((0, width))
        self.ints: NDArray[np.int64] = np.zeros((0, ints), dtype=np.int64)

    @property
    def width(self) -> int:
        return self.rows.width

    def add(
        self, log_ns: int, row: list[float] | tuple[float, ...], ints: tuple[int, ...] = ()
    ) -> None:
        self._times.append(log_ns)
        self.rows.append(row)
        if ints:
            self._ints.extend(ints)

    def freeze(self) -> None:
        """Sort by log time (file order is log order only within a chunk) into arrays."""
        times = np.frombuffer(self._times, dtype=np.int64)
        values = self.rows.array()
        ints = np.frombuffer(self._ints, dtype=np.int64).reshape(len(times), self.ints_width)
        if len(times) > 1 and not bool(np.all(times[1:] >= times[:-1])):
            order = np.argsort(times, kind="stable")
            times, values, ints = times[order], values[order], ints[order]
            if self.labels:
                self.labels = [self.labels[int(i)] for i in order]
        self.log_ns, self.values, self.ints = times.copy(), values, ints.copy()
        self._times, self._ints = array("q"), array("q")

    @property
    def nbytes(self) -> int:
        """Bytes the frozen index of this stream holds (arrays only)."""
        return self.log_ns.nbytes + self.values.nbytes + self.ints.nbytes
