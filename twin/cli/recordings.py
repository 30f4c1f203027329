"""``twin replay``, ``twin failures`` and ``twin resim``: the commands on recordings.

A bad file or an unknown id prints one line and exits with status 2; never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import EXIT_BAD_INPUT, JsonOpt
from twin.emulator.resim import ResimInputError, parse_overrides, resimulate
from twin.failures.offline import failure_report
from twin.record.damage import collect_damage, damage_lines
from twin.record.recording import RecordingError

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def replay_cmd(
    recording: Annotated[Path, typer.Argument(help="An MCAP file from `twin live --record`.")],
    event: Annotated[
        str | None,
        typer.Option("--event", help="Centre on this event id (as `twin failures` lists)."),
    ] = None,
    at: Annotated[float | None, typer.Option("--at", help="Start here (seconds).")] = None,
    before: Annotated[
        float | None, typer.Option("--before", min=0.0, help="Seconds before the event/--at.")
    ] = None,
    after: Annotated[
        float | None, typer.Option("--after", min=0.0, help="Seconds after the event/--at.")
    ] = None,
    speed: Annotated[float, typer.Option(min=0.1, max=10.0, help="Playback speed.")] = 1.0,
    loop: Annotated[bool, typer.Option("--loop", help="Loop the chosen window.")] = False,
    clip: Annotated[
        Path | None, typer.Option("--clip", help="Render the window to this MP4 and exit.")
    ] = None,
    size: Annotated[str, typer.Option(help="Window or video size.")] = "1280x720",
    ghost: Annotated[
        bool,
        typer.Option(
            "--ghost/--no-ghost",
            help="Draw the twin's prediction as a cyan ghost over robots in divergence.",
        ),
    ] = True,
) -> None:
    """Replay a recording in the viewer: scrub, jump to events, or cut a clip (--clip)."""
    from twin.cli import replay

    replay.run_replay(
        recording, event_id=event, at_s=at, before_s=before, after_s=after, speed=speed,
        loop=loop, clip=clip, size=size, ghost=ghost,
    )  # fmt: skip


def failures_cmd(
    recording: Annotated[Path, typer.Argument(help="A recording (twin live --record).")],
    as_json: JsonOpt = False,
    events: Annotated[
        bool, typer.Option("--events", help="List every failure event, not the incidents.")
    ] = False,
) -> None:
    """List a recording's incidents (a cause and its consequences) or, with --events, every
    failure: falls, joints over limit, efforts, stale data, collisions, divergences, drops.
    --json gives both."""
    print_failures(recording, as_json, events)


def resim_cmd(
    recording: Annotated[Path, typer.Argument(help="A recording (twin live --record).")],
    at: Annotated[float, typer.Option("--at", help="Re-simulate from here (seconds).")],
    seconds: Annotated[
        float, typer.Option("--seconds", help="Simulated seconds to run on for.")
    ] = 10.0,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="friction=F or mass_scale=K (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the emulated hall.")] = 0,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Output MCAP (default: <REC>-resim-<at>s.mcap beside it)."),
    ] = None,
) -> None:
    """What-if: re-simulate a recording from --at with physics, into a new recording."""
    run_resim(recording, at, seconds, settings or [], seed, record)


def print_failures(path: Path, as_json: bool, events: bool = False) -> None:
    """``twin failures``: print the incidents or events (table) or both (JSON); exit 2 for a
    bad file."""
    try:
        report = failure_report(path)
    except RecordingError as exc:
        err.print(f"twin failures: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if report["warning"]:
        err.print(f"twin failures: warning: {report['warning']}", markup=False)
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report)).decode() + "\n")
        return
    style = {"critical": "bold red", "error": "red", "warning": "yellow"}
    source = report["source"]
    if not events:
        incidents = report["incidents"]
        table = Table(
            title=f"{path.name}: {len(incidents)} incident{'s' if len(incidents) != 1 else ''}"
            f" from {len(report['events'])} failure events ({source}; --events lists them)",
            title_justify="left",
        )
        for column in (
            "id",
            "t s",
            "robot",
            "manufacturer",
            "cause",
            "severity",
            "then",
            "details",
        ):
            table.add_column(column)
        for row in incidents:
            then = ", ".join(f"{n} {kind}" for kind, n in row["consequences"].items())
            table.add_row(
                row["id"],
                f"{row['t_s']:.3f}",
                row["robot"],
                row["manufacturer"],
                row["cause"],
                f"[{style.get(row['severity'], '')}]{row['severity']}[/]",
                then or "-",
                row["details"],
            )
        out.print(table)
        return
    rows = report["events"]
    table = Table(
        title=f"{path.name}: {len(rows)} failure{'s' if len(rows) != 1 else ''} ({source})",
        title_justify="left",
    )
    for column in ("id", "t s", "robot", "manufacturer", "kind", "severity", "details"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            f"{row['t_s']:.3f}",
            row["robot"],
            row["manufacturer"],
            row["kind"],
            f"[{style.get(row['severity'], '')}]{row['severity']}[/]",
            row["details"],
        )
    out.print(table)


def run_resim(
    recording: Path,
    at_s: float,
    seconds: float,
    settings: Sequence[str],
    seed: int,
    output: Path | None,
) -> None:
    """``twin resim``: print the new file and a one-line summary; exit 2 for bad input."""
    with collect_damage() as damaged:
        try:
            overrides = parse_overrides(settings)
            result = resimulate(
                recording, at_s, seconds=seconds, overrides=overrides, seed=seed, output=output
            )
        except ResimInputError as exc:
            err.print(f"twin resim: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    for line in damage_lines(damaged):
        err.print(f"twin resim: warning: {line}", markup=False)
    out.print(str(result.path), markup=False)
    out.print(
        f"resimulated {result.simulated_s:g} s in {result.wall_s:.2f} s wall "
        f"({result.realtime_factor:.1f}x real time), {result.messages} messages",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``twin replay``, ``twin failures`` and ``twin resim``."""
    app.command("replay")(replay_cmd)
    app.command("failures")(failures_cmd)
    app.command("resim")(resim_cmd)
