"""``twin scene check``: a scene's robots per manufacturer, benches, cranes, panels and
sensors."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import JsonOpt, SceneArg, load_or_exit
from twin.cli.summary import scene_summary

out = Console(highlight=False)


def print_summary(summary: dict[str, Any]) -> None:
    """The scene summary as tables."""
    floor = summary["floor"]
    out.print(
        f"[bold]{summary['scene']}[/]: floor {floor['size_m'][0]:g} x {floor['size_m'][1]:g} m, "
        f"ceiling {floor['ceiling_m']:g} m"
    )
    robots = Table(title="Robots per manufacturer", title_justify="left")
    for column in ("manufacturer", "robots", "model", "DOF", "rate Hz", "ids / tasks"):
        robots.add_column(column)
    for maker in summary["manufacturers"]:
        mine = [r for r in summary["robots"] if r["manufacturer"] == maker["name"]]
        for model in maker["models"]:
            of_model = [r for r in mine if r["model"] == model]
            robots.add_row(
                maker["name"],
                str(len(of_model)),
                model,
                str(of_model[0]["dof"]),
                f"{of_model[0]['telemetry_rate_hz']:g}",
                ", ".join(f"{r['id']} ({r['task']})" for r in of_model),
            )
    out.print(robots)
    benches = Table(title="Workbenches", title_justify="left")
    for column in ("bench", "size m", "height m", "items"):
        benches.add_column(column)
    for bench in summary["benches"]:
        benches.add_row(
            bench["id"],
            "{:g} x {:g}".format(*bench["size_m"]),
            f"{bench['height_m']:g}",
            ", ".join(f"{i['id']} ({i['kind']})" for i in bench["items"]),
        )
    out.print(benches)
    cranes = Table(title="Gantry cranes", title_justify="left")
    for column in ("crane", "bridge x m", "trolley y m", "hook z m", "load kg"):
        cranes.add_column(column)
    for crane in summary["cranes"]:
        cranes.add_row(
            crane["id"],
            "{:g}..{:g}".format(*crane["bridge_travel_m"]),
            "{:g}..{:g}".format(*crane["trolley_travel_m"]),
            "{:g}..{:g}".format(*crane["hoist_travel_m"]),
            f"{crane['load_kg']:g}" if crane["load_kg"] is not None else "-",
        )
    out.print(cranes)
    panels = ", ".join(f"{p['id']} ({', '.join(p['shows'])})" for p in summary["panels"])
    sensors = ", ".join(f"{s['id']} ({s['kind']})" for s in summary["sensors"])
    out.print(f"LED panels: {panels or 'none'}")
    out.print(f"Sensors: {sensors or 'none'}")
    out.print(f"Data hub: {summary['hub']['id']}")


def scene_check(scene: SceneArg = None, as_json: JsonOpt = False) -> None:
    """Validate a scene; print its robots per manufacturer, benches, cranes and panels."""
    summary = scene_summary(load_or_exit(scene))
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_summary(summary)


def register(app: typer.Typer) -> None:
    """Add ``twin scene check``."""
    scene_app = typer.Typer(help="Validate and inspect hall scene files.", no_args_is_help=True)
    scene_app.command("check")(scene_check)
    app.add_typer(scene_app, name="scene")
