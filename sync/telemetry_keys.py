"""Authenticated telemetry: gateway keys bound to the robots and cranes they may speak for.

With a key directory (``twin live --keys DIR``) the twin's ingest socket is a CurveZMQ server
behind a ZAP authenticator of its own (its own ZeroMQ context: one ZAP handler per context,
and the command channel has the other). The binding lives beside the keys::

    DIR/telemetry.json     0600  {"<key name>": ["K1-01", "C1"], "gateway": ["*"]}

A key name is a public key file ``DIR/gateways/<name>.key``; ``"*"`` lets that key speak for
every source. ``twin keys init`` (:func:`sync.keys.init_keys`) binds each key it writes (a
per-robot key to its robot, the shared key to ``"*"``); ``twin keys add DIR NAME --robot ID
--crane ID`` makes and binds a key, ``twin keys revoke DIR NAME`` removes key and binding. The
twin reads the binding again within a second of a change
(:meth:`TelemetryKeys.reload_if_changed`), so both take effect without a restart: a revoked
key's open connection keeps nothing but ``not_authorised`` refusals.

Fails closed: a missing, unreadable or empty binding lets no key in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from sync.command import curve_server
from sync.keys import (
    ANY_SOURCE,
    BINDINGS_FILE,
    DIR_MODE,
    GATEWAYS,
    PUBLIC_MODE,
    SECRET_MODE,
    KeyDirError,
    check_key_dir,
    server_keys,
    write_bindings,
)

log = logging.getLogger(__name__)

TELEMETRY_DOMAIN: Final = "telemetry"
RELOAD_EVERY_NS: Final = 1_000_000_000


def read_bindings(root: Path) -> dict[str, list[str]]:
    """Key name -> the sources it may speak for; KeyDirError if unreadable."""
    path = root / BINDINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyDirError(f"{path}: missing (`twin keys init` or `add` writes it)") from None
    except (OSError, ValueError) as exc:
        raise KeyDirError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v)
        for k, v in data.items()
    ):
        raise KeyDirError(f"{path}: expected {{key name: [robot or crane ids]}}")
    return data


def bind(root: Path, name: str, sources: list[str]) -> None:
    """Bind key ``name`` to ``sources`` (replacing what it had)."""
    path = root / BINDINGS_FILE
    bindings = read_bindings(root) if path.exists() else {}
    bindings[name] = sorted(set(sources))
    write_bindings(root, bindings)


def add_gateway_key(root: Path, name: str, sources: list[str]) -> list[Path]:
    """Make (if new) the key pair ``gateways/NAME`` and bind it to ``sources``."""
    if not name or "/" in name or name.startswith(".") or not sources:
        raise KeyDirError(f"{name!r}: a key needs a plain name and at least one robot or crane")
    directory = root / GATEWAYS
    if not directory.is_dir():
        raise KeyDirError(f"{directory}: missing (create keys with `twin keys init DIR`)")
    written: list[Path] = []
    if not (directory / f"{name}.key").exists():
        public, secret = zmq.auth.create_certificates(directory, name)
        Path(secret).chmod(SECRET_MODE)
        Path(public).chmod(PUBLIC_MODE)
        written = [Path(public), Path(secret)]
    directory.chmod(DIR_MODE)
    bind(root, name, sources)
    return written


def revoke_gateway_key(root: Path, name: str) -> list[Path]:
    """Remove key ``name``'s binding and its files; KeyDirError if there is no such key."""
    path = root / BINDINGS_FILE
    bindings = read_bindings(root) if path.exists() else {}
    files = [root / GATEWAYS / f"{name}{suffix}" for suffix in (".key", ".key_secret")]
    if name not in bindings and not any(f.exists() for f in files):
        raise KeyDirError(f"{root}: no gateway key {name!r}")
    bindings.pop(name, None)
    write_bindings(root, bindings)
    removed = [f for f in files if f.exists()]
    for f in removed:
        f.unlink()
    return removed


class TelemetryKeys:
    """Which public key may speak for which source, read again when the directory changes.

    Also the ZAP credentials provider of the ingest domain (``callback``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        check_key_dir(root)  # the directory, the twin's own key, gateway and operator keys
        self.allowed: dict[bytes, frozenset[str]] = {}
        self._stamp: tuple[int, int] = (-1, -1)
        self._checked_ns = 0
        self.reloads = 0
        self.reload()
        if not self.allowed:
            raise KeyDirError(f"{root / BINDINGS_FILE}: binds no gateway key to any source")

    def _mtimes(self) -> tuple[int, int]:
        stamps = []
        for path in (self.root / BINDINGS_FILE, self.root / GATEWAYS):
            try:
                stamps.append(path.stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        return stamps[0], stamps[1]

    def reload(self) -> None:
        """Read the binding and the public keys (a broken binding allows nobody)."""
        self._stamp = self._mtimes()
        allowed: dict[bytes, frozenset[str]] = {}
        try:
            for name, sources in read_bindings(self.root).items():
                key_file = self.root / GATEWAYS / f"{name}.key"
                if not key_file.is_file():
                    continue  # revoked (or never made): binds nothing
                public, _ = zmq.auth.load_certificate(key_file)
                allowed[public] = frozenset(sources)
        except (KeyDirError, OSError, ValueError) as exc:
            log.warning("telemetry keys: %s; no gateway may send until it is fixed", exc)
            allowed = {}
        self.allowed = allowed
        self.reloads += 1

    def reload_if_changed(self, now_ns: int) -> None:
        """Look at most once a second whether the directory changed; if so, read it again."""
        if now_ns - self._checked_ns < RELOAD_EVERY_NS:
            return
        self._checked_ns = now_ns
        if self._mtimes() != self._stamp:
            self.reload()

    def may_speak_for(self, key: bytes | None, source: str) -> bool:
        """Whether the connection authenticated with ``key`` may send ``source``'s telemetry."""
        sources = self.allowed.get(key) if key is not None else None
        return sources is not None and (source in sources or ANY_SOURCE in sources)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: a CURVE client with this z85 public key may connect."""
        return key in self.allowed


class TelemetryAuth:
    """The ingest socket's own context and fail-closed ZAP authenticator."""

    def __init__(self, keys: TelemetryKeys) -> None:
        self.keys = keys
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger(f"{__name__}.zap"))
        self._auth.start()
        if not self._auth.is_alive():
            self.close()
            raise RuntimeError("the telemetry ZAP authenticator did not start")
        self._auth.configure_curve_callback(TELEMETRY_DOMAIN, credentials_provider=keys)

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        """A CURVE server socket in the telemetry domain (bind it afterwards)."""
        socket: zmq.Socket[bytes] = self.context.socket(kind)
        curve_server(socket, server_keys(self.keys.root), TELEMETRY_DOMAIN)
        return socket

    def close(self) -> None:
        """Stop the authenticator; end the context (close its sockets first)."""
        self._auth.stop()
        self.context.destroy(linger=0)
