"""A dataset's card (``README.md``): sources, manufacturers, hours, failures, features.

Hugging Face reads the YAML front matter (license, tags, the data files' glob); people read
the rest. Written from the dataset's own tables on every export, so an append updates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _hours(value: float) -> str:
    return f"{value:.3f} h ({value * 60:.1f} min)"


def dataset_card(root: Path, summary: dict[str, Any], info: dict[str, Any]) -> str:
    """The card's Markdown text."""
    lines = [
        "---",
        "license: apache-2.0",
        "task_categories:",
        "- robotics",
        "tags:",
        "- LeRobot",
        "- humanoid",
        "- hall-twin",
        "configs:",
        "- config_name: default",
        "  data_files: data/*/*.parquet",
        "---",
        "",
        f"# {root.name}: {info.get('robot_type')}",
        "",
        "Exported by `twin export lerobot` (hall twin) from recordings of a humanoid-robot "
        f"training hall: LeRobot dataset format {info.get('codebase_version')}, "
        f"{info.get('fps')} frames per second.",
        "",
        f"- episodes: {summary['episodes']} ({summary['failures']} failures, "
        f"{summary['faults']} faults), frames: {summary['frames']}, "
        f"recorded: {_hours(summary['hours'])}",
        f"- source recordings: {', '.join(summary['recordings']) or 'none'}",
        "",
        "## Hours per manufacturer",
        "",
        "| manufacturer | episodes | hours | failures |",
        "|---|---|---|---|",
    ]
    for name, row in summary["per_manufacturer"].items():
        lines.append(f"| {name} | {row['episodes']} | {row['hours']:.4f} | {row['failures']} |")
    lines += [
        "",
        "## Hours per task",
        "",
        "| task | episodes | hours | failures |",
        "|---|---|---|---|",
    ]
    for name, row in summary["per_task"].items():
        lines.append(f"| {name} | {row['episodes']} | {row['hours']:.4f} | {row['failures']} |")
    lines += ["", "## Failures", ""]
    if summary["failures"]:
        kinds = ", ".join(f"{k} ({n})" for k, n in summary["failure_kinds"].items())
        lines.append(
            f"{summary['failures']} episodes end in a failure the twin's detectors found "
            f"({kinds}); `meta/episodes` marks them `outcome = failure`, with the incident and "
            f"lesson ids. Lessons: {', '.join(summary['lessons']) or 'none'}."
        )
    else:
        lines.append("No episode has a detected failure.")
    notes = info.get("hall_twin", {})
    lines += [
        "",
        "## How the frames were made",
        "",
        f"- resampling: {notes.get('resampling', '')}",
        f"- units: {notes.get('units', '')}",
        f"- clock: {notes.get('clock', '')}",
        f"- episodes: {notes.get('episodes', '')}",
        "- action: see `meta/info.json` key `hall_twin.action` and the episodes' "
        "`action_source` column",
        "",
        "## Features",
        "",
    ]
    for key, feature in info.get("features", {}).items():
        names = feature.get("names")
        shown = "" if not names else f": {', '.join(map(str, names[:8]))}"
        more = "" if not names or len(names) <= 8 else f", ... ({len(names)})"
        lines.append(f"- `{key}` {feature['dtype']} {feature['shape']}{shown}{more}")
    return "\n".join(lines) + "\n"
