"""The recorder's file: opened, its chunks sized, and started with what makes it whole.

:func:`start_file` opens the MCAP file a :class:`twin.record.recorder.Recorder` writes
(refusing to overwrite a file that exists and is not MCAP: a scene given to ``--record`` by
mistake), sizes its chunks to about a second of the scene's nominal load
(:func:`estimate_bytes_per_s`), and writes what every recording starts with: the ``twin``
metadata record, the scene YAML and the URDF of every robot model in the scene as
attachments, and the schemas of the canonical channels. The recorder then registers its
channels and routes the messages (``docs/recordings.md`` has the layout).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import msgspec
from mcap.writer import CompressionType

from robots import get_model
from scenes.model import Scene
from twin.record.mcap_writer import ChunkedMcapWriter
from twin.record.schemas import SCHEMAS

RAW_ENCODING: Final = "hall-twin-v1"
MIN_CHUNK_BYTES: Final = 256 * 1024
MAX_CHUNK_BYTES: Final = 32 * 1024 * 1024
PROFILE: Final = "hall-twin"
MCAP_MAGIC: Final = b"\x89MCAP0\r\n"


def _best_compression() -> CompressionType:
    """zstd if installed (smallest files, fastest here), else lz4, else none."""
    if importlib.util.find_spec("zstandard") is not None:
        return CompressionType.ZSTD
    if importlib.util.find_spec("lz4") is not None:  # pragma: no cover - environment
        return CompressionType.LZ4
    return CompressionType.NONE  # pragma: no cover - environment


COMPRESSION: Final = _best_compression()


class RecorderError(RuntimeError):
    """The recording cannot be started (said why, in one line)."""


@dataclass
class RecorderFile:
    """An opened recording: its stream and writer, time zero, chunk size and the ids of the
    canonical schemas by name."""

    stream: IO[bytes]
    writer: ChunkedMcapWriter
    start_ns: int
    chunk_size_bytes: int
    schemas: dict[str, int]


def estimate_bytes_per_s(scene: Scene) -> int:
    """Bytes a second the scene's nominal load writes before compression, with the raw
    joint frames (the chunk size: about a second of a ``--raw`` recording)."""
    total = 0.0
    for robot in scene.robots:
        model = get_model(robot.model)
        n = len(model.profile.joint_names)
        raw = 32 + 3 * n * 8 + 64
        block = 3 * n * 4 + 32  # a state in a block, before compression
        rate = model.profile.rate_hz
        total += rate * (raw + block + 2 * 40) + min(rate, 100.0) * 500 + 10.0 * 400
    total += 20.0 * 300 * len(scene.cranes)
    return int(total)


def _refuse_to_overwrite(path: Path) -> None:
    """A file that exists and is not MCAP (a scene given to ``--record`` by mistake) stays."""
    try:
        with path.open("rb") as stream:
            head = stream.read(len(MCAP_MAGIC))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    except OSError as exc:
        raise RecorderError(f"cannot write {path}: {exc.strerror}") from None
    if head and head != MCAP_MAGIC:
        raise RecorderError(
            f"{path} exists and is not an MCAP recording; not overwriting it "
            "(a bare --record goes after the scene argument)"
        )


def start_file(
    path: Path,
    scene: Scene,
    scene_text: str,
    *,
    twin_version: str,
    chunk_size_bytes: int | None,
    compression: CompressionType,
    start_ns: int | None,
    background: bool,
    raw_joints: bool,
) -> RecorderFile:
    """Open the recording and write its start (see the module docstring); RecorderError, one
    line, if it cannot be written. ``start_ns``: time zero (default now)."""
    if chunk_size_bytes is None:
        chunk_size_bytes = min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, estimate_bytes_per_s(scene)))
    _refuse_to_overwrite(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream: IO[bytes] = path.open("wb")
    except OSError as exc:
        raise RecorderError(f"cannot write {path}: {exc.strerror}") from None
    writer = ChunkedMcapWriter(
        stream,
        chunk_size_bytes=chunk_size_bytes,
        compression=compression,
        profile=PROFILE,
        library=f"hall-twin/{twin_version}",
        background=background,
    )
    start_ns = time.time_ns() if start_ns is None else start_ns
    writer.add_metadata(
        "twin",
        {
            "twin_version": twin_version,
            "scene": scene.name,
            "start_time_ns": str(start_ns),
            "python_version": sys.version.split()[0],
            "raw_encoding": RAW_ENCODING,
            "raw_joints": str(raw_joints).lower(),
        },
    )
    scene_bytes = scene_text.encode("utf-8")
    writer.add_attachment(start_ns, start_ns, "scene.yaml", "application/yaml", scene_bytes)
    for model in sorted({r.model for r in scene.robots}):
        urdf = get_model(model).urdf_path.read_bytes()
        name = f"robots/{model}.urdf"
        writer.add_attachment(start_ns, start_ns, name, "application/xml", urdf)
    schemas = {
        name: writer.register_schema(name, "jsonschema", msgspec.json.encode(schema))
        for name, schema in SCHEMAS.items()
        if name != "hall_twin.JointState"  # older recordings' JSON joint states
    }
    return RecorderFile(stream, writer, start_ns, chunk_size_bytes, schemas)
