"""Robot model packages: a folder with a URDF, its meshes and one ``robot.yaml`` (format in
docs/adding-a-robot.md).

``robot.yaml`` says what the URDF alone does not: the model's name and manufacturer, how it
stands (scale, up axis, base link, standing heights or "measure them"), its telemetry profile
(encoding, unit, rate, wire order) and the mapping of its joints onto the canonical skeleton.
:func:`load_package` reads and checks a package into a :class:`~robots.models.RobotModel`;
:func:`check_package` returns every problem at once, each as ``FILE:LINE: KEY.PATH: reason``
(the same lines scenes give), so ``twin robots check`` can list them all.

Mesh references (``<mesh filename=...>``) may be relative to the URDF, ``package://NAME/...``
(resolved inside the package folder) or ``file://``/absolute paths. PyBullet resolves only
paths relative to the URDF, so a package whose URDF uses anything else is loaded from a copy
with every mesh path made absolute (:attr:`RobotModel.load_path`).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
from robots.canonical import CANONICAL_JOINT_SET, CANONICAL_JOINTS
from robots.profiles import Encoding, PositionUnit, TelemetryProfile
from robots.reader import JointInfo, UrdfError, parse_urdf

log = logging.getLogger(__name__)

PACKAGE_FILE: Final = "robot.yaml"
FORMAT_VERSION: Final = 1
PYBULLET_DATA_PREFIX: Final = "pybullet_data:"
"""``urdf: pybullet_data:humanoid/humanoid.urdf`` names a file of the installed pybullet_data."""

Quaternion = tuple[float, float, float, float]
IDENTITY_XYZW: Final[Quaternion] = (0.0, 0.0, 0.0, 1.0)
Y_UP_TO_Z_UP_XYZW: Final[Quaternion] = (math.sin(math.pi / 4.0), 0.0, 0.0, math.cos(math.pi / 4.0))
"""+90 degrees about X: a Y-up model's +Y becomes +Z (and its +Z becomes -Y); X stays forward."""
UP_AXES: Final = {"z": IDENTITY_XYZW, "y": Y_UP_TO_Z_UP_XYZW}
MESH_RE: Final = re.compile(r"<mesh\b[^>]*?\bfilename\s*=\s*([\"'])(.*?)\1", re.S)
_ENCODING_UNIT: Final[dict[str, str]] = {"packed_f32": "rad", "packed_deg_f64": "deg"}
"""Encodings that fix the unit of rotational positions (``map`` carries either)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Standing(_Strict):
    """How the model stands with every joint at zero (after ``scale`` and ``up_axis``)."""

    height_m: float = Field(gt=0.0, le=10.0)
    """Soles to the top of the head."""
    base_height_m: float = Field(gt=0.0, le=10.0)
    """Soles to the base link's origin: where ``position_m`` is when the robot stands."""


class Telemetry(_Strict):
    """What the robot's gateway puts on the wire."""

    encoding: Encoding
    position_unit: PositionUnit = "rad"
    rate_hz: float = Field(gt=0.0, le=10_000.0)
    wire_order: tuple[str, ...]
    """Vendor joint names in the order the payload carries them: every movable joint once."""


class PackageFile(_Strict):
    """The schema of ``robot.yaml``."""

    format: Literal[1] = FORMAT_VERSION
    model: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=64)
    manufacturer: str = Field(min_length=1, max_length=120)
    urdf: str = Field(min_length=1)
    scale: float = Field(default=1.0, gt=0.0, le=100.0)
    """``globalScaling`` the URDF is loaded with."""
    up_axis: Literal["z", "y"] = "z"
    base_link: str | None = None
    """The URDF's root link (checked); ``position_m`` in ``base/<robot>`` is its origin."""
    standing: Standing | Literal["measure"] = "measure"
    telemetry: Telemetry
    canonical: dict[str, str] = Field(default_factory=dict)
    """Vendor joint -> canonical joint; joints not named keep their vendor name."""


class PackageError(Exception):
    """A robot package could not be loaded; ``problems`` holds every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class MeshRef:
    """One ``<mesh filename=...>`` of a URDF: as written, its line, and the file it names."""

    filename: str
    line: int
    path: Path | None
    """The resolved file, or None when no candidate exists."""


@dataclass(frozen=True)
class Package:
    """A checked package: its file, URDF, parsed joints and profile (not yet measured)."""

    root: Path
    spec: PackageFile
    urdf_path: Path
    base_link: str
    joints: tuple[JointInfo, ...]
    links: tuple[str, ...]
    meshes: tuple[MeshRef, ...]
    profile: TelemetryProfile

    @property
    def orientation_xyzw(self) -> Quaternion:
        """Base orientation that stands the model Z-up."""
        return UP_AXES[self.spec.up_axis]


def resolve_urdf(root: Path, urdf: str) -> Path:
    """The URDF file a package names (relative to the package, or in pybullet_data)."""
    if urdf.startswith(PYBULLET_DATA_PREFIX):
        import pybullet_data

        return Path(pybullet_data.getDataPath()) / urdf.removeprefix(PYBULLET_DATA_PREFIX)
    path = Path(urdf)
    return path if path.is_absolute() else root / path


def resolve_mesh(filename: str, urdf_dir: Path, root: Path) -> Path | None:
    """The file a URDF mesh reference names, or None when none of the candidates exists.

    ``package://NAME/rest`` is looked up as ``root/rest``, ``root/NAME/rest`` and, for a
    package inside a ROS workspace, ``root/../NAME/rest``; ``file://`` and absolute paths are
    taken as they are; anything else is relative to the URDF's folder."""
    candidates: list[Path]
    if filename.startswith("package://"):
        name, _, rest = filename.removeprefix("package://").partition("/")
        candidates = [root / rest, root / name / rest, root.parent / name / rest]
    elif filename.startswith("file://"):
        candidates = [Path(filename.removeprefix("file://"))]
    else:
        path = Path(filename)
        candidates = [path if path.is_absolute() else urdf_dir / path]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def mesh_refs(urdf_path: Path, root: Path) -> tuple[MeshRef, ...]:
    """Every mesh reference of a URDF file, resolved (:func:`resolve_mesh`)."""
    text = urdf_path.read_bytes().rstrip(b"\x00").decode("utf-8", errors="replace")
    refs = []
    for match in MESH_RE.finditer(text):
        filename = match.group(2).strip()
        line = text.count("\n", 0, match.start()) + 1
        refs.append(MeshRef(filename, line, resolve_mesh(filename, urdf_path.parent, root)))
    return tuple(refs)


def read_package(root: Path) -> Package:
    """Read and check the package in folder ``root``.

    Raises:
        PackageError: every problem of ``robot.yaml``, its URDF and meshes.
    """
    root = Path(root)
    source = root / PACKAGE_FILE
    shown = str(source)
    try:
        data, lines = read_mapping(read_file_text(source, shown), shown, "robot package")
    except YamlProblem as exc:
        raise PackageError([exc.problem]) from None
    try:
        spec = PackageFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, reason = reason_for(error, PackageFile)
            problems.append(Problem(shown, line_for(loc, lines), format_path(loc), reason))
        raise PackageError(sorted_problems(problems)) from None

    def problem(loc: KeyPath, reason: str) -> Problem:
        return Problem(shown, line_for(loc, lines), format_path(loc), reason)

    urdf_path = resolve_urdf(root, spec.urdf)
    try:
        base, joints, links = parse_urdf(urdf_path)
    except FileNotFoundError:
        raise PackageError([problem(("urdf",), f"no such file {str(urdf_path)!r}")]) from None
    except (UrdfError, OSError) as exc:
        raise PackageError([problem(("urdf",), str(exc))]) from None
    meshes = mesh_refs(urdf_path, root)
    problems = [
        Problem(str(urdf_path), m.line, "", f"mesh {m.filename!r}: no such file")
        for m in meshes
        if m.path is None
    ]
    problems += [problem(loc, reason) for loc, reason in _profile_issues(spec, base, joints)]
    if problems:
        raise PackageError(sorted_problems(problems))
    telemetry = spec.telemetry
    profile = TelemetryProfile(
        manufacturer=spec.manufacturer,
        joint_names=telemetry.wire_order,
        position_unit=telemetry.position_unit,
        rate_hz=telemetry.rate_hz,
        encoding=telemetry.encoding,
        to_canonical=dict(spec.canonical),
    )
    return Package(root, spec, urdf_path, base, joints, links, meshes, profile)


def check_package(root: Path) -> list[Problem]:
    """Every problem of the package in ``root`` (empty when it loads)."""
    try:
        read_package(root)
    except PackageError as exc:
        return list(exc.problems)
    return []


def _profile_issues(
    spec: PackageFile, base: str, joints: Sequence[JointInfo]
) -> Iterator[tuple[KeyPath, str]]:
    """What is wrong between ``robot.yaml`` and the URDF's joints (as key path, reason)."""
    movable = {j.name: j for j in joints}
    urdf = Path(spec.urdf).name
    if spec.base_link is not None and spec.base_link != base:
        yield ("base_link",), f"{spec.base_link!r} is not the root link of {urdf} ({base!r} is)"
    wire = spec.telemetry.wire_order
    counts = Counter(wire)
    for i, name in enumerate(wire):
        if name not in movable:
            yield ("telemetry", "wire_order", i), f"{name!r} is not a movable joint of {urdf}"
        elif counts[name] > 1 and wire.index(name) != i:
            yield ("telemetry", "wire_order", i), f"{name!r} is listed more than once"
    missing = [j.name for j in joints if j.name not in counts]
    if missing:
        yield (
            ("telemetry", "wire_order"),
            f"movable joints of {urdf} missing (every one goes on the wire once): "
            + ", ".join(missing),
        )
    unit = _ENCODING_UNIT.get(spec.telemetry.encoding)
    if unit is not None and spec.telemetry.position_unit != unit:
        yield (
            ("telemetry", "position_unit"),
            f"{spec.telemetry.encoding} carries {unit}, not {spec.telemetry.position_unit}",
        )
    spherical = [j.name for j in joints if j.kind == "spherical"]
    if spherical and spec.telemetry.encoding != "map":
        yield (
            ("telemetry", "encoding"),
            f"spherical joints ({', '.join(spherical[:3])}) do not fit a packed encoding; use map",
        )
    claimed: dict[str, str] = {}
    for vendor, canonical in spec.canonical.items():
        if vendor not in movable:
            yield ("canonical", vendor), f"{vendor!r} is not a movable joint of {urdf}"
        if canonical not in CANONICAL_JOINT_SET:
            hint = difflib.get_close_matches(canonical, CANONICAL_JOINTS, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            yield ("canonical", vendor), f"{canonical!r} is not a canonical joint{more}"
        elif canonical in claimed:
            yield (
                ("canonical", vendor),
                f"canonical joint {canonical!r} mapped twice (also by {claimed[canonical]!r})",
            )
        else:
            claimed[canonical] = vendor


_RESOLVED_DIR: tempfile.TemporaryDirectory[str] | None = None


def loadable_urdf(package: Package) -> Path:
    """The URDF PyBullet should load: the package's own when it has no meshes, else a copy (in a
    per-process temporary folder) with every mesh path absolute, which PyBullet resolves
    whatever the reference looked like, and which stays loadable when copied elsewhere (the
    preview writes a jointless copy of it)."""
    global _RESOLVED_DIR
    if not package.meshes:
        return package.urdf_path
    text = package.urdf_path.read_bytes().rstrip(b"\x00").decode("utf-8")

    def absolute(match: re.Match[str]) -> str:
        filename = match.group(2).strip()
        found = resolve_mesh(filename, package.urdf_path.parent, package.root)
        start, end = match.span(2)
        whole = match.group(0)
        offset = match.start()
        new = str(found) if found is not None else filename
        return whole[: start - offset] + new + whole[end - offset :]

    resolved = MESH_RE.sub(absolute, text)
    if _RESOLVED_DIR is None:
        _RESOLVED_DIR = tempfile.TemporaryDirectory(prefix="hall-twin-urdf-")
    digest = hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:12]
    path = Path(_RESOLVED_DIR.name) / f"{package.spec.model}-{digest}.urdf"
    if not path.exists():
        path.write_text(resolved, encoding="utf-8")
    log.debug("%s: loading %s (mesh paths made absolute)", package.spec.model, path)
    return path
