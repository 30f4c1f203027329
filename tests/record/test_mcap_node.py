"""A recording read by an independent reader in another language: TypeScript's ``@mcap/core``
(the library Foxglove and Lichtblick read files with), run by Node on ``tests/node/count.mjs``,
through both of its readers, CRCs validated. It must find what Python's ``mcap`` reader finds:
the same topics with the same counts, encodings and schemas, attachments, metadata and time
range. ``make setup`` installs the Node packages (``npm ci`` in ``tests/node``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

from tests.helpers import ROOT

NODE_DIR = ROOT / "tests" / "node"


def _python_view(path: Path) -> dict[str, Any]:
    """The same figures as count.mjs, by Python's mcap reader."""
    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        counts: Counter[str] = Counter()
        topics: dict[str, dict[str, Any]] = {}
        times: list[int] = []
        for schema, channel, message in reader.iter_messages():
            counts[channel.topic] += 1
            topics.setdefault(
                channel.topic,
                {
                    "message_encoding": channel.message_encoding,
                    "schema": schema.name if schema is not None else "",
                    "schema_encoding": schema.encoding if schema is not None else "",
                },
            )
            times.append(message.log_time)
        attachments = [a.name for a in reader.iter_attachments()]
        metadata = [m.name for m in reader.iter_metadata()]
    for topic, row in topics.items():
        row["messages"] = counts[topic]
    return {
        "topics": topics,
        "attachments": attachments,
        "metadata": metadata,
        "first_log_time_ns": str(min(times)),
        "last_log_time_ns": str(max(times)),
        "statistics_messages": str(summary.statistics.message_count),
        "streamed_topics": dict(counts),
    }


def test_typescripts_mcap_reader_reads_what_pythons_does(fall_recording: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node here (make setup installs it with scripts/system-deps.sh)")
    if not (NODE_DIR / "node_modules" / "@mcap" / "core").is_dir():
        pytest.fail("tests/node has no node_modules: run `make setup` (npm ci in tests/node)")
    done = subprocess.run(
        [node, "count.mjs", str(fall_recording)],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    expected = _python_view(fall_recording)
    assert seen == expected
    # what the file must hold for that to mean something: every kind of channel
    schemas = {row["schema"] for row in seen["topics"].values()}
    assert {"foxglove.SceneUpdate", "foxglove.FrameTransforms", "foxglove.JointStates"} <= schemas
    assert {"foxglove.Log", "foxglove.PoseInFrame", "hall_twin.Event"} <= schemas
    assert "hall_twin.JointBlock" in schemas  # the joint states, in blocks
    assert any(topic.startswith("/raw/base/") for topic in seen["topics"])
    assert "scene.yaml" in seen["attachments"] and seen["metadata"] == ["twin"]
    assert int(seen["statistics_messages"]) == sum(seen["streamed_topics"].values()) > 2_000
