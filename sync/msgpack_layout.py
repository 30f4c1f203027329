"""Reading many MessagePack payloads of one fixed layout at once, with numpy.

A vendor's joint-state map (``{joint: [position, velocity, effort]}``) or a base-state map
is encoded the same way message after message: the same keys in the same order, each value
a float64 in the same place. :func:`layout_of` walks one payload and notes where each
number lies (a float's 8 or 4 bytes, or an integer constant); :func:`extract` then takes a
stack of payloads of that size, keeps those whose every other byte equals the layout's
(same keys, same types, same lengths) and gathers their numbers as a float64 array. A
payload of another shape is left for the caller to decode one by one; nothing is guessed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]
U64Array = npt.NDArray[np.uint64]
Path = tuple[str | int, ...]  # keys and array positions from the top of the payload
MAX_DEPTH: Final = 8


@dataclass(frozen=True)
class Leaf:
    """One number of the layout: at ``offset`` a float of ``width`` bytes (big-endian), or
    (``width`` 0) an integer ``constant`` that every matching payload repeats."""

    path: Path
    offset: int
    width: int
    constant: float = 0.0


@dataclass(frozen=True)
class Layout:
    """Where the numbers of one payload shape lie, and which bytes must repeat."""

    size: int
    template: U8Array
    fixed: BoolArray  # bytes every matching payload has as the template has them
    leaves: dict[Path, Leaf]


class _Walk:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.leaves: dict[Path, Leaf] = {}
        self.floats: list[tuple[int, int]] = []

    def value(self, pos: int, path: Path, depth: int) -> int:
        """Walk one value at ``pos``; returns the position after it (ValueError: unsupported)."""
        if depth > MAX_DEPTH:
            raise ValueError("nested too deeply")
        data = self.data
        tag = data[pos]
        if tag in (0xCB, 0xCA):
            width = 8 if tag == 0xCB else 4
            self._leaf(Leaf(path, pos + 1, width))
            self.floats.append((pos + 1, width))
            return pos + 1 + width
        if tag <= 0x7F or tag >= 0xE0:
            self._leaf(Leaf(path, pos, 0, float(tag if tag <= 0x7F else tag - 0x100)))
            return pos + 1
        if 0xCC <= tag <= 0xD3:
            width = 1 << ((tag - 0xCC) % 4)
            kind = ">" + {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
            if tag >= 0xD0:
                kind = kind.lower()
            (number,) = struct.unpack_from(kind, data, pos + 1)
            self._leaf(Leaf(path, pos, 0, float(number)))
            return pos + 1 + width
        if 0x90 <= tag <= 0x9F or tag == 0xDC:
            count, pos = (tag & 0x0F, pos + 1) if tag != 0xDC else (_u16(data, pos), pos + 3)
            for i in range(count):
                pos = self.value(pos, (*path, i), depth + 1)
            return pos
        if 0x80 <= tag <= 0x8F or tag == 0xDE:
            count, pos = (tag & 0x0F, pos + 1) if tag != 0xDE else (_u16(data, pos), pos + 3)
            for _ in range(count):
                key, pos = _string(data, pos)
                pos = self.value(pos, (*path, key), depth + 1)
            return pos
        if tag in (0xC0, 0xC2, 0xC3) or 0xA0 <= tag <= 0xBF or tag == 0xD9:
            # nil, booleans and strings: bytes to repeat, never numbers
            return _string(data, pos)[1] if tag >= 0xA0 else pos + 1
        raise ValueError(f"MessagePack type 0x{tag:02x} not in fixed layouts")

    def _leaf(self, leaf: Leaf) -> None:
        if leaf.path in self.leaves:
            raise ValueError(f"{leaf.path} twice")
        self.leaves[leaf.path] = leaf


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos + 1 : pos + 3], "big")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    tag = data[pos]
    if 0xA0 <= tag <= 0xBF:
        size, pos = tag & 0x1F, pos + 1
    elif tag == 0xD9:
        size, pos = data[pos + 1], pos + 2
    else:
        raise ValueError(f"a map key of type 0x{tag:02x}")
    if pos + size > len(data):
        raise ValueError("a string past the end")
    return data[pos : pos + size].decode("utf-8"), pos + size


def layout_of(payload: bytes) -> Layout | None:
    """The layout of one payload (None: a shape :func:`extract` does not read)."""
    walk = _Walk(payload)
    try:
        end = walk.value(0, (), 0)
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    if end != len(payload):
        return None
    template = np.frombuffer(payload, dtype=np.uint8)
    fixed = np.ones(len(payload), dtype=bool)
    for start, width in walk.floats:
        fixed[start : start + width] = False
    return Layout(len(payload), template, fixed, walk.leaves)


@dataclass(frozen=True)
class Plan:
    """Where the numbers at some paths of a layout come from: the float64 ones gathered in
    one take of their bytes, the rest (float32, integer constants) one by one."""

    layout: Layout
    width: int  # numbers per payload
    wide: npt.NDArray[np.int64]  # output columns of the float64 numbers
    wide_bytes: npt.NDArray[np.int64]  # their 8 bytes each, in order
    other: tuple[tuple[int, Leaf], ...]  # (output column, leaf)
    fixed_bytes: npt.NDArray[np.int64]  # positions of the bytes that must repeat
    fixed_values: U8Array
    # the same check and gather eight bytes at a time (layouts of 8 bytes or more): the
    # payload read as overlapping 8-byte words, one starting at each byte
    wide_offsets: npt.NDArray[np.int64]  # where each float64 starts
    word_offsets: npt.NDArray[np.int64]  # words that cover the payload
    word_masks: U64Array  # the bytes of each word that must repeat
    word_values: U64Array  # and what they hold


def plan(layout: Layout, paths: list[Path]) -> Plan:
    """How :func:`extract` gathers ``paths`` (KeyError: a path not in the layout)."""
    wide: list[int] = []
    wide_bytes: list[int] = []
    other: list[tuple[int, Leaf]] = []
    for column, path in enumerate(paths):
        leaf = layout.leaves[path]
        if leaf.width == 8:
            wide.append(column)
            wide_bytes += range(leaf.offset, leaf.offset + 8)
        else:
            other.append((column, leaf))
    fixed = np.flatnonzero(layout.fixed)
    size = layout.size
    words = np.minimum(np.arange((size + 7) // 8) * 8, max(size - 8, 0))
    if size >= 8:
        at = words[:, None] + np.arange(8)
        mask = np.where(layout.fixed, 0xFF, 0).astype(np.uint8)[at]
        word_masks = np.ascontiguousarray(mask).view("<u8").reshape(-1)
        word_values = np.ascontiguousarray(layout.template[at] & mask).view("<u8").reshape(-1)
    else:
        word_masks = word_values = np.zeros(0, dtype=np.uint64)
    return Plan(
        layout,
        len(paths),
        np.asarray(wide, dtype=np.int64),
        np.asarray(wide_bytes, dtype=np.int64),
        tuple(other),
        fixed,
        layout.template[fixed],
        np.asarray(wide_bytes[::8], dtype=np.int64),
        words,
        word_masks,
        word_values,
    )


def extract(rows: U8Array, how: Plan) -> tuple[BoolArray, FloatArray]:
    """Which payloads (rows of the layout's size) have the layout, and the numbers of the
    plan's paths of every row (meaningful where it has)."""
    count, size = rows.shape
    if size < 8 or not count:
        same = (rows.take(how.fixed_bytes, axis=1) == how.fixed_values).all(axis=1)
        floats = np.ascontiguousarray(rows.take(how.wide_bytes, axis=1)).view(">f8")
    else:  # eight bytes at a time: about twice as fast as taking every byte
        rows = np.ascontiguousarray(rows)
        words = np.ndarray((count, size - 7), dtype="<u8", buffer=rows, strides=(size, 1))
        checked = words[:, how.word_offsets]
        checked ^= how.word_values
        checked &= how.word_masks
        same = ~checked.any(axis=1)
        wide = np.ndarray((count, size - 7), dtype=">f8", buffer=rows, strides=(size, 1))
        floats = wide[:, how.wide_offsets]
    out = np.empty((count, how.width), dtype=np.float64)
    if len(how.wide):
        if len(how.wide) == how.width:
            out[:] = floats
        else:
            out[:, how.wide] = floats
    for column, leaf in how.other:
        if leaf.width == 0:
            out[:, column] = leaf.constant
        else:
            raw = np.ascontiguousarray(rows[:, leaf.offset : leaf.offset + leaf.width])
            out[:, column] = raw.view(">f4")[:, 0]
    return same, out
