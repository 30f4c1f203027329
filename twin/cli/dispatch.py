"""The dispatch commands of ``twin``: ``keys init`` and ``dispatch``; the gate for ``live``.

Registered on the main app by :func:`register` (from :mod:`twin.cli.app`). Exit status of
``twin dispatch``: 0 accepted (or done, with ``--wait``), 1 refused by the twin or rejected
(or failed) by the robot, 2 bad input or no answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import msgspec
import typer
import zmq
from rich.console import Console
from zmq.utils.monitor import recv_monitor_message

from hallfiles.limits import InputTooLarge, read_bytes_bounded
from sync.addresses import ENV_SNAPSHOT, Endpoints
from sync.command import (
    DISPATCH,
    ENCODER,
    MAX_TIMEOUT_S,
    OUTCOME,
    OUTCOME_DECODER,
    DispatchOutcome,
    DispatchRequest,
    curve_client,
)
from sync.keys import (
    ENV_KEYS,
    OPERATOR_KEY,
    OPERATORS,
    KeyDirError,
    client_keys,
    init_keys,
    server_public_key,
)
from twin.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, ControlOpt, KeysOpt

if TYPE_CHECKING:
    from twin.dispatch.gate import DispatchGate
    from twin.live.mirror import Mirror
    from twin.preview.store import Comparison

log = logging.getLogger(__name__)

EXIT_REFUSED: Final = EXIT_FAILED
NO_CHANNEL: Final = "twin runs without a command channel; start it with --keys DIR"
_REPLY_MARGIN_S: Final = 2.0
_OK: Final = frozenset({"accepted", "done"})
_NO: Final = frozenset({"refused", "rejected", "failed"})

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

keys_app = typer.Typer(help="CurveZMQ keys for the command channel.", no_args_is_help=True)


@keys_app.command("init")
def keys_init_cmd(
    directory: Annotated[Path, typer.Argument(help="Directory to create the keys in.")],
    robot: Annotated[
        list[str] | None,
        typer.Option(
            "--robot",
            help="One gateway key pair for this robot (repeatable); "
            "default: one pair shared by every gateway.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing keys.")] = False,
) -> None:
    """Create server, gateway and operator key pairs (secret files readable by the owner only)."""
    try:
        written = init_keys(directory, robots=robot or None, force=force)
    except KeyDirError as exc:
        err.print(f"twin keys init: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for path in written:
        out.print(str(path), markup=False)


@keys_app.command("add")
def keys_add_cmd(
    directory: Annotated[Path, typer.Argument(help="The key directory.")],
    name: Annotated[str, typer.Argument(help="The gateway key's name (gateways/NAME.key).")],
    robot: Annotated[list[str] | None, typer.Option("--robot", help="A robot id.")] = None,
    crane: Annotated[list[str] | None, typer.Option("--crane", help="A crane id.")] = None,
) -> None:
    """Make a gateway key (if new) and bind it to robots and cranes; a running twin takes it
    within a second."""
    from sync.telemetry_keys import add_gateway_key

    try:
        written = add_gateway_key(directory, name, [*(robot or []), *(crane or [])])
    except (KeyDirError, OSError) as exc:
        err.print(f"twin keys add: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for path in written:
        out.print(str(path), markup=False)
    out.print(f"{name}: {', '.join([*(robot or []), *(crane or [])])}", markup=False)


@keys_app.command("revoke")
def keys_revoke_cmd(
    directory: Annotated[Path, typer.Argument(help="The key directory.")],
    name: Annotated[str, typer.Argument(help="The gateway key to revoke.")],
) -> None:
    """Remove a gateway key and its binding; a running twin refuses it within a second."""
    from sync.telemetry_keys import revoke_gateway_key

    try:
        removed = revoke_gateway_key(directory, name)
    except (KeyDirError, OSError) as exc:
        err.print(f"twin keys revoke: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for path in removed:
        out.print(f"removed {path}", markup=False)


def dispatch_cmd(
    task: Annotated[Path, typer.Argument(help="Task file (YAML) that passed `twin preview`.")],
    robot: Annotated[str, typer.Option("--robot", help="The robot to send it to.")],
    keys: KeysOpt = None,
    control: ControlOpt = None,
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            envvar=ENV_SNAPSHOT,
            help="The twin's status endpoint, to find its control endpoint "
            "\\[default: tcp://127.0.0.1:7703]",
        ),
    ] = None,
    timeout_s: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            max=MAX_TIMEOUT_S,
            help="Seconds the twin may take to answer (default 10; 300 with --wait).",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the robot is done.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="With --wait: once the robot is done, compare the preview with its run in this "
            "recording (the twin's --record file) and keep the comparison (as `twin preview "
            "--against`).",
        ),
    ] = None,
) -> None:
    """Send a previewed task to a robot, through the twin's dispatch gate."""
    if compare is not None and not wait:
        err.print("twin dispatch: --compare needs --wait", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    timeout = timeout_s if timeout_s is not None else (300.0 if wait else 10.0)
    try:
        text = read_bytes_bounded(task)
    except OSError as exc:
        err.print(f"twin dispatch: {task}: cannot read ({exc.strerror})", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except InputTooLarge as exc:
        err.print(f"twin dispatch: {task}: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        endpoint = control or _control_endpoint(context, snapshot)
        if keys is None:
            err.print(f"twin dispatch: no key directory; pass --keys DIR or set {ENV_KEYS}")
            raise typer.Exit(EXIT_BAD_INPUT)
        request = DispatchRequest(str(task.resolve()), text, robot, wait, timeout)
        outcome = _ask(context, endpoint, keys, request, timeout + _REPLY_MARGIN_S)
    finally:
        context.destroy(linger=0)
    compared = _last_comparison(text, robot)  # the last run compared, if any
    if compare is not None and outcome.outcome == "done":
        compared = _compare(task, text, robot, compare, outcome.dispatch_id) or compared
    if as_json:
        shown = msgspec.to_builtins(outcome)
        if compared is not None:
            shown["against"] = compared.figures  # the last compared run (twin preview --against)
        sys.stdout.write(json.dumps(shown) + "\n")
    else:
        why = f" ({outcome.condition})" if outcome.condition else ""
        out.print(f"{outcome.outcome}{why}: {outcome.detail}", markup=False)
        if compared is not None:
            from twin.cli.preview_against import summary_line

            out.print(summary_line(compared), markup=False)
    if outcome.outcome in _OK:
        return
    raise typer.Exit(EXIT_REFUSED if outcome.outcome in _NO else EXIT_BAD_INPUT)


def _last_comparison(text: bytes, robot: str) -> Comparison | None:
    """The kept comparison of these task bytes' preview with a run on ``robot`` (``twin preview
    --against``), if any."""
    from twin.preview.store import read_comparison

    return read_comparison(hashlib.sha256(text).hexdigest(), robot)


def _compare(
    task: Path, text: bytes, robot: str, recording: Path, dispatch_id: str
) -> Comparison | None:
    """The run's comparison (kept); None, said in one line, when it cannot be made (the dispatch
    itself succeeded: the exit status stays 0)."""
    from twin.cli.preview_against import compare_dispatch
    from twin.preview.dispatched import AgainstError
    from twin.record.damage import collect_damage, damage_lines

    with collect_damage() as damaged:
        try:
            return compare_dispatch(task, text, robot, recording, dispatch_id)
        except (AgainstError, OSError) as exc:
            err.print(f"twin dispatch --compare: not compared: {exc}", markup=False)
            return None
        finally:  # the twin's own file is still being written: cut, by nature; damage is news
            for line in damage_lines([r for r in damaged if r.chunks or r.gaps]):
                err.print(f"twin dispatch --compare: warning: {line}", markup=False)


def _control_endpoint(context: zmq.Context[zmq.Socket[bytes]], snapshot: str | None) -> str:
    """Ask the twin's status endpoint where its control endpoint is (refuse if it has none)."""
    from sync.fanout import RequestError, request_status

    where = Endpoints.resolve(snapshot=snapshot).snapshot
    try:
        status = request_status(context, where, timeout_s=5.0)
    except RequestError as exc:
        err.print(f"twin dispatch: {exc} (is `twin live` running?)", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    gate = status.get("dispatch")
    if not gate:
        err.print(f"refused: {NO_CHANNEL}", markup=False)
        raise typer.Exit(EXIT_REFUSED)
    return str(gate["control"])


def _ask(
    context: zmq.Context[zmq.Socket[bytes]],
    endpoint: str,
    keys: Path,
    request: DispatchRequest,
    timeout_s: float,
) -> DispatchOutcome:
    try:
        mine = client_keys(keys, OPERATORS, OPERATOR_KEY)
        server = server_public_key(keys)
    except KeyDirError as exc:
        err.print(f"twin dispatch: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    socket = context.socket(zmq.REQ)
    # the handshake's outcome: a key the twin does not allow (never listed, or deleted since)
    # is said at once, not as a timeout
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        curve_client(socket, mine, server)
        socket.setsockopt(zmq.SNDTIMEO, 5000)
        socket.connect(endpoint)
        socket.send_multipart([DISPATCH, ENCODER.encode(request)])
        frames = _reply_or_refusal(socket, monitor, timeout_s)
    except zmq.Again:
        err.print(
            f"twin dispatch: no answer from {endpoint} within {timeout_s:g} s (is the twin "
            f"running with --keys, and is {keys / OPERATORS} your key's directory?)",
            markup=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except zmq.ZMQError as exc:
        err.print(f"twin dispatch: cannot ask {endpoint!r}: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        socket.disable_monitor()
        monitor.close(linger=0)
        socket.close(linger=0)
    if frames is None:
        mine_file = keys / OPERATORS / f"{OPERATOR_KEY}.key"
        err.print(
            f"twin dispatch: the twin at {endpoint} refused your operator key ({mine_file}): "
            "it is not, or no longer, in the twin's operators/ directory",
            markup=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    if len(frames) != 2 or frames[0] != OUTCOME:
        err.print(f"twin dispatch: unexpected reply from {endpoint}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        return OUTCOME_DECODER.decode(frames[1])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        err.print(f"twin dispatch: bad reply from {endpoint}: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _reply_or_refusal(
    socket: zmq.Socket[bytes], monitor: zmq.Socket[bytes], timeout_s: float
) -> list[bytes] | None:
    """The twin's reply, or None when its authenticator refused our key; zmq.Again after
    ``timeout_s`` with neither."""
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        ready = dict(poller.poll(max(1, int(left * 1000))))
        if socket in ready:
            return socket.recv_multipart()
        if monitor in ready:
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return None
    raise zmq.Again()


def start_gate(mirror: Mirror, keys: Path, endpoints: Endpoints) -> DispatchGate:
    """The gate for ``twin live --keys``; a bad key directory exits 2, a busy port 1."""
    from twin.dispatch.gate import DispatchGate, GateError

    try:
        gate = DispatchGate(mirror, keys, endpoints.command, endpoints.control)
    except (KeyDirError, GateError, RuntimeError) as exc:
        err.print(f"twin live: {exc}; no command channel", markup=False)
        mirror.close()
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as exc:
        err.print(f"twin live: {exc}", markup=False)
        mirror.close()
        raise typer.Exit(1) from None
    mirror.gate = gate
    return gate


def register(app: typer.Typer) -> None:
    """Add ``keys`` and ``dispatch`` to the ``twin`` command."""
    app.add_typer(keys_app, name="keys")
    app.command("dispatch")(dispatch_cmd)
