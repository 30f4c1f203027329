"""The batched hot path: a batch is accounted for exactly like its messages one by one."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.codecs import codec_for
from sync.protocol import Heartbeat, Kind, encode_payload, pack_header, topic
from sync.streams import SeqVerdict, StreamTracker
from tests.live.test_mirror import random_state
from twin.live.mirror import Mirror

ANY = "tcp://127.0.0.1:*"
_VOLATILE = ("latency", "delay", "liveness_for_s", "clock_offset")


def _js(robot_id: str, seq: int, payload: bytes, epoch: int = 5) -> list[bytes]:
    return [
        topic(Kind.JOINT_STATE, robot_id),
        pack_header(Kind.JOINT_STATE, seq, 7, epoch),
        payload,
    ]


def _payload(model: str, seed: int) -> bytes:
    return codec_for(get_model(model)).encode(*random_state(model, seed))


def _messages() -> list[list[bytes]]:
    k1, h2, t3 = (_payload(m, 1) for m in ("kestrel_k1", "orca_h2", "tessel_t3"))
    n = len(get_model("kestrel_k1").profile.joint_names)
    nan = np.zeros(n)
    nan[3] = np.nan
    not_finite = codec_for(get_model("kestrel_k1")).encode(nan, np.zeros(n), np.zeros(n))
    beat = Heartbeat(
        mode="running",
        estop=False,
        protective_stop=False,
        manufacturer="Kestrel",
        model="kestrel_k1",
    )
    return [
        _js("K1-01", 0, k1),
        _js("K1-01", 1, not_finite),  # refused: never advances the stream
        _js("K1-01", 1, k1),
        _js("K1-01", 1, k1),  # a duplicate
        _js("K1-01", 4, k1),  # two lost
        _js("H2-01", 3, h2),  # joined mid-epoch
        _js("H2-01", 4, h2[:-8]),  # wrong size: the general path
        _js("H2-01", 5, h2),
        _js("T3-01", 0, t3),  # a map payload
        _js("K1-01", 0, k1, epoch=6),  # a restart
        _js("K1-01", 9, k1, epoch=5),  # the retired epoch
        [
            topic(Kind.HEARTBEAT, "K1-01"),
            pack_header(Kind.HEARTBEAT, 0, 7, 5),
            encode_payload(beat),
        ],
        _js("K1-01", 1, k1, epoch=6),
        [b"js/K1-01", b"short", k1],
        [b"js/NOPE-1", pack_header(Kind.JOINT_STATE, 0, 7, 5), k1],
        [b"x"],
    ]


def _state(twin: Mirror) -> dict[str, Any]:
    ingest = twin.ingest
    rows = [
        {k: v for k, v in link.status(10**12).items() if not k.startswith(_VOLATILE)}
        for link in twin.robots.values()
    ]
    raw = {
        rid: None if link.wire_joints() is None else link.wire_joints().tolist()  # type: ignore[union-attr]
        for rid, link in twin.robots.items()
    }
    return {
        "counts": (ingest.received, ingest.accepted, ingest.bytes_in, ingest.unattributed),
        "bad": dict(ingest.bad_frames),
        "rows": rows,
        "raw": raw,
        "last_rx": {rid: link.liveness.last_rx_ns for rid, link in twin.robots.items()},
        "events": [(e.kind, e.source_id) for e in twin.events],
    }


def test_a_batch_is_accounted_for_exactly_like_its_messages_one_by_one() -> None:
    one, batched = (Mirror(load_scene(), Endpoints(ANY, ANY, ANY)) for _ in range(2))
    try:
        messages = _messages()
        for frames in messages:
            one.handle(frames, 1_000, 2_000)
        batched.handle_batch(messages, 1_000, 2_000, None)
        assert _state(batched) == _state(one)
        assert batched.ingest.bad_frames["bad_payload"] == 2  # not finite; wrong size
        assert batched.robots["K1-01"].tracker(Kind.JOINT_STATE).gaps == 2  # seq 2, 3 of epoch 5
    finally:
        one.close()
        batched.close()


def test_only_the_newest_state_of_a_batch_is_applied_and_the_world_follows_on_sync() -> None:
    twin = Mirror(load_scene(), Endpoints(ANY, ANY, ANY))
    try:
        states = [random_state("kestrel_k1", seed) for seed in range(5)]
        codec = codec_for(get_model("kestrel_k1"))
        twin.handle_batch([_js("K1-01", i, codec.encode(*s)) for i, s in enumerate(states)],
                          1_000, 2_000, None)  # fmt: skip
        link = twin.robots["K1-01"]
        assert twin.joint_states_applied == 1 and link.joints is not None
        np.testing.assert_allclose(link.joints.positions, states[-1][0], atol=1e-6)
        assert twin.world_updates == 0 and link.world_behind
        assert twin.sync_world() == 1 and twin.sync_world() == 0
        in_world = twin.world.joint_positions("K1-01")
        names = get_model("kestrel_k1").profile
        for i, vendor in enumerate(names.joint_names):
            assert abs(in_world[names.canonical_name(vendor)] - states[-1][0][i]) < 1e-6
    finally:
        twin.close()


def test_the_in_order_fast_path_agrees_with_observe() -> None:
    rng = random.Random(3)
    for _ in range(200):
        fast, slow = StreamTracker(), StreamTracker()
        for _ in range(30):
            epoch = rng.choice((1, 1, 1, 2, 3))
            seq = max(0, fast.last_seq + rng.choice((-2, 0, 1, 1, 1, 2, 5, 20_000_000)))
            if fast.in_order(epoch, seq):
                assert slow.observe(epoch, seq) is SeqVerdict.ACCEPT
            else:  # nothing changed: the general path decides, as for the other tracker
                assert fast == slow
                assert fast.observe(epoch, seq) == slow.observe(epoch, seq)
            assert fast == slow
