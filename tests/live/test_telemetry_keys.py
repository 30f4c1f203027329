"""Authenticated telemetry: keys bound to robots, forged frames refused or at least visible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from robots import get_model
from scenes import load_scene
from sync.addresses import Endpoints
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.keys import GATEWAYS, KeyPair, client_keys, init_keys, server_public_key
from sync.protocol import Kind
from sync.telemetry_keys import (
    add_gateway_key,
    read_bindings,
    revoke_gateway_key,
)
from tests.helpers import ThreadedMirror, robot_row, status_of, wait_for
from tests.live.test_mirror import random_state

Ctx = zmq.Context[zmq.Socket[bytes]]
ANY = "tcp://127.0.0.1:*"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    init_keys(root, robots=["K1-01", "K1-03"])
    return root


@pytest.fixture(params=[1, 2], ids=["in-process", "2-ingest-workers"])
def keyed(context: Ctx, keys: Path, request: pytest.FixtureRequest) -> Iterator[ThreadedMirror]:
    """The keyed twin, ingesting in its own thread or in two worker processes (each
    authenticating its own connections and reloading the key directory)."""
    twin = ThreadedMirror(
        load_scene(), Endpoints(ANY, ANY, ANY), context=context, keys=keys, workers=request.param
    )
    twin.start_thread()
    yield twin
    twin.stop_thread()
    twin.close()


def _gateway(context: Ctx, twin: ThreadedMirror, pair: KeyPair, keys: Path) -> Gateway:
    gateway = Gateway(context, twin.endpoints.ingest, curve=(pair, server_public_key(keys)))
    return gateway


def _payload() -> bytes:
    return codec_for(get_model("kestrel_k1")).encode(*random_state("kestrel_k1", 7))


def _until(context: Ctx, twin: ThreadedMirror, test: Any, what: str) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := status_of(context, twin)) and test(s) and s, timeout_s=10.0, what=what
    )
    return status


def test_init_binds_each_robot_key_to_its_robot(keys: Path) -> None:
    assert read_bindings(keys) == {"K1-01": ["K1-01"], "K1-03": ["K1-03"]}


def test_a_frame_for_a_robot_its_key_is_not_bound_to_changes_nothing(
    context: Ctx, keyed: ThreadedMirror, keys: Path
) -> None:
    with _gateway(context, keyed, client_keys(keys, GATEWAYS, "K1-01"), keys) as gateway:
        assert gateway.wait_for_subscriber(10.0)
        gateway.send(Kind.JOINT_STATE, "K1-01", _payload())  # its own robot: accepted
        # a forged frame for K1-03 (a new epoch) from K1-01's key
        gateway.send(Kind.JOINT_STATE, "K1-03", _payload())
        status = _until(
            context,
            keyed,
            lambda s: (
                robot_row(s, "K1-01")["accepted"] == 1
                and robot_row(s, "K1-03")["refused"].get("not_authorised") == 1
            ),
            "the forged frame refused",
        )
    k3 = robot_row(status, "K1-03")
    assert k3["accepted"] == 0 and k3["epoch"] == 0 and k3["liveness"] == "GONE"
    assert status["totals"]["bad_frames"] == {"not_authorised": 1}


def test_an_unknown_key_cannot_even_connect(
    context: Ctx, keyed: ThreadedMirror, keys: Path, tmp_path: Path
) -> None:
    _public, secret = zmq.auth.create_certificates(tmp_path, "stranger")
    stranger = KeyPair(*zmq.auth.load_certificate(secret))  # type: ignore[arg-type]
    with _gateway(context, keyed, stranger, keys) as gateway:
        for _ in range(20):
            gateway.send(Kind.JOINT_STATE, "K1-01", _payload())
        status = _until(
            context,
            keyed,
            lambda s: s["totals"]["ingest_connections"].get("handshake_failed_auth", 0) >= 1,
            "the handshake refused",
        )
    assert status["totals"]["received"] == 0
    assert robot_row(status, "K1-01")["epoch"] == 0


def test_a_revoked_key_stops_working_without_a_restart_and_an_added_one_starts(
    context: Ctx, keyed: ThreadedMirror, keys: Path
) -> None:
    with _gateway(context, keyed, client_keys(keys, GATEWAYS, "K1-01"), keys) as gateway:
        assert gateway.wait_for_subscriber(10.0)
        gateway.send(Kind.JOINT_STATE, "K1-01", _payload())
        _until(context, keyed, lambda s: robot_row(s, "K1-01")["accepted"] == 1, "accepted")
        revoke_gateway_key(keys, "K1-01")

        def refused_now(s: dict[str, Any]) -> bool:
            gateway.send(Kind.JOINT_STATE, "K1-01", _payload())  # the same open connection
            return bool(robot_row(s, "K1-01")["refused"].get("not_authorised", 0) > 0)

        status = _until(context, keyed, refused_now, "the revoked key refused")
        # from then on, nothing of that connection counts
        accepted = robot_row(status, "K1-01")["accepted"]
        refused = robot_row(status, "K1-01")["refused"]["not_authorised"]
        for _ in range(10):
            gateway.send(Kind.JOINT_STATE, "K1-01", _payload())
        status = _until(
            context,
            keyed,
            lambda s: robot_row(s, "K1-01")["refused"]["not_authorised"] >= refused + 10,
            "ten more refused",
        )
    assert robot_row(status, "K1-01")["accepted"] == accepted
    # a key added while the twin runs works once the twin has read it (within a second)
    telemetry_keys = keyed.telemetry_keys
    assert telemetry_keys is not None
    reloads = telemetry_keys.reloads
    add_gateway_key(keys, "crane-gw", ["C1", "K1-05"])
    wait_for(lambda: telemetry_keys.reloads > reloads, timeout_s=5.0, what="re-read")
    with _gateway(context, keyed, client_keys(keys, GATEWAYS, "crane-gw"), keys) as gateway:
        assert gateway.wait_for_subscriber(10.0)
        gateway.send(Kind.JOINT_STATE, "K1-05", _payload())
        _until(context, keyed, lambda s: robot_row(s, "K1-05")["accepted"] == 1, "accepted")


def test_a_takeover_without_keys_is_visible(context: Ctx, mirror: ThreadedMirror) -> None:
    payload = _payload()
    real = Gateway(context, mirror.endpoints.ingest)
    forger = Gateway(context, mirror.endpoints.ingest)  # another connection, another epoch
    try:
        assert real.wait_for_subscriber(10.0) and forger.wait_for_subscriber(10.0)
        real.send(Kind.JOINT_STATE, "K1-05", payload)
        _until(context, mirror, lambda s: robot_row(s, "K1-05")["accepted"] == 1, "accepted")
        forger.send(Kind.JOINT_STATE, "K1-05", payload)  # one forged frame: a new epoch
        _until(context, mirror, lambda s: robot_row(s, "K1-05")["epoch"] == forger.epoch, "forged")
        for _ in range(5):
            real.send(Kind.JOINT_STATE, "K1-05", payload)  # the real gateway carries on
        status = _until(
            context, mirror, lambda s: robot_row(s, "K1-05")["stale_epoch"] == 5, "interleaving"
        )
    finally:
        real.close()
        forger.close()
    row = robot_row(status, "K1-05")
    assert row["epochs_interleaved"] == 5 and status["totals"]["epochs_interleaved"] == 5
    takeovers = [e for e in mirror.events if e.kind == "takeover" and e.source_id == "K1-05"]
    assert len(takeovers) == 1  # told once, counted every time


def test_the_same_forgery_with_keys_is_refused(
    context: Ctx, keyed: ThreadedMirror, keys: Path
) -> None:
    payload = _payload()
    real = _gateway(context, keyed, client_keys(keys, GATEWAYS, "K1-03"), keys)
    forger = _gateway(context, keyed, client_keys(keys, GATEWAYS, "K1-01"), keys)
    try:
        assert real.wait_for_subscriber(10.0) and forger.wait_for_subscriber(10.0)
        real.send(Kind.JOINT_STATE, "K1-03", payload)
        forger.send(Kind.JOINT_STATE, "K1-03", payload)  # a new epoch, from the wrong key
        for _ in range(5):
            real.send(Kind.JOINT_STATE, "K1-03", payload)
        status = _until(
            context,
            keyed,
            lambda s: (
                robot_row(s, "K1-03")["accepted"] == 6
                and robot_row(s, "K1-03")["refused"].get("not_authorised") == 1
            ),
            "the real gateway mirrored, the forger refused",
        )
    finally:
        real.close()
        forger.close()
    row = robot_row(status, "K1-03")
    assert row["epoch"] == real.epoch and row["epoch_changes"] == 0
    assert row["epochs_interleaved"] == 0 and row["stale_epoch"] == 0
