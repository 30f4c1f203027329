"""Limits on input files, checked before they cost memory: size, YAML alias expansion, nesting.

A scene, task or robot file is small (the default hall is a few kB; a hall of 100 robots
about 40 kB). A 50 MB file, or a "billion laughs" YAML bomb whose aliases expand to billions
of nodes, would take gigabytes and minutes to parse and validate. So files are read only up to
:func:`max_input_bytes` (``HALL_TWIN_MAX_INPUT_BYTES`` raises it; ``twin --max-input-bytes N``
sets that variable for itself and its children), and a composed YAML document
is measured as it would be expanded -- every alias counted as the whole subtree it stands for,
computed once per node -- before anything is constructed or validated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import yaml

ENV_MAX_INPUT_BYTES: Final = "HALL_TWIN_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES: Final = 1 << 20
"""1 MiB: some 25 times the largest hall this project has written."""
MAX_YAML_NODES: Final = 200_000
"""Nodes of a document with every alias expanded (the default hall has about 1,500)."""
MAX_YAML_DEPTH: Final = 64
"""Nesting of mappings and sequences (the scene format needs 6)."""


class InputTooLarge(ValueError):
    """A file or document beyond the limits (the message says which and by how much)."""


def max_input_bytes() -> int:
    """The size limit for an input file: ``HALL_TWIN_MAX_INPUT_BYTES`` or 1 MiB."""
    raw = os.environ.get(ENV_MAX_INPUT_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise InputTooLarge(f"{ENV_MAX_INPUT_BYTES}={raw!r} is not a number of bytes") from None
    if value <= 0:
        raise InputTooLarge(f"{ENV_MAX_INPUT_BYTES}={raw!r} must be positive")
    return value


def read_bytes_bounded(path: Path) -> bytes:
    """A file's bytes, refused unread when it is larger than :func:`max_input_bytes`.

    Raises :class:`InputTooLarge`, and ``OSError`` as reading does.
    """
    limit = max_input_bytes()
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        size = path.stat().st_size
        raise InputTooLarge(
            f"file is {_size(size)}, over the {_size(limit)} limit for input files "
            f"(raise it with `twin --max-input-bytes N` or {ENV_MAX_INPUT_BYTES})"
        )
    return data


def read_text_bounded(path: Path) -> str:
    """A file's UTF-8 text, as :func:`read_bytes_bounded` (``UnicodeDecodeError`` too)."""
    return read_bytes_bounded(path).decode("utf-8")


def check_text_size(text: str) -> None:
    """Refuse text (already in memory, e.g. received) larger than the file limit."""
    limit = max_input_bytes()
    if len(text) > limit:
        raise InputTooLarge(
            f"text is {_size(len(text))}, over the {_size(limit)} limit for input files "
            f"(raise it with `twin --max-input-bytes N` or {ENV_MAX_INPUT_BYTES})"
        )


def check_node_graph(root: yaml.Node) -> None:
    """Refuse a composed document deeper than :data:`MAX_YAML_DEPTH` or larger, with every
    alias expanded, than :data:`MAX_YAML_NODES` (linear in the composed graph's size)."""
    seen: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        known = seen.get(id(node))
        if known is not None:  # an alias, or a node met before: its size is known
            if depth + known[1] > MAX_YAML_DEPTH:
                raise InputTooLarge(f"YAML nested more than {MAX_YAML_DEPTH} levels deep")
            return known
        if depth > MAX_YAML_DEPTH:
            raise InputTooLarge(f"YAML nested more than {MAX_YAML_DEPTH} levels deep")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total, height = 1, 0
        for child in children:
            child_total, child_height = measure(child, depth + 1)
            total += child_total
            height = max(height, child_height + 1)
            if total > MAX_YAML_NODES:
                raise InputTooLarge(
                    f"YAML expands to over {MAX_YAML_NODES:,} nodes (aliases counted in "
                    "full); a hall or task needs far fewer"
                )
        seen[id(node)] = (total, height)
        return total, height

    measure(root, 0)


def _size(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    return f"{count / 1024:.1f} kB" if count >= 1024 else f"{count} bytes"
