"""The ``twin`` command: the top floor, the only room that wires ``viz`` to the rest.

Each command group lives in its own module and registers itself here; what they share
(exit codes, options, loading a scene) is in :mod:`twin.cli.common`. Bad input (a broken
scene file, an unknown model) prints one line per problem to stderr and exits with status
2; it never shows a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from hallfiles.limits import DEFAULT_MAX_INPUT_BYTES, ENV_MAX_INPUT_BYTES
from robots.library import ENV_ROBOTS, with_env_dirs
from twin.cli import (
    dataset,
    dispatch,
    lessons,
    live,
    preview,
    recordings,
    robots,
    scene,
    view,
    web,
)
from twin.cli.record_path import expand_bare_foxglove, expand_bare_record

app = typer.Typer(
    help="Digital twin of a humanoid-robot training hall.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    robots_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--robots-dir",
            help="A folder of robot model packages (repeatable); before HALL_TWIN_ROBOTS.",
        ),
    ] = None,
    max_input_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-input-bytes",
            min=1,
            metavar="N",
            help="The largest scene, task or robot file read, in bytes; larger ones are refused "
            f"unread. Default {DEFAULT_MAX_INPUT_BYTES} (1 MiB), or {ENV_MAX_INPUT_BYTES}; "
            "this wins over both, here and in the processes this command starts.",
        ),
    ] = None,
) -> None:
    if robots_dirs:  # through the environment, so child processes find the same models
        os.environ[ENV_ROBOTS] = with_env_dirs(robots_dirs)
    if max_input_bytes is not None:  # the same, and read where each file is read
        os.environ[ENV_MAX_INPUT_BYTES] = str(max_input_bytes)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose:  # our own debug messages, not every library's
        for package in ("twin", "sync", "viz", "scenes", "robots", "hallfiles"):
            logging.getLogger(package).setLevel(logging.DEBUG)


# the order of `twin --help`
scene.register(app)  # twin scene check
robots.register(app)  # twin robots, twin robots add, twin robots check
dispatch.register(app)  # twin keys init, twin dispatch
view.register(app)  # twin demo, twin view
web.register(app)  # twin web
live.register(app)  # twin emulate, twin live, twin status
recordings.register(app)  # twin replay, twin failures, twin resim
lessons.register(app)  # twin lessons, twin lessons show, twin lessons learn
preview.register(app)  # twin preview
dataset.register(app)  # twin export lerobot, twin dataset info


def main() -> None:
    """Console-script entry point."""
    app(args=expand_bare_foxglove(expand_bare_record(sys.argv[1:])))
