"""Drafting a robot package from a manufacturer's URDF (``twin robots add``).

:func:`propose_canonical` reads joint names the way manufacturers write them
(``left_hip_pitch_joint``, ``L_KNEE``, ``LeftAnklePitch``, ``WAIST_Y``) and proposes the
canonical joint each one is, falling back to the joint's URDF axis for the rotation when the
name gives none; :func:`draft_package` copies (or links) the URDF and its meshes into a new
package folder with every mesh path relative, measures the standing height in PyBullet and
writes a ``robot.yaml`` for the user to review.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from robots.canonical import is_canonical
from robots.models import measure_standing_extent
from robots.package import (
    MESH_RE,
    PACKAGE_FILE,
    UP_AXES,
    PackageFile,
    Standing,
    Telemetry,
    resolve_mesh,
)
from robots.package_writer import render_package
from robots.profiles import Encoding, PositionUnit
from robots.reader import JointInfo, parse_urdf

log = logging.getLogger(__name__)

_SIDES: Final = {"l": "left", "left": "left", "r": "right", "right": "right"}
_PARTS: Final = {
    "hip": "hip",
    "knee": "knee",
    "ankle": "ankle",
    "ank": "ankle",
    "shoulder": "shoulder",
    "sho": "shoulder",
    "shldr": "shoulder",
    "elbow": "elbow",
    "elb": "elbow",
    "wrist": "wrist",
    "wri": "wrist",
    "waist": "spine",
    "torso": "spine",
    "trunk": "spine",
    "spine": "spine",
    "chest": "spine",
    "lumbar": "spine",
    "neck": "neck",
    "head": "neck",
}
_AXES: Final = {
    "yaw": "yaw",
    "roll": "roll",
    "pitch": "pitch",
    "y": "yaw",
    "r": "roll",
    "p": "pitch",
    "rot": "yaw",
    "rotation": "yaw",
    "twist": "yaw",
    "abad": "roll",
    "abduction": "roll",
    "adduction": "roll",
    "flex": "pitch",
    "flexion": "pitch",
}
_NOISE: Final = frozenset({"joint", "jnt", "j", "link", "motor", "actuator"})
_ONE_AXIS: Final = frozenset({"knee", "elbow"})
_CENTRE: Final = frozenset({"spine", "neck"})


def name_tokens(name: str) -> list[str]:
    """``LeftAnklePitch`` -> ``[left, ankle, pitch]``; ``L_HIP_Y`` -> ``[l, hip, y]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t and t not in _NOISE]


def _axis_from_urdf(vector: tuple[float, float, float]) -> str | None:
    magnitudes = [abs(v) for v in vector]
    biggest = max(magnitudes)
    if biggest == 0.0 or sorted(magnitudes)[1] > 0.3 * biggest:
        return None  # a skewed axis: no honest guess
    return ("roll", "pitch", "yaw")[magnitudes.index(biggest)]


def propose_one(name: str, axis_xyz: tuple[float, float, float] | None) -> tuple[str | None, str]:
    """The canonical joint a vendor joint name suggests, and how it was read (for a comment)."""
    tokens = name_tokens(name)
    side = next((_SIDES[t] for t in tokens if t in ("left", "right")), None)
    if side is None and tokens and tokens[0] in _SIDES:
        side = _SIDES[tokens[0]]
    if side is None and len(tokens) > 1 and tokens[-1] in ("l", "r"):
        side = _SIDES[tokens.pop()]
    part_at = next((i for i, t in enumerate(tokens) if t in _PARTS), None)
    if part_at is None:
        return None, "no body part in the name"
    part = _PARTS[tokens[part_at]]
    after = tokens[part_at + 1 :]
    axis = next((_AXES[t] for t in after if t in _AXES), None)
    how = "from the name"
    if part in _ONE_AXIS:
        candidate = f"{side}_{part}" if side else None
    else:
        if axis is None and axis_xyz is not None:
            axis = _axis_from_urdf(axis_xyz)
            how = "rotation from the URDF axis"
        if axis is None:
            return None, "no rotation axis in the name or URDF"
        if part in _CENTRE:
            candidate = f"{part}_{axis}"
        else:
            candidate = f"{side}_{part}_{axis}" if side else None
    if candidate is None:
        return None, "no side (left/right) in the name"
    if not is_canonical(candidate):
        return None, f"{candidate} is no canonical joint"
    return candidate, how


@dataclass(frozen=True)
class Proposal:
    """The proposed canonical mapping of a URDF's joints."""

    mapping: dict[str, str]
    notes: dict[str, str]
    unmapped: dict[str, str]
    """Vendor joint -> why it was left unmapped."""


def _joint_axes(urdf_path: Path) -> dict[str, tuple[float, float, float]]:
    root = ET.fromstring(urdf_path.read_bytes().rstrip(b"\x00"))
    axes: dict[str, tuple[float, float, float]] = {}
    for joint in root.findall("joint"):
        element = joint.find("axis")
        text = element.get("xyz", "1 0 0") if element is not None else "1 0 0"
        try:
            x, y, z = (float(v) for v in text.split())
        except ValueError:
            continue
        axes[joint.get("name", "")] = (x, y, z)
    return axes


def propose_canonical(
    joints: Sequence[JointInfo], axes: Mapping[str, tuple[float, float, float]]
) -> Proposal:
    """Propose the canonical joint of each rotational joint; the first claim of a canonical
    joint wins, later ones are left unmapped with the reason."""
    mapping: dict[str, str] = {}
    notes: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for joint in joints:
        if joint.kind not in ("revolute", "continuous"):
            unmapped[joint.name] = f"{joint.kind} joint"
            continue
        canonical, how = propose_one(joint.name, axes.get(joint.name))
        if canonical is None:
            unmapped[joint.name] = how
        elif canonical in claimed:
            unmapped[joint.name] = f"{canonical} already mapped from {claimed[canonical]}"
        else:
            claimed[canonical] = joint.name
            mapping[joint.name] = canonical
            notes[joint.name] = how if how != "from the name" else ""
    return Proposal(mapping, {k: v for k, v in notes.items() if v}, unmapped)


@dataclass(frozen=True)
class Draft:
    """What ``twin robots add`` made."""

    root: Path
    spec: PackageFile
    proposal: Proposal
    meshes: int
    missing_meshes: tuple[str, ...]
    height_m: float
    """Measured standing height (soles to head top, every joint at zero)."""


class DraftError(ValueError):
    """The URDF cannot be drafted into a package (the message says why)."""


def urdf_robot_name(urdf: Path) -> str:
    """The ``<robot name>`` of a URDF, or its file stem when it has none or cannot be read."""
    try:
        return ET.fromstring(Path(urdf).read_bytes().rstrip(b"\x00")).get("name") or urdf.stem
    except (OSError, ET.ParseError):
        return Path(urdf).stem


def model_slug(name: str) -> str:
    """A model name from free text: ``Acme A-1`` -> ``acme_a_1``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return slug if slug and slug[0].isalnum() else f"robot_{slug}".strip("_")


def draft_package(
    urdf: Path,
    out: Path,
    *,
    manufacturer: str,
    model: str | None = None,
    encoding: Encoding = "packed_f32",
    position_unit: PositionUnit | None = None,
    rate_hz: float = 100.0,
    up_axis: str = "z",
    scale: float = 1.0,
    link: bool = False,
    force: bool = False,
) -> Draft:
    """Copy (``link``: symlink) ``urdf`` and its meshes into package folder ``out`` and write a
    reviewed-to-be ``robot.yaml``.

    Raises:
        DraftError: the URDF cannot be read, or ``out`` already holds a package (no ``force``).
        UrdfError: the URDF is malformed.
    """
    urdf = Path(urdf).resolve()
    if not urdf.is_file():
        raise DraftError(f"{urdf}: no such file")
    base, joints, _ = parse_urdf(urdf)
    text = urdf.read_bytes().rstrip(b"\x00").decode("utf-8", errors="replace")
    name = model or model_slug(urdf_robot_name(urdf))
    if (out / PACKAGE_FILE).exists() and not force:
        raise DraftError(f"{out}: already holds a package ({PACKAGE_FILE}); --force replaces it")
    out.mkdir(parents=True, exist_ok=True)
    # the folder holding the URDF's "package", for package:// references
    search_root = urdf.parent.parent if urdf.parent.name in ("urdf", "robots") else urdf.parent
    sources: dict[str, Path] = {}
    missing: list[str] = []
    for match in MESH_RE.finditer(text):
        filename = match.group(2).strip()
        found = resolve_mesh(filename, urdf.parent, search_root)
        if found is None:
            missing.append(filename)
        else:
            sources[filename] = found
    common = Path(os.path.commonpath([p.parent for p in sources.values()])) if sources else None
    placed: dict[str, str] = {}
    for filename, source in sources.items():
        assert common is not None
        relative = Path("meshes") / source.relative_to(common)
        placed[filename] = relative.as_posix()
        _place(source, out / relative, link)
        for extra in _companions(source):  # .mtl files and the textures they name
            _place(extra, out / relative.parent / extra.relative_to(source.parent), link)

    def relative_path(match: re.Match[str]) -> str:
        filename = match.group(2).strip()
        new = placed.get(filename, filename)
        offset = match.start()
        start, end = match.span(2)
        whole = match.group(0)
        return whole[: start - offset] + new + whole[end - offset :]

    urdf_out = out / f"{name}.urdf"
    urdf_out.write_text(MESH_RE.sub(relative_path, text), encoding="utf-8")
    orientation = UP_AXES[up_axis]
    low, high = measure_standing_extent(urdf_out, orientation, scale)
    proposal = propose_canonical(joints, _joint_axes(urdf))
    unit = position_unit or ("deg" if encoding == "packed_deg_f64" else "rad")
    spec = PackageFile(
        model=name,
        manufacturer=manufacturer,
        urdf=urdf_out.name,
        scale=scale,
        up_axis="y" if up_axis == "y" else "z",
        base_link=base,
        standing=Standing(height_m=round(high - low, 4), base_height_m=round(-low, 4)),
        telemetry=Telemetry(
            encoding=encoding,
            position_unit=unit,
            rate_hz=rate_hz,
            wire_order=tuple(j.name for j in joints),
        ),
        canonical=proposal.mapping,
    )
    header = [
        f"{name} by {manufacturer}: drafted by `twin robots add` from {urdf.name}.",
        "Review it: the canonical mapping (and its signs), the wire order your gateway sends,",
        "the encoding, unit and rate; then run `twin robots check` on this folder.",
        f"Standing height measured in PyBullet with every joint at zero: {high - low:.3f} m.",
    ]
    unmapped = [f"{j} ({why})" for j, why in proposal.unmapped.items()]
    (out / PACKAGE_FILE).write_text(
        render_package(spec, header=header, unmapped=unmapped, notes=proposal.notes),
        encoding="utf-8",
    )
    log.info("drafted %s in %s", name, out)
    return Draft(out, spec, proposal, len(sources), tuple(missing), round(high - low, 4))


_REFERENCE_RE: Final = re.compile(r"^\s*(mtllib|map_\w+|bump|disp|norm)\s+(.+?)\s*$", re.M)


def _companions(mesh: Path) -> list[Path]:
    """Files a mesh needs beside it: an OBJ's material libraries and the textures they name
    (relative paths below the mesh's folder), and same-named siblings."""
    found: list[Path] = []
    todo = [mesh]
    while todo:
        current = todo.pop()
        if current.suffix.lower() not in (".obj", ".mtl"):
            continue
        try:
            text = current.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for match in _REFERENCE_RE.finditer(text):
            name = match.group(2).split()[-1]
            path = (current.parent / name).resolve()
            if path.is_file() and path.is_relative_to(mesh.parent) and path not in found:
                found.append(path)
                todo.append(path)
    for sibling in mesh.parent.glob(f"{mesh.stem}.*"):
        if sibling != mesh and sibling.is_file() and sibling.resolve() not in found:
            found.append(sibling.resolve())
    return found


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    if link:
        target.symlink_to(source)
    else:
        shutil.copy2(source, target)
