"""Synthetic recordings for the tests of several rooms: hall messages as the ingest accepts
them, written with the real recorder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robots import get_model
from scenes import DEFAULT_SCENE
from scenes.model import Scene
from sync.codecs import codec_for
from sync.protocol import (
    BaseState,
    CraneState,
    Heartbeat,
    Kind,
    Received,
    encode_payload,
    pack_header,
    topic,
    unpack_header,
)
from twin.record.joint_blocks import decode_block
from twin.record.recorder import Recorder
from twin.record.recording import Recording

T0_NS = 1_700_000_000_000_000_000
EPOCH = 0xABCDEF


def scene_text() -> str:
    return DEFAULT_SCENE.read_text(encoding="utf-8")


def received(kind: Kind, source: str, seq: int, stamp_ns: int, payload: bytes) -> Received:
    header = unpack_header(pack_header(kind, seq, stamp_ns, EPOCH))
    return Received(stamp_ns + 250_000, source, header, topic(kind, source), payload)


def joint_values(model_name: str, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = get_model(model_name)
    names = codec_for(model).names
    low = np.array([model.joint(n).lower for n in names])
    high = np.array([model.joint(n).upper for n in names])
    k = np.arange(len(names))
    frac = (np.sin(k * 0.7 + seq * 0.1) + 1.0) / 2.0
    return low + frac * (high - low), np.cos(k + seq) * 0.5, np.sin(k - seq) * 3.0


def hall_messages(scene: Scene, rounds: int, spread_ns: int = 1_000_000_000) -> list[Received]:
    """``rounds`` of: a joint state per robot, plus heartbeat, base and crane messages."""
    out = []
    for seq in range(rounds):
        stamp = T0_NS + seq * spread_ns // max(1, rounds)
        for robot in scene.robots:
            codec = codec_for(get_model(robot.model))
            out.append(
                received(
                    Kind.JOINT_STATE,
                    robot.id,
                    seq,
                    stamp,
                    codec.encode(*joint_values(robot.model, seq)),
                )
            )
            if seq % 5 == 0:
                hb = Heartbeat("running", False, False, "maker", robot.model, "walk")
                out.append(received(Kind.HEARTBEAT, robot.id, seq // 5, stamp, encode_payload(hb)))
                base = BaseState(
                    (1.0, 2.0, 0.9), (0.0, 0.0, 0.0, 1.0), (0, 0, 0), (0, 0, 0), (0, 0, 9.81)
                )
                out.append(received(Kind.BASE, robot.id, seq // 5, stamp, encode_payload(base)))
        for crane in scene.cranes:
            state = CraneState(
                crane.bridge.travel[0] + 0.5, crane.trolley.travel[0] + 0.5, 3.0, False
            )
            out.append(received(Kind.CRANE, crane.id, seq, stamp, encode_payload(state)))
    return out


def record(path: Path, scene: Scene, messages: list[Received], **kwargs: int | bool) -> None:
    with Recorder(path, scene, scene_text(), twin_version="test", **kwargs) as rec:  # type: ignore[arg-type]
        for message in messages:
            rec.sink(message)
        rec.event("epoch", "K1-01", "gateway restarted", T0_NS)


def state_counts(recording: Recording) -> dict[str, int]:
    """Messages per topic, but the joint states on ``/joints/<robot>`` (blocks) one each."""
    counts: dict[str, int] = {}
    for message in recording.iter_messages():
        n = len(decode_block(message.data)) if message.topic.startswith("/joints/") else 1
        counts[message.topic] = counts.get(message.topic, 0) + n
    return counts
