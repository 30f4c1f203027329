"""Load and validate scene files: YAML in, a :class:`~scenes.model.Scene` or precise errors out.

Every problem in a file is reported, one line each, as ``FILE:LINE: KEY.PATH: reason``
(for example ``hall.yaml:14: benches[1].sise: unknown key 'sise' (did you mean
'size'?)``). Nothing here raises a traceback at a user for bad input: the CLI catches
:class:`SceneError` and prints its lines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from hallfiles.yaml_reader import (
    KeyPath,
    Problem,
    YamlProblem,
    format_path,
    line_for,
    read_file_text,
    read_mapping,
    reason_for,
    sorted_problems,
)
from robots import add_model_dirs
from scenes.checks import check_scene
from scenes.model import Scene

log = logging.getLogger(__name__)

DEFAULT_SCENE: Final[Path] = Path(__file__).with_name("training_hall.yaml")
"""The default hall, used when a command is given no scene."""

__all__ = ["DEFAULT_SCENE", "Problem", "SceneError", "load_scene", "parse_scene"]


class SceneError(Exception):
    """A scene file could not be loaded; ``problems`` holds every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_scene(path: str | Path | None = None) -> Scene:
    """Load, validate and check a scene file; the default hall when ``path`` is None.

    Raises :class:`SceneError` listing every problem (file, line, key path, reason).
    """
    scene_path = Path(path) if path is not None else DEFAULT_SCENE
    shown = str(path) if path is not None else str(scene_path)
    try:
        text = read_file_text(scene_path, shown)
    except YamlProblem as exc:
        raise SceneError([exc.problem]) from None
    return parse_scene(text, shown)


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
            loc, reason = reason_for(error, Scene)
            problems.append(Problem(source, line_for(loc, lines), format_path(loc), reason))
        raise SceneError(sorted_problems(problems)) from None
    problems = _add_robot_dirs(scene, source, lines)
    problems += [
        Problem(source, line_for(loc, lines), format_path(loc), reason)
        for loc, reason in check_scene(scene)
    ]
    if problems:
        raise SceneError(sorted_problems(problems))
    log.debug("loaded scene %r from %s", scene.name, source)
    return scene


def _add_robot_dirs(scene: Scene, source: str, lines: dict[KeyPath, int]) -> list[Problem]:
    """Put the scene's ``robot_dirs`` on the models path; a folder that is not there is a
    problem."""
    base = Path(source).parent
    problems, found = [], []
    for i, name in enumerate(scene.robot_dirs):
        folder = Path(name).expanduser()
        folder = folder if folder.is_absolute() else base / folder
        if folder.is_dir():
            found.append(folder)
        else:
            loc: KeyPath = ("robot_dirs", i)
            problems.append(
                Problem(source, line_for(loc, lines), format_path(loc), f"no such folder {name!r}")
            )
    add_model_dirs(found, f"scene {source}")
    return problems
