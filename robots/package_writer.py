"""Writing ``robot.yaml``: the text of a package file, laid out and commented for a reviewer.

Used by the generator of the built-in models and by ``twin robots add`` (:mod:`robots.draft`).
Every value is written with :func:`yaml.safe_dump` so names that look like numbers or booleans
stay text; comments say what each block is for and, for a draft, what needs review.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from robots.package import FORMAT_VERSION, PackageFile, Standing


def _scalar(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def render_package(
    spec: PackageFile,
    *,
    header: Sequence[str] = (),
    unmapped: Sequence[str] = (),
    notes: Mapping[str, str] | None = None,
) -> str:
    """``robot.yaml`` text for ``spec``; ``header``: comment lines on top; ``unmapped``: joints
    left out of the canonical mapping (listed as a comment); ``notes``: a comment per mapped
    vendor joint (how the mapping was proposed)."""
    notes = notes or {}
    out = [f"# {line}".rstrip() for line in header]
    out += [
        f"format: {FORMAT_VERSION}",
        f"model: {_scalar(spec.model)}",
        f"manufacturer: {_scalar(spec.manufacturer)}",
        f"urdf: {_scalar(spec.urdf)}",
    ]
    if spec.scale != 1.0:
        out.append(f"scale: {spec.scale!r}")
    if spec.up_axis != "z":
        out.append(f"up_axis: {spec.up_axis}")
    if spec.base_link is not None:
        out.append(
            f"base_link: {_scalar(spec.base_link)}  # position_m in base/<robot> is its origin"
        )
    if isinstance(spec.standing, Standing):
        out += [
            "standing:  # every joint at zero, metres above the soles",
            f"  height_m: {spec.standing.height_m!r}",
            f"  base_height_m: {spec.standing.base_height_m!r}",
        ]
    else:
        out.append("standing: measure  # measured in PyBullet at load")
    t = spec.telemetry
    out += [
        "telemetry:",
        f"  encoding: {t.encoding}",
        f"  position_unit: {t.position_unit}",
        f"  rate_hz: {t.rate_hz!r}",
        "  wire_order:  # every movable joint once, in payload order",
        *(f"    - {_scalar(name)}" for name in t.wire_order),
    ]
    if spec.canonical:
        out.append("canonical:  # vendor joint: canonical joint")
        for vendor, canonical in spec.canonical.items():
            note = notes.get(vendor)
            line = f"  {_scalar(vendor)}: {_scalar(canonical)}"
            out.append(f"{line}  # {note}" if note else line)
    else:
        out.append("canonical: {}")
    if unmapped:
        out.append("# not mapped (kept under their own names): " + ", ".join(unmapped))
    return "\n".join(out) + "\n"
