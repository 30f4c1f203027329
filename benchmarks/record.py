"""How many messages a second the recorder sustains, beside plain mcap writing.

Usage: ``python benchmarks/record.py [--messages N] [--repeat R] [--json]``. Uses
realistic accepted joint states (the default hall's robots: Kestrel packed float32, Orca
packed float64 degrees, Tessel MessagePack maps, in proportion to their rates).

- ``msgs_per_s``: the recorder as ``twin live --record`` runs it,
  :class:`twin.record.recorder_process.RecorderProcess`: the frames handed over as the
  mirror does (``frames`` per message, ``ship`` after every 128, the drain's batch, all of
  a batch with one receive time as :meth:`twin.live.intake.Intake.handle_batch` gives it), the
  worker process recording them at this process's priority; from the first message handed
  to the worker's word that the file is finished (summary and footer written; its process
  then exits, in about 65 ms here, which is not counted). ``msgs_per_s_raw_joints``: the
  same writing the raw joint frames too (``twin live --record --raw``).
  ``msgs_per_s_idle_priority``: the same at the priority ``twin live`` gives the worker
  (SCHED_IDLE: only CPU time nothing else on the machine wants, so it says as much about
  the machine's other load as about the recorder).
  ``handoff_msgs_per_s``: what the handing over alone costs the mirror's thread.
- ``msgs_per_s_in_thread``: :meth:`twin.record.recorder.Recorder.sink` in this thread
  (with the values ingest has already checked, as a mirror sink gets them), and
  ``msgs_per_s_inline_compression`` the same with the writer's compression inline.
- ``raw_mcap_msgs_per_s``, the baseline: a bare ``mcap.writer.Writer`` writing each
  message once as it came (its 32-byte header and payload: one ``add_message`` a message,
  no decoding), the least any recorder built on that library does; ``vs_raw_mcap`` the
  recorder's ratio to it (target :data:`TARGET_VS_RAW_MCAP`). Also the parts: the
  recorder's writer alone (:class:`twin.record.mcap_writer.ChunkedMcapWriter`, the same
  frames as the baseline) and the canonical blocks alone
  (:class:`twin.record.joint_blocks.BlockBuffer`: buffering, converting, encoding), so a
  shortfall can be placed.
- ``foxglove_sdk_msgs_per_s``: foxglove-sdk's own MCAP writer (``foxglove.open_mcap``, its
  default zstd compression, the recorder's chunk size) writing the same joint states as
  ``foxglove.JointStates`` (protobuf), one channel per robot, in the same run: each
  message's SI values computed (one multiply, as the recorder does), its ``JointStates``
  built and logged. ``foxglove_sdk_bytes_per_msg_on_disk`` beside ``bytes_per_msg_on_disk``
  (the recorder's file).

Every figure above is the median of ``--repeat`` runs.

- ``bytes_per_robot_hour``: the size of a recording of the default hall at nominal rates,
  per robot-hour. Synthetic traffic (not the emulator: deterministic, and no physics on a
  busy machine), through the real in-thread :class:`~twin.record.recorder.Recorder` with
  the Foxglove channels on, as ``twin live --record`` writes: for ``--hall-seconds`` of
  simulated receive time, every robot's joint states at its model's ``rate_hz``, base
  states at ``min(rate_hz, 100)`` Hz, heartbeats at 10 Hz, the cranes at 20 Hz (the
  emulator's rates), the joints moving smoothly with the emulator's sensor noise (0.5 mrad
  on positions, 0.05 N*m on efforts), every value fresh in every message (the emulator's
  physics holds its velocities between steps, so files it feeds compress about 10 % better).
  The file's size less ``fixed_bytes_per_file`` (what a recording of no messages takes: the
  URDF and scene attachments, the first scene update, the summary) divided by robots x
  hours; ``bytes_per_robot_hour_raw_joints`` the same as ``--raw`` writes it.
  ``bytes_per_robot_hour_by_kind``: each kind
  of channel's messages rewritten alone with the recorder's writer and chunk size, per
  robot-hour. Their sum is about 12 % under the file's rate: the file also holds a message
  index entry per message (16 bytes, uncompressed), and zstd-1 compresses the kinds less
  well interleaved in one chunk than each alone. Measured once (sizes do not vary between
  runs).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcap.writer import Writer

from benchmarks.machine import machine_info
from robots import get_model
from scenes import DEFAULT_SCENE, load_scene
from scenes.model import Scene
from sync.codecs import codec_for
from sync.protocol import (
    BaseState,
    CraneState,
    Header,
    Heartbeat,
    Kind,
    Received,
    encode_payload,
    pack_header,
    topic,
)
from twin.emulator.emulate import (
    BASE_RATE_HZ,
    CRANE_RATE_HZ,
    EFFORT_NOISE_NM,
    HEARTBEAT_RATE_HZ,
    POSITION_NOISE_RAD,
)
from twin.record.foxglove_channels import DISPLAY_HZ
from twin.record.joint_blocks import BlockBuffer
from twin.record.mcap_writer import ChunkedMcapWriter
from twin.record.recorder import COMPRESSION, Recorder
from twin.record.recorder_process import RecorderProcess
from twin.record.schemas import joint_steps

TARGET_MSGS_PER_S = 50_000
TARGET_VS_RAW_MCAP = 3.0
TARGET_BYTES_PER_ROBOT_HOUR = 450_000_000
HALL_SECONDS = 30.0
_NS = 1_000_000_000


def realistic_messages(scene: Scene, count: int, seed: int = 1) -> list[Received]:
    """``count`` joint states of the scene's robots, interleaved in proportion to rate."""
    rng = np.random.default_rng(seed)
    robots = list(scene.robots)
    rates = np.array([get_model(r.model).profile.rate_hz for r in robots])
    picks = rng.choice(len(robots), size=count, p=rates / rates.sum())
    seqs = dict.fromkeys(range(len(robots)), 0)
    start_ns = time.time_ns()
    out: list[Received] = []
    for i, index in enumerate(picks):
        robot = robots[int(index)]
        model = get_model(robot.model)
        codec = codec_for(model)
        n = len(codec.names)
        low = np.array([model.joint(name).lower for name in codec.names])
        high = np.array([model.joint(name).upper for name in codec.names])
        positions = rng.uniform(low, high)
        payload = codec.encode(positions, rng.normal(0, 1, n), rng.normal(0, 10, n))
        stamp_ns = start_ns + i * 20_000
        seq = seqs[int(index)]
        seqs[int(index)] = seq + 1
        header = Header(kind=Kind.JOINT_STATE, seq=seq, stamp_ns=stamp_ns, epoch=0x1234)
        wire_topic = topic(Kind.JOINT_STATE, robot.id)
        checked = codec.check(payload)  # ingest checks every joint state and passes this on
        received = Received(stamp_ns + 300_000, robot.id, header, wire_topic, payload, checked)
        out.append(received)
    return out


def _joint_rows(
    model_name: str, times_s: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, velocities, efforts), each (len(times_s), joints) in wire order: every
    joint swinging about the middle of its range at a walking pace, with sensor noise."""
    model = get_model(model_name)
    names = codec_for(model).names
    low = np.array([model.joint(n).lower for n in names])
    high = np.array([model.joint(n).upper for n in names])
    phase = rng.uniform(0.0, 2 * np.pi, len(names))
    omega = 2 * np.pi * rng.uniform(0.5, 1.2, len(names))
    amp = 0.2 * (high - low)
    arg = times_s[:, None] * omega + phase
    positions = (low + high) / 2 + amp * np.sin(arg)
    positions += rng.normal(0.0, POSITION_NOISE_RAD, positions.shape)
    velocities = amp * omega * np.cos(arg)
    efforts = 15.0 * np.sin(arg + 0.5) + rng.normal(0.0, EFFORT_NOISE_NM, positions.shape)
    return positions, velocities, efforts


def _received(
    kind: Kind, source: str, seq: int, stamp_ns: int, payload: bytes, values: Any = None
) -> Received:
    header = Header(kind=kind, seq=seq, stamp_ns=stamp_ns, epoch=0x1234)
    return Received(stamp_ns + 300_000, source, header, topic(kind, source), payload, values)


def hall_traffic(scene: Scene, seconds: float, seed: int = 2) -> list[Received]:
    """``seconds`` of the scene's messages at their nominal rates, in receive order (see
    ``bytes_per_robot_hour`` in the module's docstring)."""
    rng = np.random.default_rng(seed)
    start_ns = 1_800_000_000 * _NS
    out: list[Received] = []

    def stamps(rate_hz: float) -> np.ndarray:
        return np.arange(0.0, seconds, 1.0 / rate_hz)

    for robot in scene.robots:
        model = get_model(robot.model)
        codec = codec_for(model)
        rate = model.profile.rate_hz
        times = stamps(rate)
        rows = _joint_rows(robot.model, times, rng)
        for seq, t in enumerate(times):
            payload = codec.encode(rows[0][seq], rows[1][seq], rows[2][seq])
            stamp_ns = start_ns + round(t * _NS)
            values = codec.check(payload)  # as ingest passes it on
            out.append(_received(Kind.JOINT_STATE, robot.id, seq, stamp_ns, payload, values))
        x0, y0 = rng.uniform(-5.0, 5.0, 2).tolist()
        for seq, t in enumerate(stamps(min(rate, BASE_RATE_HZ)).tolist()):
            yaw = 0.2 * t
            noise = rng.normal(0.0, 0.01, 9).tolist()
            base = BaseState(
                (x0 + 0.3 * math.cos(yaw), y0 + 0.3 * math.sin(yaw), 0.9 + 0.01 * math.sin(6 * t)),
                (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)),
                (-0.06 * math.sin(yaw) + noise[0], 0.06 * math.cos(yaw) + noise[1], noise[2]),
                (noise[3], noise[4], 0.2 + noise[5]),
                (noise[6], noise[7], 9.81 + noise[8]),
            )  # fmt: skip
            out.append(
                _received(Kind.BASE, robot.id, seq, start_ns + round(t * _NS), encode_payload(base))
            )
        for seq, t in enumerate(stamps(HEARTBEAT_RATE_HZ).tolist()):
            beat = Heartbeat(
                "running", False, False, model.manufacturer, model.name, "carry",
                cycle=int(t // 12), step="walk" if t % 12 < 6 else "carry",
            )  # fmt: skip
            out.append(
                _received(
                    Kind.HEARTBEAT, robot.id, seq, start_ns + round(t * _NS), encode_payload(beat)
                )
            )
    for crane in scene.cranes:
        for seq, t in enumerate(stamps(CRANE_RATE_HZ).tolist()):
            state = CraneState(
                crane.bridge.travel[0] + 1.0 + 0.1 * t, crane.trolley.travel[0] + 0.5, 3.0, True
            )
            out.append(
                _received(
                    Kind.CRANE, crane.id, seq, start_ns + round(t * _NS), encode_payload(state)
                )
            )
    out.sort(key=lambda m: m.received_ns)
    return out


def _kind(channel_topic: str) -> str:
    """'/raw/js', '/joints', '/foxglove/tf'...: a channel's kind."""
    parts = channel_topic.split("/")
    if parts[1] in ("raw", "foxglove"):
        return "/".join(parts[:3])
    return "/" + parts[1]


def bytes_per_robot_hour(
    scene: Scene, seconds: float, folder: Path, *, raw_joints: bool = False
) -> dict[str, Any]:
    """The default hall's recording at nominal rates, per robot-hour (see the docstring);
    ``raw_joints``: as ``twin live --record --raw`` writes it."""
    from mcap.reader import make_reader

    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    empty = folder / "empty.mcap"
    Recorder(empty, scene, text, twin_version="bench", display_hz=DISPLAY_HZ).close()
    fixed = empty.stat().st_size  # header, metadata, attachments, scene, summary
    path = folder / "hall.mcap"
    traffic = hall_traffic(scene, seconds)
    with Recorder(
        path, scene, text, twin_version="bench", display_hz=DISPLAY_HZ, raw_joints=raw_joints
    ) as recorder:
        for message in traffic:
            recorder.sink(message)
        chunk_size = recorder.chunk_size_bytes
    robot_hours = len(scene.robots) * seconds / 3600.0
    by_kind: dict[str, list[tuple[int, bytes]]] = {}
    with path.open("rb") as stream:
        for _schema, channel, record in make_reader(stream).iter_messages(log_time_order=False):
            by_kind.setdefault(_kind(channel.topic), []).append((record.log_time, record.data))
    sizes = {}
    for kind, items in sorted(by_kind.items()):
        with (folder / "kind.mcap").open("wb") as stream:
            writer = ChunkedMcapWriter(
                stream, chunk_size_bytes=chunk_size, compression=COMPRESSION, background=False
            )
            channel_id = writer.register_channel(kind, "x", 0)
            for i, (log_ns, data) in enumerate(items):
                writer.add_message(channel_id, log_ns, data, log_ns, i)
            writer.finish()
            sizes[kind] = round(stream.tell() / robot_hours)
    total = (path.stat().st_size - fixed) / robot_hours
    return {
        "bytes_per_robot_hour": round(total),
        "fixed_bytes_per_file": fixed,
        "bytes_per_robot_hour_by_kind": sizes,
        "hall_messages_per_s": round(len(traffic) / seconds),
        "hall_seconds": seconds,
        "hall_robots": len(scene.robots),
        "target_bytes_per_robot_hour": TARGET_BYTES_PER_ROBOT_HOUR,
        "meets_size_target": total <= TARGET_BYTES_PER_ROBOT_HOUR,
    }


def _bench_foxglove_sdk(
    scene: Scene, messages: list[Received], chunk_size: int, folder: Path
) -> tuple[float, int]:
    """(msg/s, file bytes) of foxglove-sdk's MCAP writer writing the joint states as
    ``foxglove.JointStates``."""
    import foxglove
    from foxglove.channels import JointStatesChannel
    from foxglove.mcap import MCAPWriteOptions
    from foxglove.messages import JointState, JointStates, Timestamp

    context = foxglove.Context()
    routes = {}
    for robot in scene.robots:
        codec = codec_for(get_model(robot.model))
        unit = codec.to_sample(np.ones((3, len(codec.names))))
        scale = np.stack([unit.positions, unit.velocities, unit.efforts])
        channel = JointStatesChannel(f"/joints/{robot.id}", context=context)
        routes[topic(Kind.JOINT_STATE, robot.id)] = (channel, codec.canonical_names, scale)
    path = folder / "foxglove.mcap"
    writer = foxglove.open_mcap(
        path,
        allow_overwrite=True,
        context=context,
        writer_options=MCAPWriteOptions(chunk_size=chunk_size),
    )
    started = time.perf_counter()
    for m in messages:
        channel, names, scale = routes[m.topic]
        position, velocity, effort = (m.joint_values * scale).tolist()  # type: ignore[operator]
        sec, nsec = divmod(m.header.stamp_ns, _NS)
        joints = [
            JointState(name=n, position=p, velocity=v, effort=e)
            for n, p, v, e in zip(names, position, velocity, effort, strict=True)
        ]
        channel.log(
            JointStates(timestamp=Timestamp(sec, nsec), joints=joints), log_time=m.received_ns
        )
    writer.close()
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed, path.stat().st_size


def _bench_sink(
    scene: Scene, messages: list[Received], folder: Path, *, background: bool = True
) -> tuple[float, int]:
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    path = folder / "sink.mcap"
    recorder = Recorder(path, scene, text, twin_version="bench", background=background)
    sink = recorder.sink
    started = time.perf_counter()
    for message in messages:
        sink(message)
    recorder.close()
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed, path.stat().st_size


def _bench_process(
    scene: Scene,
    messages: list[Received],
    folder: Path,
    *,
    idle: bool = False,
    raw_joints: bool = False,
) -> tuple[float, float]:
    """(end-to-end msg/s, hand-over msg/s) of the recorder process; ``idle``: at the
    priority ``twin live`` gives it (SCHED_IDLE), else at this process's; ``raw_joints``:
    writing the raw joint frames too (``--raw``)."""
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    path = folder / "process.mcap"
    frames = [
        (m.received_ns, [m.topic, pack_header(m.header.kind, m.header.seq, m.header.stamp_ns,
                                              m.header.epoch), m.payload])
        for m in messages
    ]  # fmt: skip
    priority = {} if idle else {"nice": 0, "idle": False}
    recorder = RecorderProcess(
        path,
        scene,
        text,
        twin_version="bench",
        raw_joints=raw_joints,
        **priority,  # type: ignore[arg-type]
    )
    feed, ship = recorder.frames, recorder.ship
    started_ns = time.monotonic_ns()
    handing = 0.0
    for start in range(0, len(frames), 128):
        began = time.perf_counter()
        batch = frames[start : start + 128]
        received_ns = batch[-1][0]  # the mirror gives a batch received together one time
        for _, message in batch:
            feed(received_ns, message)
        ship(time.monotonic_ns())
        handing += time.perf_counter() - began
    recorder.close()
    if recorder.file_closed_ns is None:
        raise RuntimeError(f"the recorder process did not finish the file: {recorder.error}")
    elapsed = (recorder.file_closed_ns - started_ns) / 1e9  # not the worker's own exit
    if recorder.messages != len(messages):
        raise RuntimeError(f"the recorder process recorded {recorder.messages} of {len(messages)}")
    return len(messages) / elapsed, len(messages) / handing


def _frames(messages: list[Received]) -> list[bytes]:
    """Each message's raw frame (32-byte header + payload), as the wire carried it."""
    return [
        pack_header(m.header.kind, m.header.seq, m.header.stamp_ns, m.header.epoch) + m.payload
        for m in messages
    ]


def _bench_raw(frames: list[bytes], chunk_size: int, folder: Path) -> float:
    """The baseline: a bare ``mcap.writer.Writer`` writing each message once, as received."""
    with (folder / "raw.mcap").open("wb") as stream:
        writer = Writer(stream, chunk_size=chunk_size, compression=COMPRESSION)
        writer.start()
        raw_channel = writer.register_channel("/raw", "hall-twin-v1", 0)
        add = writer.add_message
        started = time.perf_counter()
        for i, raw in enumerate(frames):
            add(raw_channel, i, raw, i, i)
        writer.finish()  # type: ignore[no-untyped-call]
        return len(frames) / (time.perf_counter() - started)


def _bench_chunked(frames: list[bytes], chunk_size: int, folder: Path) -> float:
    """The recorder's writer writing the same as the baseline."""
    with (folder / "chunked.mcap").open("wb") as stream:
        writer = ChunkedMcapWriter(stream, chunk_size_bytes=chunk_size, compression=COMPRESSION)
        raw_channel = writer.register_channel("/raw", "hall-twin-v1", 0)
        add = writer.add_message
        started = time.perf_counter()
        for i, raw in enumerate(frames):
            add(raw_channel, i, raw, i, i)
        writer.finish()
        return len(frames) / (time.perf_counter() - started)


def _bench_blocks_only(scene: Scene, messages: list[Received]) -> float:
    """The canonical blocks alone: every state into its robot's buffer, one block a
    robot per 1,000 states (about the recorder's flush), no file."""
    buffers = {}
    for robot in scene.robots:
        codec = codec_for(get_model(robot.model))
        unit = codec.to_sample(np.ones((3, len(codec.names))))
        steps = joint_steps(np.stack([unit.positions, unit.velocities, unit.efforts]))
        buffers[topic(Kind.JOINT_STATE, robot.id)] = BlockBuffer(
            robot.id, list(codec.canonical_names), steps
        )
    started = time.perf_counter()
    for i, m in enumerate(messages):
        h = m.header
        buffers[m.topic].add(m.received_ns, h.stamp_ns, h.seq, h.epoch, m.joint_values)  # type: ignore[arg-type]
        if i % 1000 == 999:
            for buffer in buffers.values():
                if len(buffer):
                    buffer.take()
    for buffer in buffers.values():
        if len(buffer):
            buffer.take()
    return len(messages) / (time.perf_counter() - started)


def run(count: int, repeat: int = 3, hall_seconds: float = HALL_SECONDS) -> dict[str, Any]:
    """Run every measurement ``repeat`` times; returns the JSON report (medians), and the
    hall's bytes per robot-hour (once)."""
    scene = load_scene()
    messages = realistic_messages(scene, count)
    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "process",
            "process_raw_joints",
            "process_idle",
            "handoff",
            "sink",
            "sink_inline",
            "raw",
            "chunked",
            "blocks",
            "bytes",
            "foxglove",
            "foxglove_bytes",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chunk = Recorder(folder / "probe.mcap", scene, "", twin_version="bench")
        chunk_size = chunk.chunk_size_bytes
        chunk.close()
        frames = _frames(messages)
        for _ in range(repeat):
            process_rate, handoff_rate = _bench_process(scene, messages, folder)
            runs["process"].append(process_rate)
            runs["handoff"].append(handoff_rate)
            runs["process_idle"].append(_bench_process(scene, messages, folder, idle=True)[0])
            runs["process_raw_joints"].append(
                _bench_process(scene, messages, folder, raw_joints=True)[0]
            )
            sink_rate, size = _bench_sink(scene, messages, folder)
            runs["sink"].append(sink_rate)
            runs["bytes"].append(size)
            runs["sink_inline"].append(_bench_sink(scene, messages, folder, background=False)[0])
            runs["raw"].append(_bench_raw(frames, chunk_size, folder))
            runs["chunked"].append(_bench_chunked(frames, chunk_size, folder))
            runs["blocks"].append(_bench_blocks_only(scene, messages))
            foxglove_rate, foxglove_size = _bench_foxglove_sdk(scene, messages, chunk_size, folder)
            runs["foxglove"].append(foxglove_rate)
            runs["foxglove_bytes"].append(foxglove_size)
        hall = bytes_per_robot_hour(scene, hall_seconds, folder)
        raw_joints = bytes_per_robot_hour(scene, hall_seconds, folder, raw_joints=True)
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "messages": count,
        "repeat": repeat,
        "msgs_per_s": round(median["process"]),
        "msgs_per_s_all_runs": [round(r) for r in runs["process"]],
        "msgs_per_s_idle_priority": round(median["process_idle"]),
        "msgs_per_s_raw_joints": round(median["process_raw_joints"]),
        "handoff_msgs_per_s": round(median["handoff"]),
        "msgs_per_s_in_thread": round(median["sink"]),
        "msgs_per_s_inline_compression": round(median["sink_inline"]),
        "raw_mcap_msgs_per_s": round(median["raw"]),
        "vs_raw_mcap": round(median["process"] / median["raw"], 2),
        "raw_mcap_msgs_per_s_all_runs": [round(r) for r in runs["raw"]],
        "recorder_writer_only_msgs_per_s": round(median["chunked"]),
        "canonical_blocks_only_msgs_per_s": round(median["blocks"]),
        "foxglove_sdk_msgs_per_s": round(median["foxglove"]),
        "foxglove_sdk_msgs_per_s_all_runs": [round(r) for r in runs["foxglove"]],
        "vs_foxglove_sdk": round(median["process"] / median["foxglove"], 2),
        "target_msgs_per_s": TARGET_MSGS_PER_S,
        "meets_target": median["process"] >= TARGET_MSGS_PER_S,
        "target_vs_raw_mcap": TARGET_VS_RAW_MCAP,
        "meets_speed_target": median["process"] >= TARGET_VS_RAW_MCAP * median["raw"],
        "bytes_per_msg_on_disk": round(median["bytes"] / count, 1),
        "foxglove_sdk_bytes_per_msg_on_disk": round(median["foxglove_bytes"] / count, 1),
        **hall,
        "bytes_per_robot_hour_raw_joints": raw_joints["bytes_per_robot_hour"],
        "bytes_per_robot_hour_by_kind_raw_joints": raw_joints["bytes_per_robot_hour_by_kind"],
        "chunk_size_bytes": chunk_size,
        "compression": COMPRESSION.name.lower(),
        "machine": machine_info(),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="Runs; figures are medians.")
    parser.add_argument(
        "--hall-seconds",
        type=float,
        default=HALL_SECONDS,
        help="Simulated seconds of the default hall for bytes_per_robot_hour.",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()
    report = run(args.messages, args.repeat, args.hall_seconds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
