"""YAML files of the hall read with every problem as ``FILE:LINE: KEY.PATH: reason``.

Scene, task and robot-package files share this machinery: :func:`read_mapping` reads bounded
text (:mod:`hallfiles.limits`) into a mapping and the line of every key path, and
:func:`reason_for` turns a pydantic validation error into a reason an author understands
(unknown keys with a "did you mean", wrong lengths, bounds, literals). :class:`Problem` is one
line of such a report.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Union

import yaml
from pydantic import BaseModel

from hallfiles.limits import InputTooLarge, check_node_graph, check_text_size, read_text_bounded

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where (file, line, key path) and why."""

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


def format_path(path: KeyPath) -> str:
    """``('benches', 1, 'size')`` -> ``'benches[1].size'``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_map(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Record the 1-based line of every key path in a composed YAML tree."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            # point at the key itself: that is where a reader looks for a typo
            lines[(*path, key)] = key_node.start_mark.line + 1
            line_map(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            line_map(item, (*path, index), lines)


def line_for(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None


def field_names_at(root: type[BaseModel], path: KeyPath) -> list[str]:
    """The keys the schema of ``root`` allows at ``path`` (for 'did you mean' hints)."""
    annotation: Any = root
    for part in path:
        annotation = _model_of(_unwrap(annotation))
        if isinstance(part, int):
            args = typing.get_args(annotation)
            if not args:
                return []
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        else:
            return []
    annotation = _model_of(_unwrap(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    """The model in a union like ``Target | None`` (after unwrapping), else the annotation."""
    args = typing.get_args(annotation)
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    only = len(models) == 1 and typing.get_origin(annotation) is not tuple
    return models[0] if only else annotation


def _unwrap(annotation: Any) -> Any:
    """Strip ``X | None`` down to X."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def reason_for(error: Any, root: type[BaseModel]) -> tuple[KeyPath, str]:
    """Turn one pydantic error into (key path, reason an author understands); ``root``: the
    schema the path starts in (for 'did you mean' hints on unknown keys)."""
    loc: KeyPath = tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in p)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = field_names_at(root, loc[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        reason = f"unknown key {key!r}"
        if hint:
            reason += f" (did you mean {hint[0]!r}?)"
        elif allowed:
            reason += f" (allowed: {', '.join(allowed)})"
        return loc, reason
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        bound = next(iter(error["ctx"].values()))
        words = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        if kind == "greater_than" and bound == 0:
            return loc, f"must be positive, got {value!r}"
        return loc, f"must be {words} {bound}, got {value!r}"
    if kind in ("tuple_type", "list_type"):
        return loc, f"expected a list, got {type(value).__name__} {value!r}"
    if kind in ("too_short", "too_long"):
        return loc, f"expected {_expected_len(root, loc)} values, got {len(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of keys, got {type(value).__name__} {value!r}"
    if kind == "literal_error":
        return loc, f"{value!r} is not one of {error['ctx']['expected']}"
    if kind == "string_type":
        return loc, f"expected text, got {type(value).__name__} {value!r}"
    if kind == "bool_type":
        return loc, f"expected true or false, got {value!r}"
    if kind == "string_pattern_mismatch":
        return loc, (
            f"{value!r} is not a valid id (letters, digits, '_', '.', '-'; starting with a "
            "letter or digit)"
        )
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    return loc, msg


def _expected_len(root: type[BaseModel], loc: KeyPath) -> str:
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation
    args = typing.get_args(_unwrap(annotation))
    return str(len(args)) if args and Ellipsis not in args else "the right number of"


def read_file_text(path: Path, shown: str) -> str:
    """The text of a file, bounded (:func:`hallfiles.limits.read_text_bounded`); a missing, too
    large or unreadable file is a :class:`YamlProblem` naming ``shown``."""
    try:
        return read_text_bounded(path)
    except FileNotFoundError:
        raise YamlProblem(Problem(shown, None, "", "no such file")) from None
    except InputTooLarge as exc:
        raise YamlProblem(Problem(shown, None, "", str(exc))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(Problem(shown, None, "", f"cannot read: {exc}")) from None


_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML was built with it (about 10x faster), else PyYAML's own."""


def read_mapping(text: str, source: str, what: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """YAML text that must be a mapping (a ``what``: "scene", "task"): the data and the line of
    each key path; the problem when it is not YAML, too large, too deep, or not a mapping.

    The size, alias expansion and nesting are checked (:mod:`hallfiles.limits`) before anything
    is constructed, so hostile text costs bounded time and memory."""
    try:
        check_text_size(text)
        loader = _LOADER(text)
        try:  # one parse (libyaml's, where PyYAML has it): the graph, checked, then the data
            node = loader.get_single_node()
            if node is not None:
                check_node_graph(node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):  # libyaml's own bound: as PyYAML's below
            raise YamlProblem(Problem(source, None, "", "YAML nested too deeply")) from None
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlProblem(Problem(source, line, "", f"YAML syntax error: {exc.problem}")) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem(source, None, "", f"YAML error: {exc}")) from None
    except InputTooLarge as exc:
        raise YamlProblem(Problem(source, None, "", str(exc))) from None
    except RecursionError:  # hostile input: [[[[...]]]] thousands deep
        raise YamlProblem(Problem(source, None, "", "YAML nested too deeply")) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise YamlProblem(Problem(source, 1, "", f"a {what} is a mapping of keys, got {got}"))
    lines: dict[KeyPath, int] = {}
    if node is not None:
        line_map(node, (), lines)
    return data, lines


class YamlProblem(Exception):
    """Text that is not a YAML mapping (see :func:`read_mapping`)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def sorted_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Problems in file order (by line, then key path)."""
    return sorted(problems, key=lambda p: (p.line if p.line is not None else 0, p.path))
