"""Key directories, the plan checks both ends apply, the gateway's own refusals, new faults.

Real files, real sockets (a CURVE server and client in one process), the real CLI, and a
real ``twin live --keys`` for a key deleted while it runs.
"""

from __future__ import annotations

import json
import math
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from robots import get_model
from scenes import load_scene
from sync.command import ENCODER, CommandAuth, curve_client, curve_server, peer_key
from sync.fanout import request_status
from sync.keys import (
    GATEWAYS,
    OPERATORS,
    KeyDirError,
    KeyPair,
    check_key_dir,
    client_keys,
    gateway_keys,
    init_keys,
    server_keys,
)
from tests.helpers import STARTUP_S, Proc, wait_for
from twin.emulator.commands import CommandDesk
from twin.emulator.faults import LIE_RAD, FaultSpecError, parse_faults
from twin.plan.checks import plan_problems
from twin.plan.model import PlanFrame, TaskPlan


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_init_writes_private_key_pairs_and_never_overwrites(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    run = [sys.executable, "-m", "twin", "keys", "init", str(root)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    for sub in ("", "server", "gateways", "operators"):
        assert _mode(root / sub) == 0o700, sub
    secrets = sorted(root.glob("*/*.key_secret"))
    assert [p.relative_to(root).as_posix() for p in secrets] == [
        "gateways/gateway.key_secret",
        "operators/operator.key_secret",
        "server/server.key_secret",
    ]
    assert {_mode(p) for p in secrets} == {0o600}
    check_key_dir(root)
    server = server_keys(root)
    again = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "use --force" in again.stderr
    assert "Traceback" not in again.stderr
    assert server_keys(root) == server  # untouched
    forced = subprocess.run([*run, "--force"], capture_output=True, timeout=60, check=False)
    assert forced.returncode == 0
    assert server_keys(root) != server


def test_per_robot_gateway_keys(tmp_path: Path) -> None:
    init_keys(tmp_path, robots=["K1-01", "T3-02"])
    assert sorted(p.name for p in (tmp_path / GATEWAYS).glob("*.key")) == [
        "K1-01.key",
        "T3-02.key",
    ]
    assert gateway_keys(tmp_path, "K1-01") != gateway_keys(tmp_path, "T3-02")
    with pytest.raises(KeyDirError, match=r"gateway\.key_secret: missing"):
        gateway_keys(tmp_path, "H2-01")  # no key of its own, and no shared one


def test_bad_key_directories_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(KeyDirError, match="no such key directory"):
        check_key_dir(tmp_path / "missing")
    init_keys(tmp_path)
    secret = tmp_path / OPERATORS / "operator.key_secret"
    secret.chmod(0o644)
    with pytest.raises(KeyDirError, match="readable by others"):
        client_keys(tmp_path, OPERATORS, "operator")
    secret.chmod(0o600)
    for public in (tmp_path / GATEWAYS).glob("*.key"):
        public.unlink()
    with pytest.raises(KeyDirError, match=r"gateways: no public keys"):
        check_key_dir(tmp_path)
    (tmp_path / GATEWAYS / "junk.key").write_text("not a certificate\n")
    with pytest.raises(KeyDirError, match=r"junk\.key"):
        check_key_dir(tmp_path)


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_only_listed_keys_pass_and_every_message_names_its_key(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    init_keys(tmp_path)
    auth = CommandAuth(context, tmp_path)
    auth.start()
    server = context.socket(zmq.ROUTER)
    try:
        curve_server(server, server_keys(tmp_path), GATEWAYS)
        server.bind("tcp://127.0.0.1:*")
        endpoint = server.getsockopt_string(zmq.LAST_ENDPOINT)
        listed = client_keys(tmp_path, GATEWAYS, "gateway")
        stranger = KeyPair(*zmq.curve_keypair())
        operator = client_keys(tmp_path, OPERATORS, "operator")  # listed, but another domain
        senders = []
        for name, keys in (("stranger", stranger), ("operator", operator), ("listed", listed)):
            socket = context.socket(zmq.DEALER)
            curve_client(socket, keys, server_keys(tmp_path).public)
            socket.setsockopt(zmq.ROUTING_ID, name.encode())
            socket.connect(endpoint)
            socket.send_multipart([b"hello", name.encode()])
            senders.append(socket)
        assert server.poll(10_000), "the listed gateway's message never came"
        frames = server.recv_multipart(copy=False)
        assert frames[0].bytes == b"listed"
        assert peer_key(frames[-1]) == listed.public
        assert auth.gateways[listed.public] == "gateway"
        assert not server.poll(1000)  # the other two never got through
        for socket in senders:
            socket.close(linger=0)
    finally:
        server.close(linger=0)
        auth.stop()


def _plan(joints: dict[str, float], *, robot: str = "K1-01", grip: float = 0.0) -> TaskPlan:
    frames = [
        PlanFrame(0.0, 0, (5.0, 5.0, 0.0), {}),
        PlanFrame(1.0, 0, (5.0, 5.0, 0.0), joints, grip),
    ]
    return TaskPlan("t", robot, frames)


def test_plan_problems_name_unknown_nan_and_out_of_limit_targets() -> None:
    model = get_model("kestrel_k1")
    scene = load_scene()
    knee = model.joint("left_knee")
    assert plan_problems(_plan({"left_knee": 0.5 * (knee.lower + knee.upper)}), model, scene) == []
    cases = {
        "no joint 'left_tail'": {"left_tail": 0.1},
        "not finite": {"left_knee": math.nan},
        "outside its limits": {"left_knee": knee.upper + 0.1},
    }
    for expected, joints in cases.items():
        (problem,) = plan_problems(_plan(joints), model, scene)
        assert expected in problem and "frame 1" in problem
    off_floor = TaskPlan("t", "K1-01", [PlanFrame(0.0, 0, (-3.0, 5.0, 0.0), {})])
    assert "off the floor" in plan_problems(off_floor, model, scene)[0]
    assert "outside 0..1" in plan_problems(_plan({}, grip=1.5), model, scene)[0]


def test_the_emulated_gateway_rejects_what_the_twin_should_never_send(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    init_keys(tmp_path)
    scene = load_scene()
    desk = CommandDesk(
        context, "tcp://127.0.0.1:1", tmp_path, scene, {"K1-01": get_model("kestrel_k1")}
    )
    try:
        link = desk.links["K1-01"]
        good = ENCODER.encode(_plan({"left_knee": 0.3}))
        assert desk.refusal(link, "K1-01", good, None) is None
        assert "this is K1-01's gateway" in (desk.refusal(link, "K1-03", good, None) or "")
        assert desk.refusal(link, "K1-01", good, "emergency stop engaged") == (
            "emergency stop engaged"
        )
        nan = ENCODER.encode(_plan({"left_knee": math.nan}))
        assert "not finite" in (desk.refusal(link, "K1-01", nan, None) or "")
        unknown = ENCODER.encode(_plan({"left_gripper": 0.1}))
        assert "no joint" in (desk.refusal(link, "K1-01", unknown, None) or "")
        assert "plan is for T3-02" in (
            desk.refusal(link, "K1-01", ENCODER.encode(_plan({}, robot="T3-02")), None) or ""
        )
        assert "does not decode" in (desk.refusal(link, "K1-01", b"\xc1", None) or "")
    finally:
        desk.close()


def test_new_fault_rules_parse_and_lie_flips() -> None:
    faults = parse_faults(
        ["T3-01:rate=2Hz", "T3-04:estop@1.5s", "K1-05:lie@2s"], ["T3-01", "T3-04", "K1-05"]
    )
    assert faults["T3-01"].js_rate_hz == 2.0
    assert faults["T3-04"].estop_at_s == 1.5
    lie = faults["K1-05"]
    assert lie.lie_rad(1.9) == 0.0
    assert {lie.lie_rad(2.1), lie.lie_rad(2.3)} == {LIE_RAD, -LIE_RAD}
    with pytest.raises(FaultSpecError, match="above 0 Hz"):
        parse_faults(["T3-01:rate=0Hz"], ["T3-01"])
    with pytest.raises(FaultSpecError, match="unknown rule"):
        parse_faults(["T3-01:estop=1"], ["T3-01"])


def _operator_dir(twin_keys: Path, where: Path) -> Path:
    """A key directory as an operator's host holds it: the twin's public key and an operator
    key pair of its own, whose public half the twin lists as ``operators/alice.key``."""
    (where / "server").mkdir(parents=True)
    (where / OPERATORS).mkdir()
    shutil.copy(twin_keys / "server" / "server.key", where / "server" / "server.key")
    public, secret = zmq.auth.create_certificates(where / OPERATORS, "operator")
    Path(secret).chmod(0o600)
    shutil.copy(public, twin_keys / OPERATORS / "alice.key")
    return where


def test_a_deleted_operator_key_stops_working_without_a_restart(tmp_path: Path) -> None:
    """A real ``twin live --keys``; ``twin dispatch`` with alice's key, then alice's key file
    deleted from the twin's ``operators/``: refused at the handshake, said in one line, while
    the twin's own operator key still gets answers, all from the same twin process."""
    keys = tmp_path / "keys"
    init_keys(keys)
    alice = _operator_dir(keys, tmp_path / "alice")
    task = tmp_path / "t.yaml"
    task.write_text("name: one_squat\nrobot: T3-02\nsteps:\n  - squat: {count: 1}\n")
    any_port = "tcp://127.0.0.1:*"
    twin = Proc(
        "live", "--ingest", any_port, "--fanout", any_port, "--snapshot", any_port,
        "--keys", str(keys), "--command", any_port, "--control", any_port, "--no-lessons",
        env={"HALL_TWIN_PREVIEWS": str(tmp_path / "previews")},
    )  # fmt: skip
    try:
        snapshot, control = twin.wait_line(
            r"snapshot (\S+) command \S+ control (\S+)", STARTUP_S
        ).groups()

        def status() -> dict[str, Any]:
            context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
            try:
                gate: dict[str, Any] = request_status(context, snapshot, timeout_s=5.0)["dispatch"]
                return gate
            finally:
                context.destroy(linger=0)

        def dispatch(key_dir: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "twin", "dispatch", str(task), "--robot", "T3-02",
                 "--keys", str(key_dir), "--control", control, "--json", "--timeout", "20"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip

        assert status()["keys"]["operators"] == ["alice", "operator"]
        # alice's key works: the request reaches the gate, which answers (a refusal: the
        # robot is not live, nothing was previewed; any answer shows the key was let in)
        allowed = dispatch(alice)
        assert allowed.returncode == 1, allowed.stderr
        assert json.loads(allowed.stdout)["outcome"] == "refused"
        requests = status()["requests"]
        assert requests == 1
        (keys / OPERATORS / "alice.key").unlink()
        wait_for(
            lambda: status()["keys"]["operators"] == ["operator"],
            timeout_s=10.0,
            interval_s=0.05,
            what="the twin to read its operators/ again",
        )
        revoked = dispatch(alice)
        assert revoked.returncode == 2, revoked.stderr
        assert revoked.stdout == ""
        lines = revoked.stderr.splitlines()
        assert lines == [
            f"twin dispatch: the twin at {control} refused your operator key "
            f"({alice / OPERATORS / 'operator.key'}): it is not, or no longer, in the twin's "
            "operators/ directory"
        ], revoked.stderr
        still = dispatch(keys)  # the twin's own operator key, never deleted
        assert still.returncode == 1, still.stderr
        assert json.loads(still.stdout)["outcome"] == "refused"
        after = status()
        assert after["requests"] == requests + 1  # alice's second request never reached it
        assert after["keys"]["reloads"] >= 1
        assert twin.popen.poll() is None  # the same twin throughout
    finally:
        twin.stop()
