"""Reading a chunk's canonical messages into a robot's series, for a dataset export.

* Joint-state **blocks** (``/joints/<robot>`` in the recorder's block encoding,
  :mod:`twin.record.joint_blocks`): each message is decoded with
  :func:`~twin.record.joint_blocks.decode_block` into arrays of many states at once (their
  own receive times, stamps and SI values, the canonical values the JSON channel held). A
  block that does not decode is skipped and named in :attr:`Part.problems`; the rest is
  kept.
* **JSON** messages (joint states of older recordings, base poses, heartbeats, events),
  decoded one by one where the bulk reading of raw frames (:mod:`twin.dataset.bulk`) does
  not stand for them. A joint state or base pose whose values do not decode is kept as a
  row of NaN (the previous one holds there) and named in the problems.
"""

from __future__ import annotations

import msgspec
import numpy as np

from twin.dataset.bulk import Located
from twin.dataset.series import (
    BASE,
    BEAT,
    BEATS,
    EVENT,
    JOINTS,
    NAMES,
    FloatArray,
    Part,
    RobotSeries,
)
from twin.record.joint_blocks import JointRows, decode_block

_STAMP_KEY = b'"stamp_ns":'

Decoded = tuple[int, JointRows | str]
"""A block's log time (its first state's receive time) and its rows, or why it does not
decode."""


def decode_blocks(records: bytes, found: Located) -> list[Decoded]:
    """Every block of one ``/joints/<robot>`` channel in a chunk, in file order (this holds
    no state: decompression threads run it)."""
    out: list[Decoded] = []
    for i in range(len(found)):
        log_ns = int(found.log_ns[i])
        try:
            out.append((log_ns, decode_block(found.body(records, i))))
        except ValueError as exc:  # BlockError, or a malformation it did not foresee
            out.append((log_ns, str(exc) or type(exc).__name__))
    return out


def add_blocks(part: Part, series: RobotSeries, blocks: list[Decoded]) -> None:
    """A chunk's decoded blocks into the series: a block that does not decode, or names
    other joints than the robot's first block, is skipped with a problem naming it; a state
    with a value that is not finite is a row of NaN (the previous state holds there), as a
    JSON state that did not decode was."""
    topic = f"/joints/{series.robot_id}"
    for log_ns, rows in blocks:
        if isinstance(rows, str):
            part.problems.append(f"{topic}: the block at {part.when(log_ns)} skipped ({rows})")
            continue
        if not series.names:
            series.names = list(rows.names)
        elif rows.names != series.names:
            part.problems.append(
                f"{topic}: the block at {part.when(log_ns)} skipped ({len(rows.names)} joints "
                f"named other than the {len(series.names)} before)"
            )
            continue
        values: FloatArray = np.stack((rows.position, rows.velocity, rows.effort), axis=1)
        finite = np.isfinite(values).all(axis=(1, 2))
        if not finite.all():
            values[~finite] = np.nan
            part.problems.append(
                f"{topic}: {int((~finite).sum())} states of the block at {part.when(log_ns)} hold "
                "values that are not finite; the previous state held"
            )
        series.joint_log_ns.append(rows.log_time_ns)
        series.joint_stamp_ns.append(rows.stamp_ns)
        series.joint_values.append(values)
    if blocks:
        part.blocks += 1


def peek_blocks(part: Part, series: RobotSeries, blocks: list[Decoded]) -> None:
    """The first states' names and stamps (for the rate) from blocks, nothing else."""
    for _, rows in blocks:
        if isinstance(rows, str):
            continue
        if not series.names:
            series.names = list(rows.names)
        room = part.peek - series.joint_count()
        if room <= 0:
            return
        series.joint_stamp_ns.append(rows.stamp_ns[:room])
        series.joint_log_ns.append(rows.log_time_ns[:room])


def names(part: Part, series: RobotSeries, records: bytes, joints: Located) -> None:
    """The robot's joint names, from its first JSON joint state."""
    try:
        series.names = NAMES.decode(joints.body(records, 0)).name
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        part.problems.append(f"joints/{series.robot_id}: no joint names ({exc})")


def peek_json(part: Part, series: RobotSeries, records: bytes, joints: Located) -> None:
    """The first JSON joint states' names and stamps (for the rate), nothing else."""
    if not series.names:
        names(part, series, records, joints)
    room = min(part.peek - series.joint_count(), len(joints))
    stamps, logs = [], []
    for i in range(max(room, 0)):
        try:
            stamps.append(stamp_ns(joints.body(records, i)))
            logs.append(int(joints.log_ns[i]))
        except msgspec.ValidationError:
            continue
    series.joint_stamp_ns.append(np.asarray(stamps, dtype=np.int64))
    series.joint_log_ns.append(np.asarray(logs, dtype=np.int64))


def json_joints(part: Part, series: RobotSeries, records: bytes, joints: Located) -> None:
    """The chunk's joint states from their JSON, one by one (a state whose values do not
    decode is kept as NaN, which the previous state replaces)."""
    width = len(series.names)
    stamps: list[int] = []
    logs: list[int] = []
    values = np.full((len(joints), 3, width), np.nan)
    for i in range(len(joints)):
        body = joints.body(records, i)
        log_ns = int(joints.log_ns[i])
        try:
            state = JOINTS.decode(body)
            stamp = state.stamp_ns
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            try:
                stamp = stamp_ns(body)
            except msgspec.ValidationError as why:
                part.problems.append(f"joints/{series.robot_id} at {part.when(log_ns)}: {why}")
                continue
            part.problems.append(
                f"{series.robot_id}: joint state at {part.when(log_ns)} does not decode ({exc}); "
                "the previous state held"
            )
        else:
            if len(state.position) == len(state.velocity) == len(state.effort) == width:
                values[len(stamps)] = (state.position, state.velocity, state.effort)
            else:
                part.problems.append(
                    f"{series.robot_id}: joint state at {part.when(log_ns)} has "
                    f"{len(state.position)} values for {width} names; the previous state held"
                )
        stamps.append(stamp)
        logs.append(log_ns)
    series.joint_log_ns.append(np.asarray(logs, dtype=np.int64))
    series.joint_stamp_ns.append(np.asarray(stamps, dtype=np.int64))
    series.joint_values.append(values[: len(stamps)])
    part.canonical += 1


def json_base(part: Part, series: RobotSeries, records: bytes, base: Located) -> None:
    """The chunk's base poses from their JSON, one by one."""
    poses: FloatArray = np.full((len(base), 7), np.nan)
    for i in range(len(base)):
        try:
            poses[i] = BASE.decode(base.body(records, i)).values()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log_ns = int(base.log_ns[i])
            part.problems.append(f"{series.robot_id}: base pose at {part.when(log_ns)}: {exc}")
    series.base_log_ns.append(base.log_ns.copy())
    series.base_poses.append(poses)
    part.canonical += 1


def beats(part: Part, series: RobotSeries, records: bytes, found: Located) -> None:
    """The chunk's heartbeats (all in one decode where they all decode)."""
    bodies = [found.body(records, i) for i in range(len(found))]
    logs = found.log_ns.tolist()
    try:
        series.beats += BEATS.decode(b"[" + b",".join(bodies) + b"]")
        series.beat_log_ns += logs
        return
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    for log_ns, body in zip(logs, bodies, strict=True):
        try:
            series.beats.append(BEAT.decode(body))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            part.problems.append(f"heartbeat/{series.robot_id} at {part.when(log_ns)}: {exc}")
            continue
        series.beat_log_ns.append(log_ns)


def events(part: Part, records: bytes, found: Located) -> None:
    """The chunk's ``/events``."""
    for i in range(len(found)):
        log_ns = int(found.log_ns[i])
        try:
            part.events.append((log_ns, EVENT.decode(found.body(records, i))))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            part.problems.append(f"events at {part.when(log_ns)}: {exc}")


def stamp_ns(body: bytes) -> int:
    """A JSON joint state's ``stamp_ns``, read without parsing the rest of the JSON."""
    at = body.find(_STAMP_KEY)
    if at < 0:
        raise msgspec.ValidationError("joint state without stamp_ns")
    at += len(_STAMP_KEY)
    end = at
    while end < len(body) and body[end] not in b",}":
        end += 1
    try:
        return int(body[at:end])
    except ValueError:
        raise msgspec.ValidationError("joint state with a malformed stamp_ns") from None
