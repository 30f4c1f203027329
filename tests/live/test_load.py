"""The live path under load: a status flood from real sockets never stalls ingest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import zmq

from sync.protocol import Received
from tests.helpers import ROOT, ThreadedMirror, robot_row, status_of, wait_for

Ctx = zmq.Context[zmq.Socket[bytes]]
PAUSE_BOUND_S = 0.050
FLOOD_RATE_HZ = 4000.0
FLOOD_S = 3.0


# A process that only sleeps 2 ms at a time and reports the latest it ever woke: how long
# this machine itself stalled a thread that wanted to run (shared build machines stall
# for 100 ms and more), measured over the same window as the twin.
_STALL_PROBE = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
last = time.monotonic(); worst = 0.0
while (now := time.monotonic()) < end:
    worst = max(worst, now - last - 0.002); last = now
    time.sleep(0.002)
print(worst)
"""


# A Kestrel gateway in a process of its own (so it shares no interpreter lock with the
# twin): one joint state every 2 ms for the given seconds; prints how many it sent.
_GATEWAY = """
import sys, time
import numpy as np, zmq
from robots import get_model
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import Kind
model = get_model("kestrel_k1")
n = len(model.profile.joint_names)
payload = codec_for(model).encode(np.zeros(n), np.zeros(n), np.zeros(n))
context = zmq.Context()
gateway = Gateway(context, sys.argv[1])
if not gateway.wait_for_subscriber(30.0):
    sys.exit("the twin never subscribed")
sent, start = 0, time.monotonic()
while time.monotonic() - start < float(sys.argv[2]):
    gateway.send(Kind.JOINT_STATE, "K1-01", payload)
    sent += 1
    time.sleep(max(0.0, start + sent * 0.002 - time.monotonic()))
print(sent, flush=True)
gateway.wait_for_subscriber(1.0)  # keep the socket open a moment: the last ones are in
context.destroy(linger=0)
"""


def _python(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_a_status_flood_leaves_ingest_lossless_and_never_pauses_it(
    context: Ctx, mirror: ThreadedMirror
) -> None:
    handled: list[tuple[int, int]] = []  # (handled at, sender's stamp), wall clock ns

    def sink(record: Received) -> None:
        handled.append((record.received_ns, record.header.stamp_ns))

    mirror.sinks.append(sink)
    children = [
        _python(
            "-m", "benchmarks.status_flood", mirror.endpoints.snapshot,
            "--rate", f"{FLOOD_RATE_HZ:g}", "--seconds", f"{FLOOD_S + 1.0:g}",
        )
    ]  # fmt: skip
    try:
        # the flood is on once the twin has answered its first requests
        wait_for(
            lambda: status_of(context, mirror)["requests"]["statuses"] > 100,
            timeout_s=30.0,
            what="the flood to begin",
        )
        children.append(_python("-c", _GATEWAY, mirror.endpoints.ingest, f"{FLOOD_S:g}"))
        children.append(_python("-c", _STALL_PROBE, f"{FLOOD_S:g}"))
        flood_out, gateway_out, probe_out = (c.communicate(timeout=60.0)[0] for c in children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10.0)
    sent = int(gateway_out)
    machine_stall_s = float(probe_out)
    status = wait_for(
        lambda: (
            (s := status_of(context, mirror)) and robot_row(s, "K1-01")["accepted"] >= sent and s
        ),
        timeout_s=10.0,
        what=f"{sent} joint states",
    )
    flood = json.loads(flood_out)
    assert flood["sent"] >= FLOOD_RATE_HZ * FLOOD_S * 0.5  # thousands of requests
    assert sent > 500
    # ingest lost nothing
    row = robot_row(status, "K1-01")
    assert row["accepted"] == sent and row["gaps"] == 0
    # the flood was answered or shed, and counted either way
    counters = status["requests"]
    assert counters["statuses"] + counters["shed"] + counters["send_failed"] >= 1000
    # and it never paused ingest: every joint state was handled within 50 ms of being sent
    delays_s = [(at - stamp) / 1e9 for at, stamp in handled]
    assert len(delays_s) == sent
    worst = max(delays_s)
    if machine_stall_s > PAUSE_BOUND_S:
        pytest.skip(
            f"this machine stalled a sleeping process for {machine_stall_s * 1000:.0f} ms "
            f"during the flood (ingest's largest pause: {worst * 1000:.0f} ms): a 50 ms "
            "pause bound cannot be judged here"
        )
    assert worst < PAUSE_BOUND_S, f"ingest paused {worst * 1000:.1f} ms"
