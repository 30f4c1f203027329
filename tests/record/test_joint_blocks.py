"""The compact joint blocks: exact round trips, every fallback, and damaged or forged blocks
refused with one reason."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
import zstandard

from robots import get_model
from sync.codecs import codec_for
from sync.protocol import FrameError, Kind, pack_header
from twin.record.joint_blocks import (
    BlockBuffer,
    BlockError,
    Column,
    JointBlock,
    block_log_times,
    decode_block,
    encode_block,
    joint_states,
)
from twin.record.schemas import JOINT_STEPS, JointMsg, canonical_joints, joint_steps

JOINTS = 7
NAMES = [f"j{i}" for i in range(JOINTS)]


def _wire(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None] / 500.0
    smooth = np.sin(2 * np.pi * t + np.arange(JOINTS))
    return np.stack(
        [smooth + rng.normal(0, 5e-4, smooth.shape), 3 * smooth, 15 * smooth], axis=1
    )  # (rows, 3, joints)


def _buffer(steps: np.ndarray) -> BlockBuffer:
    return BlockBuffer("R-1", NAMES, steps)


def test_a_block_holds_exactly_the_rounded_values_the_json_channel_held() -> None:
    wire = _wire(400)
    steps = np.ones((3, JOINTS)) * JOINT_STEPS * np.array([[2.0], [1.0], [1.0]])  # a unit scale
    buffer = _buffer(steps)
    t0 = 1_800_000_000_000_000_000
    for i in range(len(wire)):
        buffer.add(t0 + i * 2_000_000 + i % 3, t0 + i * 2_000_000 - 7, 10 + i, 0xABCDEF, wire[i])
    first_log, first_stamp, last_seq, data = buffer.take()
    assert len(buffer) == 0
    assert (first_log, first_stamp, last_seq) == (t0, t0 - 7, 10 + len(wire) - 1)
    rows = decode_block(data)
    expected = canonical_joints(wire, steps)  # what the recorder wrote as JSON, per message
    assert np.array_equal(rows.position, expected[:, 0])
    assert np.array_equal(rows.velocity, expected[:, 1])
    assert np.array_equal(rows.effort, expected[:, 2])
    # made from whole steps, the block is the one the SI values make, byte for byte
    columns = (rows.log_time_ns, rows.stamp_ns, rows.seq, rows.epoch)
    assert data == encode_block("R-1", NAMES, *columns, expected)
    assert rows.log_time_ns.tolist() == [t0 + i * 2_000_000 + i % 3 for i in range(len(wire))]
    assert rows.seq.tolist() == list(range(10, 10 + len(wire)))
    assert set(rows.epoch.tolist()) == {0xABCDEF}
    # the same doubles a JSON round trip of the old per-state message gives
    message = rows.message(123)
    again = msgspec.json.decode(msgspec.json.encode(message), type=JointMsg)
    assert again == message
    assert np.array_equal(block_log_times(data), rows.log_time_ns)
    # the noisy positions in about two bytes a value once compressed as the recorder's chunks
    # are (zstd level 1), the smooth velocities and efforts in less; doubles take 8
    compressed = len(zstandard.ZstdCompressor(level=1).compress(data))
    assert compressed < 2.0 * 3 * JOINTS * len(wire), compressed


@pytest.mark.parametrize("model", ["kestrel_k1", "orca_h2", "tessel_t3"])
def test_frames_as_received_and_checked_arrays_make_the_same_block(model: str) -> None:
    """Packed float32, packed float64 degrees and MessagePack maps (each map's joints in
    another order) read in one pass at the block's end, or checked one by one as ingest
    does: the same block."""
    codec = codec_for(get_model(model))
    joints = len(codec.names)
    unit = codec.to_sample(np.ones((3, joints)))
    steps = joint_steps(np.stack([unit.positions, unit.velocities, unit.efforts]))
    names = list(codec.canonical_names)
    buffers = [BlockBuffer("R-1", names, steps, codec.accepted_values) for _ in range(3)]
    as_frames, as_arrays, mixed = buffers
    rng = np.random.default_rng(3)
    for i in range(60):
        payload = codec.encode(*rng.normal(0, 1, (3, joints)))
        if codec.packed is None and i % 2:  # the same map, its joints in reverse order
            entries = msgspec.msgpack.decode(payload)
            payload = msgspec.msgpack.encode(dict(reversed(entries.items())))
        header = pack_header(Kind.JOINT_STATE, i, 1000 + i, 5)
        checked = codec.check(payload)
        as_frames.extend(100 + i, [header], [payload])
        as_arrays.add(100 + i, 1000 + i, i, 5, checked)
        if i % 3:
            mixed.extend(100 + i, [header], [payload])
        else:
            mixed.add(100 + i, 1000 + i, i, 5, checked)
    blocks = [b.take()[3] for b in buffers]
    assert blocks[0] == blocks[1] == blocks[2]
    rows = decode_block(blocks[0])
    assert rows.names == names and len(rows) == 60


def test_a_payload_the_fast_read_cannot_take_is_checked_on_its_own() -> None:
    codec = codec_for(get_model("tessel_t3"))
    joints = len(codec.names)
    good = codec.encode(np.zeros(joints), np.zeros(joints), np.ones(joints))
    short = msgspec.msgpack.encode(dict(list(msgspec.msgpack.decode(good).items())[:-1]))
    assert codec.accepted_values([good, good]).shape == (2, 3, joints)
    with pytest.raises(FrameError, match="missing joints"):
        codec.accepted_values([good, short])


def test_values_beyond_integer_steps_are_kept_as_doubles() -> None:
    wire = _wire(20)
    wire[3, 0, 1] = np.inf
    wire[4, 2, 2] = 1e300
    wire[5, 1, 0] = np.nan
    steps = np.ones((3, JOINTS)) * JOINT_STEPS
    buffer = _buffer(steps)
    for i in range(len(wire)):
        buffer.add(i, i, i, 1, wire[i])
    rows = decode_block(buffer.take()[3])
    expected = canonical_joints(wire, steps)
    np.testing.assert_array_equal(rows.position, expected[:, 0])  # NaN where NaN
    np.testing.assert_array_equal(rows.velocity, expected[:, 1])
    np.testing.assert_array_equal(rows.effort, expected[:, 2])
    assert rows.position[3, 1] == np.inf


def test_wide_and_huge_integers_round_trip() -> None:
    count = 5
    log_ns = np.array([0, 2**40, 5, 2**62 + 3, -(2**62)], dtype=np.int64)  # wide, then i8
    seq = np.array([2**64 - 1, 0, 1, 2, 3], dtype=np.uint64).view(np.int64)
    canonical = np.zeros((count, 3, JOINTS))
    data = encode_block("R-1", NAMES, log_ns, log_ns, seq, np.zeros(count, np.int64), canonical)
    rows = decode_block(data)
    assert rows.log_time_ns.tolist() == log_ns.tolist()
    assert rows.message(0).seq == 2**64 - 1
    block = msgspec.msgpack.decode(data, type=JointBlock)
    assert block.log_time_ns.encoding == "i8"
    assert block.position.encoding == "delta" and block.position.width == 4


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_block_of_a_few_states_reads_back(count: int) -> None:
    """A robot that sent one, two or three states before a flush: a block of two states
    once crashed the reader (a read-only view where it wrote)."""
    wire = _wire(count)
    steps = np.ones((3, JOINTS)) * JOINT_STEPS
    buffer = _buffer(steps)
    for i in range(count):
        buffer.add(10 + i, 20 + i, i, 1, wire[i])
    rows = decode_block(buffer.take()[3])
    assert rows.log_time_ns.tolist() == [10 + i for i in range(count)]
    assert np.array_equal(rows.position, canonical_joints(wire, steps)[:, 0])


def _huge_step(k: np.ndarray) -> np.ndarray:
    k[10, 1, 2] = 3e12  # a difference beyond four bytes
    return k


def _not_a_number(k: np.ndarray) -> np.ndarray:
    k[10, 1, 2] = np.nan
    return k


def _beyond_exact(k: np.ndarray) -> np.ndarray:
    k[10, 2, 0] = 2.0**60
    return k


@pytest.mark.parametrize("change", [None, _huge_step, _not_a_number, _beyond_exact])
def test_the_value_columns_made_together_are_those_made_one_by_one(change: object) -> None:
    """The recorder makes a block's three value columns in one pass; they must be the
    columns each makes alone (the format did not change), fallbacks included."""
    from twin.record.joint_blocks import _SCALES, _step_columns, _steps

    k = np.rint(np.random.default_rng(4).normal(0, 3e5, (50, 3, JOINTS)))
    if callable(change):
        k = change(k)
    together = _step_columns(k)
    alone = [_steps(np.ascontiguousarray(k[:, i]), _SCALES[i]) for i in range(3)]
    assert together == alone
    expected = {None: "delta", _huge_step: "delta", _not_a_number: "f8", _beyond_exact: "f8"}
    assert {c.encoding for c in together} >= {"delta", expected[change]}  # type: ignore[index]


@pytest.mark.parametrize("count", [1, 2, 500])
def test_the_exact_columns_made_together_are_those_made_one_by_one(count: int) -> None:
    from twin.record.joint_blocks import _delta, _exact_columns

    rng = np.random.default_rng(count)
    columns = [
        np.cumsum(rng.integers(0, 3_000_000, count)) + 10**18,  # receive times
        rng.integers(-(2**40), 2**40, count),  # stamps all over: 8 bytes wide
        np.arange(count, dtype=np.int64),
        np.full(count, 0x1234, dtype=np.int64),
    ]
    assert _exact_columns(*columns) == [_delta(c, 1.0) for c in columns]
    huge = np.array([0, 2**62 + 3, -(2**62)][:count], dtype=np.int64)  # a column of "i8"
    together = _exact_columns(huge, huge)
    assert together == [_delta(huge, 1.0)] * 2


def _forged(**changes: object) -> bytes:
    buffer = _buffer(np.ones((3, JOINTS)) * JOINT_STEPS)
    for i, row in enumerate(_wire(10)):
        buffer.add(i, i, i, 1, row)
    block = msgspec.msgpack.decode(buffer.take()[3], type=JointBlock)
    return msgspec.msgpack.encode(msgspec.structs.replace(block, **changes))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a joint block"),
        (b"\x93\x01\x02", "not a joint block"),
        (_forged(count=10**9), "a block of 1000000000 states"),
        (_forged(count=11), "bytes of differences"),
        (_forged(name=[f"x{i}" for i in range(5000)]), "a block of 5000 joints"),
        (_forged(name=NAMES[:3]), "position"),
        (_forged(position=Column("delta", b"\x00" * 16, 1e6, 3, b"")), "width 3"),
        (_forged(velocity=Column("f8", b"\x00" * 8, 1e5)), "bytes of doubles"),
        (_forged(effort=Column("delta", b"", 0.0, 4, b"")), "scale 0.0"),
        (_forged(seq=Column("zip", b"")), "encoding 'zip'"),
    ],
    ids=[
        "empty",
        "not a map",
        "huge count",
        "count beyond the data",
        "too many joints",
        "names and values disagree",
        "bad width",
        "short doubles",
        "zero scale",
        "unknown code",
    ],
)
def test_a_damaged_or_forged_block_is_one_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BlockError, match=reason):
        decode_block(data)
    with pytest.raises(ValueError, match=reason):  # BlockError is one: callers catch that
        list(joint_states(data, 0, block=True))


def test_a_json_state_of_an_older_recording_still_reads() -> None:
    message = JointMsg("R-1", NAMES, 5, 6, 7, [0.1] * JOINTS, [0.2] * JOINTS, [0.3] * JOINTS)
    ((t, read),) = joint_states(msgspec.json.encode(message), 99, block=False)
    assert (t, read) == (99, message)
