"""Describe the machine a benchmark ran on (included in every benchmark's JSON), and print
a benchmark's result."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and OS, so figures can be compared honestly."""
    cpu = platform.processor() or "unknown"
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """The result as one JSON object (``--json``), or a ``key: value`` line per figure."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
