"""Where robot models are found: the models path, and the model a name means.

A *models folder* holds packages (subfolders with a ``robot.yaml``) or is one itself. The
models path is, in order of precedence:

1. the folders of ``HALL_TWIN_ROBOTS`` (an ``os.pathsep``-separated list; ``twin
   --robots-dir DIR`` puts its folders at the front, so child processes inherit them),
2. folders added by a scene's ``robot_dirs`` (:func:`add_model_dirs`, relative to the scene),
3. the repository's own ``robots/`` (the built-in models).

The first package of a name wins; a later one of the same name is listed as shadowed. A
package that cannot be read is listed with its problems under its folder's name, and asking
for that name raises :class:`~robots.package.PackageError` with them rather than "unknown
model". Packages are read once per process and again when their ``robot.yaml`` changes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hallfiles.yaml_reader import Problem
from robots.models import RobotModel, UnknownModelError, model_from_package
from robots.package import PACKAGE_FILE, PYBULLET_DATA_PREFIX, Package, PackageError, read_package

log = logging.getLogger(__name__)

ENV_ROBOTS: Final = "HALL_TWIN_ROBOTS"
BUILTIN_DIR: Final = Path(__file__).resolve().parent
"""The repository's models folder: ``robots/<model>/robot.yaml``."""

_added: list[tuple[Path, str]] = []
_warned: set[tuple[Path, Path]] = set()


@dataclass(frozen=True)
class ModelEntry:
    """One package on the models path."""

    name: str
    """The model name (``robot.yaml``'s ``model``; the folder name when it cannot be read)."""
    root: Path
    origin: str
    """Where its folder came from: ``HALL_TWIN_ROBOTS``, ``scene FILE`` or ``built-in``."""
    problems: tuple[Problem, ...] = ()
    shadowed_by: Path | None = None


def add_model_dirs(dirs: Iterable[Path], origin: str) -> None:
    """Put folders on the models path (after ``HALL_TWIN_ROBOTS``, before the built-in ones)."""
    for path in dirs:
        entry = (Path(path).resolve(), origin)
        if all(entry[0] != known for known, _ in _added):
            _added.append(entry)


def with_env_dirs(dirs: Sequence[Path], environ: dict[str, str] | None = None) -> str:
    """``HALL_TWIN_ROBOTS`` with ``dirs`` put in front (what ``--robots-dir`` sets)."""
    env = os.environ if environ is None else environ
    current = [p for p in env.get(ENV_ROBOTS, "").split(os.pathsep) if p]
    front = [str(Path(d).resolve()) for d in dirs]
    return os.pathsep.join([*front, *(p for p in current if p not in front)])


def models_path() -> tuple[tuple[Path, str], ...]:
    """The models folders in order of precedence, each with where it came from."""
    env = [
        (Path(p).expanduser().resolve(), ENV_ROBOTS)
        for p in os.environ.get(ENV_ROBOTS, "").split(os.pathsep)
        if p
    ]
    out: list[tuple[Path, str]] = []
    for path, origin in (*env, *_added, (BUILTIN_DIR, "built-in")):
        if all(path != known for known, _ in out):
            out.append((path, origin))
    return tuple(out)


def _package_roots(folder: Path) -> list[Path]:
    if (folder / PACKAGE_FILE).is_file():
        return [folder]
    try:
        return sorted(p for p in folder.iterdir() if (p / PACKAGE_FILE).is_file())
    except OSError:
        return []


def _stamp(root: Path) -> int:
    try:
        return (root / PACKAGE_FILE).stat().st_mtime_ns
    except OSError:
        return 0


@functools.cache
def _read(root: Path, stamp_ns: int) -> Package | PackageError:
    try:
        return read_package(root)
    except PackageError as exc:
        return exc


def find_models() -> list[ModelEntry]:
    """Every package on the models path, in precedence order (shadowed ones included)."""
    entries: list[ModelEntry] = []
    first: dict[str, Path] = {}
    for folder, origin in models_path():
        for root in _package_roots(folder):
            got = _read(root, _stamp(root))
            if isinstance(got, PackageError):
                name, problems = root.name, got.problems
            else:
                name, problems = got.spec.model, ()
            shadow = first.get(name)
            if shadow is None:
                first[name] = root
            elif shadow != root and (root, shadow) not in _warned:
                _warned.add((root, shadow))
                log.warning("robot model %r in %s is shadowed by the one in %s", name, root, shadow)
            entries.append(ModelEntry(name, root, origin, problems, shadow))
    return entries


def model_names() -> tuple[str, ...]:
    """Names of every model that loads, in precedence order of their folders."""
    return tuple(e.name for e in find_models() if not e.problems and e.shadowed_by is None)


def model_entry(name: str) -> ModelEntry:
    """The package a model name means.

    Raises:
        UnknownModelError: no package of that name (the message lists the known ones).
    """
    for entry in find_models():
        if entry.name == name and entry.shadowed_by is None:
            return entry
    raise UnknownModelError(name, model_names())


def get_model(name: str) -> RobotModel:
    """The (cached) model called ``name``.

    Raises:
        UnknownModelError: no such model; the message lists the known names.
        PackageError: its package has problems (all of them).
    """
    entry = model_entry(name)
    if entry.problems:
        raise PackageError(entry.problems)
    return _model(entry.root, _stamp(entry.root))


def model_in(root: Path) -> RobotModel:
    """The model of the package in folder ``root`` (on the models path or not).

    Raises:
        PackageError: the package has problems.
    """
    root = Path(root).resolve()
    return _model(root, _stamp(root))


@functools.cache
def _model(root: Path, stamp_ns: int) -> RobotModel:
    got = _read(root, stamp_ns)
    if isinstance(got, PackageError):
        raise got
    external = (
        not root.is_relative_to(BUILTIN_DIR)
        or got.spec.urdf.startswith(PYBULLET_DATA_PREFIX)
        or not got.urdf_path.resolve().is_relative_to(root.resolve())
    )
    return model_from_package(got, external=external)
