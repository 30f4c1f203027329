"""``twin robots``: list the models found, draft a package from a URDF, check a package.

``twin robots [--json]`` lists every package on the models path with where it came from and
everything a gateway writer needs (wire order with canonical names, kinds, wire units, limits
and axes (sign conventions), rate, encoding and payload layout, standing height and the base
link that ``position_m`` refers to). ``twin robots add URDF --manufacturer NAME`` drafts a package;
``twin robots check DIR`` prints its problems one per line (exit 2) or a summary.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Final, cast

import typer
from rich.console import Console
from rich.table import Table

from robots import PackageError, RobotModel, UrdfError, find_models, get_model
from robots.draft import DraftError, draft_package, model_slug, urdf_robot_name
from robots.library import ModelEntry, model_in, models_path
from robots.package import check_package
from robots.profiles import Encoding, PositionUnit
from robots.reader import JointInfo
from twin.cli.common import EXIT_BAD_INPUT, JsonOpt

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


PAYLOAD_LAYOUT: Final[dict[str, str]] = {
    "packed_f32": "3N float32 little-endian: N positions, N velocities, N efforts, wire order",
    "packed_deg_f64": "3N float64 little-endian: N positions, N velocities, N efforts, wire order",
    "map": 'MessagePack map {"<joint>": [position, velocity, effort], ...}, every joint once',
}
SIGN_CONVENTION: Final = (
    "a positive position turns the child link about the joint's axis by the right-hand rule "
    "(prismatic: moves it along the axis), from the pose with every joint at zero; "
    "axis is in the joint's frame (URDF <axis>), axis_in_base in the base link's frame"
)
LIMIT_UNITS: Final = (
    "SI: lower/upper rad (m for prismatic), velocity_limit rad/s (m/s), "
    "effort_limit N·m (N); null: no limit"
)


def _units(model: RobotModel, joint: JointInfo) -> dict[str, str]:
    """The joint's units on the wire (position, velocity, effort)."""
    if joint.kind == "prismatic":
        return {"position": "m", "velocity": "m/s", "effort": "N"}
    unit = model.profile.position_unit
    return {"position": unit, "velocity": f"{unit}/s", "effort": "N·m"}


def _vector(value: tuple[float, ...] | None) -> list[float] | None:
    return None if value is None else [round(v, 6) + 0.0 for v in value]


def _joint_row(model: RobotModel, name: str) -> dict[str, Any]:
    joint = model.joint(name)
    return {
        "name": name,
        "canonical": model.profile.canonical_name(name),
        "kind": joint.kind,
        "wire_units": _units(model, joint),
        "lower": _finite(joint.lower),
        "upper": _finite(joint.upper),
        "velocity_limit": _finite(joint.velocity_limit),
        "effort_limit": _finite(joint.effort_limit),
        "axis": _vector(joint.axis),
        "axis_in_base": _vector(joint.axis_in_base),
        "parent_link": joint.parent_link,
        "child_link": joint.child_link,
    }


def model_row(model: RobotModel) -> dict[str, Any]:
    """What ``twin robots --json`` says of a model that loads: everything a gateway writer
    needs (wire order, units, limits, signs, standing height, the base point)."""
    profile = model.profile
    return {
        "model": model.name,
        "manufacturer": model.manufacturer,
        "dof": model.dof,
        "height_m": round(model.height_m, 4),
        "base_height_m": round(model.base_height_m, 4),
        "base_link": model.base_link,
        "position_ref": f"origin of link {model.base_link!r}, hall frame",
        "standing": {
            "height_m": model.height_m,
            "base_height_m": model.base_height_m,
            "base_orientation_xyzw": list(model.base_orientation_xyzw),
            "pose": "upright, every joint at zero; base_height_m: the base link's origin above "
            "the floor, height_m: the top of the head",
        },
        "telemetry_rate_hz": profile.rate_hz,
        "position_unit": profile.position_unit,
        "encoding": profile.encoding,
        "payload": PAYLOAD_LAYOUT.get(profile.encoding, profile.encoding),
        "sign_convention": SIGN_CONVENTION,
        "limit_units": LIMIT_UNITS,
        "external": model.external,
        "urdf": str(model.urdf_path),
        "wire_order": [_joint_row(model, name) for name in profile.joint_names],
    }


def _row(entry: ModelEntry) -> dict[str, Any]:
    row: dict[str, Any] = {"model": entry.name}
    if not entry.problems and entry.shadowed_by is None:
        try:
            row |= model_row(get_model(entry.name))
        except PackageError as exc:
            row["problems"] = [str(p) for p in exc.problems]
    row |= {"package": str(entry.root), "origin": entry.origin}
    if entry.problems:
        row["problems"] = [str(p) for p in entry.problems]
    if entry.shadowed_by is not None:
        row["shadowed_by"] = str(entry.shadowed_by)
    return row


def robots_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every robot model found (models path: --robots-dir, HALL_TWIN_ROBOTS, a scene's
    robot_dirs, robots/), with its telemetry profile and wire order."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [_row(entry) for entry in find_models()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="Robot models", title_justify="left")
    for column in (
        "model",
        "manufacturer",
        "DOF",
        "height m",
        "rate Hz",
        "unit",
        "encoding",
        "from",
    ):
        table.add_column(column)
    for row in rows:
        if "dof" not in row:
            why = row.get("problems", [f"shadowed by {row.get('shadowed_by')}"])[0]
            table.add_row(row["model"], f"[red]{why}[/]", "", "", "", "", "", row["origin"])
            continue
        table.add_row(
            row["model"] + (" (external)" if row["external"] else ""),
            row["manufacturer"],
            str(row["dof"]),
            f"{row['height_m']:.2f}",
            f"{row['telemetry_rate_hz']:g}",
            row["position_unit"],
            row["encoding"],
            row["origin"],
        )
    out.print(table)
    out.print("models path: " + ", ".join(str(p) for p, _ in models_path()))


def robots_check(
    package: Annotated[Path, typer.Argument(help="The package folder (holding robot.yaml).")],
    as_json: JsonOpt = False,
) -> None:
    """Check a robot package: robot.yaml, its URDF and meshes; every problem one line, exit 2."""
    problems = check_package(package)
    if problems:
        if as_json:
            sys.stdout.write(json.dumps({"problems": [str(p) for p in problems]}, indent=2) + "\n")
        for problem in problems:
            err.print(str(problem), soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    model = model_in(package)
    if as_json:
        sys.stdout.write(json.dumps(model_row(model), indent=2) + "\n")
        return
    mapped = len(model.profile.to_canonical)
    out.print(
        f"{package}: {model.name} by {model.manufacturer}: ok -- {model.dof} DOF, "
        f"{mapped} mapped to the canonical skeleton, {model.height_m:.3f} m tall, "
        f"{model.profile.encoding} at {model.profile.rate_hz:g} Hz"
    )


def robots_add(
    urdf: Annotated[Path, typer.Argument(help="The manufacturer's URDF file.")],
    manufacturer: Annotated[str, typer.Option("--manufacturer", help="Who makes the robot.")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Package folder (default: MODEL under the first models path)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name (default: from the URDF).")
    ] = None,
    encoding: Annotated[
        str, typer.Option("--encoding", help="packed_f32, packed_deg_f64 or map.")
    ] = "packed_f32",
    rate_hz: Annotated[float, typer.Option("--rate-hz", help="Telemetry rate.")] = 100.0,
    position_unit: Annotated[
        str | None, typer.Option("--position-unit", help="rad or deg (default: the encoding's).")
    ] = None,
    up_axis: Annotated[str, typer.Option("--up-axis", help="z, or y for a Y-up URDF.")] = "z",
    scale: Annotated[float, typer.Option("--scale", help="globalScaling to load with.")] = 1.0,
    link: Annotated[bool, typer.Option("--link", help="Symlink the meshes, do not copy.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing package.")] = False,
) -> None:
    """Draft a robot package from a URDF: meshes copied, canonical mapping proposed, standing
    height measured; review robot.yaml, then `twin robots check`."""
    problems = []
    if encoding not in ("packed_f32", "packed_deg_f64", "map"):
        problems.append(f"--encoding {encoding!r}: expected packed_f32, packed_deg_f64 or map")
    if position_unit not in (None, "rad", "deg"):
        problems.append(f"--position-unit {position_unit!r}: expected rad or deg")
    if up_axis not in ("z", "y"):
        problems.append(f"--up-axis {up_axis!r}: expected z or y")
    if not (math.isfinite(rate_hz) and 0.0 < rate_hz <= 10_000.0):
        problems.append(f"--rate-hz {rate_hz:g}: expected 0 < rate <= 10000")
    if not (math.isfinite(scale) and 0.0 < scale <= 100.0):
        problems.append(f"--scale {scale:g}: expected 0 < scale <= 100")
    if problems:
        for line in problems:
            err.print(line, soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    name = model or model_slug(urdf_robot_name(urdf))
    target = out_dir if out_dir is not None else models_path()[0][0] / name
    try:
        draft = draft_package(
            urdf,
            target,
            manufacturer=manufacturer,
            model=name,
            encoding=cast(Encoding, encoding),  # checked above
            position_unit=cast(PositionUnit | None, position_unit),
            rate_hz=rate_hz,
            up_axis=up_axis,
            scale=scale,
            link=link,
            force=force,
        )
    except (DraftError, UrdfError, OSError, ValueError) as exc:
        text = str(exc) if isinstance(exc, DraftError | UrdfError) else f"{urdf}: {exc}"
        err.print(text, soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    proposal = draft.proposal
    out.print(
        f"drafted [bold]{draft.spec.model}[/] in {draft.root}: "
        f"{len(draft.spec.telemetry.wire_order)} movable joints, {draft.meshes} mesh files, "
        "standing "
        f"{draft.height_m:.3f} m"
    )
    table = Table(title="Proposed canonical mapping (review it)", title_justify="left")
    for column in ("joint", "canonical", "how"):
        table.add_column(column)
    for vendor, canonical in proposal.mapping.items():
        table.add_row(vendor, canonical, proposal.notes.get(vendor, "name"))
    for vendor, why in proposal.unmapped.items():
        table.add_row(vendor, "[yellow]-[/]", why)
    out.print(table)
    for filename in draft.missing_meshes:
        err.print(
            f"{urdf}: mesh {filename!r} not found; copy it in by hand", soft_wrap=True, markup=False
        )
    out.print(f"next: review {draft.root / 'robot.yaml'}, then `twin robots check {draft.root}`")
    problems_after = check_package(draft.root)
    if problems_after:
        for problem in problems_after:
            err.print(str(problem), soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)


def register(app: typer.Typer) -> None:
    """Add ``twin robots``, ``twin robots add`` and ``twin robots check``."""
    robots_app = typer.Typer(
        help="Robot models: list them, draft a package from a URDF, check a package.",
        invoke_without_command=True,
    )
    robots_app.callback(invoke_without_command=True)(robots_list)
    robots_app.command("add")(robots_add)
    robots_app.command("check")(robots_check)
    app.add_typer(robots_app, name="robots")
