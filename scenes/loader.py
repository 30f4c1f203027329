"""Load and validate scene files: YAML in, a :class:`~scenes.model.Scene` or precise errors out.

Every problem in a file is reported, one line each, as ``FILE:LINE: KEY.PATH: reason``
(for example ``hall.yaml:14: benches[1].sise: unknown key 'sise' (did you mean
'size'?)``). Nothing here raises a traceback at a user for bad input: the CLI catches
:class:`SceneError` and prints its lines.
"""

from __future__ import annotations

import difflib
import logging
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Union

import yaml
from pydantic import BaseModel, ValidationError

from scenes.checks import check_scene
from scenes.limits import InputTooLarge, check_node_graph, check_text_size, read_text_bounded
from scenes.model import Scene

log = logging.getLogger(__name__)

DEFAULT_SCENE: Final[Path] = Path(__file__).with_name("training_hall.yaml")
"""The default hall, used when a command is given no scene."""

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scene file."""

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class SceneError(Exception):
    """A scene file could not be loaded; ``problems`` holds every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: KeyPath) -> str:
    """``('benches', 1, 'size')`` -> ``'benches[1].size'``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_map(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Record the 1-based line of every key path in a composed YAML tree."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            # point at the key itself: that is where a reader looks for a typo
            lines[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)


def _line_for(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
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


def _reason(error: Any, root: type[BaseModel] = Scene) -> tuple[KeyPath, str]:
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
        return loc, f"expected {_expected_len(loc)} values, got {len(value)}"
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


def _expected_len(loc: KeyPath) -> str:
    annotation: Any = Scene
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation
    args = typing.get_args(_unwrap(annotation))
    return str(len(args)) if args and Ellipsis not in args else "the right number of"


def load_scene(path: str | Path | None = None) -> Scene:
    """Load, validate and check a scene file; the default hall when ``path`` is None.

    Raises :class:`SceneError` listing every problem (file, line, key path, reason).
    """
    scene_path = Path(path) if path is not None else DEFAULT_SCENE
    shown = str(path) if path is not None else str(scene_path)
    try:
        text = read_text_bounded(scene_path)
    except FileNotFoundError:
        raise SceneError([Problem(shown, None, "", "no such file")]) from None
    except InputTooLarge as exc:
        raise SceneError([Problem(shown, None, "", str(exc))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError([Problem(shown, None, "", f"cannot read: {exc}")]) from None
    return parse_scene(text, shown)


def read_mapping(text: str, source: str, what: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """YAML text that must be a mapping (a ``what``: "scene", "task"): the data and the line of
    each key path; the problem when it is not YAML, too large, too deep, or not a mapping.

    The size, alias expansion and nesting are checked (:mod:`scenes.limits`) before anything
    is constructed, so hostile text costs bounded time and memory."""
    try:
        check_text_size(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            check_node_graph(node)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
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
        _line_map(node, (), lines)
    return data, lines


class YamlProblem(Exception):
    """Text that is not a YAML mapping (see :func:`read_mapping`)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def parse_scene(text: str, source: str = "<scene>") -> Scene:
    """Validate scene YAML text; ``source`` names it in error messages."""
    try:
        data, lines = read_mapping(text, source, "scene")
    except YamlProblem as exc:
        raise SceneError([exc.problem]) from None
    try:
        scene = Scene.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, reason = _reason(error)
            problems.append(Problem(source, _line_for(loc, lines), format_path(loc), reason))
        raise SceneError(_sorted(problems)) from None
    problems = [
        Problem(source, _line_for(loc, lines), format_path(loc), reason)
        for loc, reason in check_scene(scene)
    ]
    if problems:
        raise SceneError(_sorted(problems))
    log.debug("loaded scene %r from %s", scene.name, source)
    return scene


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line if p.line is not None else 0, p.path))
