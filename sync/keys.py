"""CurveZMQ key directories for the command channel: create, check, load.

One directory holds every key of a hall (``twin keys init DIR``)::

    DIR/                    0700
      server/               0700  the twin's key pair
        server.key          0600  public (z85, ZeroMQ certificate format)
        server.key_secret   0600  secret
      gateways/             0700  robot gateways' key pairs: gateway.key(_secret) shared by
                                  every gateway, or <ROBOT>.key(_secret) one per robot
      operators/            0700  key pairs of people allowed to dispatch (operator.key(_secret))
      telemetry.json        0600  which gateway key may send telemetry for which robots and
                                  cranes (:mod:`sync.telemetry_keys`); init binds a per-robot
                                  key to its robot and the shared key to every source ("*")

The twin needs ``server/server.key_secret`` and the public ``*.key`` files of
``gateways/`` and ``operators/`` (those are the allow-lists). A gateway needs
``server/server.key`` and its own secret file; an operator the same from ``operators/``.
On a real hall the secret files are then copied to their hosts (and removed here).

Every problem is a :class:`KeyDirError` naming the file and why; nothing here falls back to
running without keys.
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zmq
import zmq.auth

log = logging.getLogger(__name__)

SERVER: Final = "server"
GATEWAYS: Final = "gateways"
OPERATORS: Final = "operators"
SHARED_GATEWAY_KEY: Final = "gateway"
OPERATOR_KEY: Final = "operator"
BINDINGS_FILE: Final = "telemetry.json"
ANY_SOURCE: Final = "*"
DIR_MODE: Final = 0o700
SECRET_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644
ENV_KEYS: Final = "HALL_TWIN_KEYS"


class KeyDirError(RuntimeError):
    """A key directory that cannot be used (said where and why, in one line)."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both halves z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes


def init_keys(root: Path, *, robots: list[str] | None = None, force: bool = False) -> list[Path]:
    """Create the key directory (see the module docstring); returns the files written.

    ``robots``: one gateway key pair per robot id instead of one shared pair. Existing keys
    are never overwritten unless ``force`` (then the three subdirectories are emptied of
    ``*.key`` / ``*.key_secret`` files first, so revoked keys do not linger).
    """
    existing = [p for sub in (SERVER, GATEWAYS, OPERATORS) for p in _key_files(root / sub)]
    if existing and not force:
        raise KeyDirError(
            f"{root}: already holds {len(existing)} key files (e.g. {existing[0].name}); "
            "use --force to replace them"
        )
    for name in robots or []:
        if not name or "/" in name or name.startswith(".") or name in (SHARED_GATEWAY_KEY,):
            raise KeyDirError(f"{name!r} cannot name a gateway key file")
    _private_dir(root)
    for path in existing:
        path.unlink()
    written: list[Path] = []
    plan = [
        (SERVER, [SERVER]),
        (GATEWAYS, list(robots) if robots else [SHARED_GATEWAY_KEY]),
        (OPERATORS, [OPERATOR_KEY]),
    ]
    for sub, names in plan:
        directory = root / sub
        _private_dir(directory)
        for name in names:
            public, secret = zmq.auth.create_certificates(directory, name)
            Path(secret).chmod(SECRET_MODE)
            Path(public).chmod(PUBLIC_MODE)
            written += [Path(public), Path(secret)]
    gateway_names = list(robots) if robots else [SHARED_GATEWAY_KEY]
    write_bindings(
        root, {n: [ANY_SOURCE] if n == SHARED_GATEWAY_KEY else [n] for n in gateway_names}
    )
    written.append(root / BINDINGS_FILE)
    log.info("wrote %d key files under %s", len(written), root)
    return written


def write_bindings(root: Path, bindings: dict[str, list[str]]) -> None:
    """Write ``DIR/telemetry.json`` (key name -> sources) atomically, owner-only."""
    path = root / BINDINGS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(bindings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.chmod(SECRET_MODE)
    temporary.replace(path)


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)  # mkdir's mode is masked by the umask; an existing dir too
    except OSError as exc:
        raise KeyDirError(f"{path}: cannot create a private directory ({exc.strerror})") from None


def _key_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".key", ".key_secret"))


def _read(path: Path, *, secret: bool) -> KeyPair:
    """One certificate file; a secret file must be readable by its owner only."""
    if not path.is_file():
        raise KeyDirError(f"{path}: missing (create keys with `twin keys init DIR`)")
    if secret:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyDirError(
                f"{path}: secret key readable by others (mode {mode:o}); chmod 600 it"
            )
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyDirError(f"{path}: not a ZeroMQ certificate ({exc})") from None
    if secret and not secret_key:
        raise KeyDirError(f"{path}: holds no secret key")
    if len(public) != 40 or (secret and secret_key is not None and len(secret_key) != 40):
        raise KeyDirError(f"{path}: keys are not 40-character z85 strings")
    return KeyPair(public, secret_key or b"")


def server_keys(root: Path) -> KeyPair:
    """The twin's own key pair (``server/server.key_secret``)."""
    return _read(root / SERVER / f"{SERVER}.key_secret", secret=True)


def server_public_key(root: Path) -> bytes:
    """The twin's public key, as a client needs it (``server/server.key``)."""
    return _read(root / SERVER / f"{SERVER}.key", secret=False).public


def allowed_keys(root: Path, role: str) -> dict[bytes, str]:
    """The public keys allowed in ``role`` (``gateways`` or ``operators``): z85 key -> name
    (the file's stem: ``gateway``, a robot id, ``operator``). An empty or missing list is an
    error: a gate nobody may pass is a misconfiguration, not a policy."""
    directory = root / role
    if not directory.is_dir():
        raise KeyDirError(f"{directory}: missing (create keys with `twin keys init DIR`)")
    keys = {_read(path, secret=False).public: path.stem for path in directory.glob("*.key")}
    if not keys:
        raise KeyDirError(f"{directory}: no public keys (*.key) to allow")
    return keys


def client_keys(root: Path, role: str, name: str) -> KeyPair:
    """A client's key pair: ``ROLE/NAME.key_secret``."""
    return _read(root / role / f"{name}.key_secret", secret=True)


def gateway_keys(root: Path, robot_id: str) -> KeyPair:
    """A gateway's key pair: its own (``gateways/<ROBOT>.key_secret``) if there is one, else the
    shared ``gateways/gateway.key_secret``."""
    own = root / GATEWAYS / f"{robot_id}.key_secret"
    if own.exists():
        return _read(own, secret=True)
    return client_keys(root, GATEWAYS, SHARED_GATEWAY_KEY)


def check_key_dir(root: Path) -> None:
    """Everything the twin needs from ``root``, or KeyDirError."""
    if not root.is_dir():
        raise KeyDirError(f"{root}: no such key directory (create it with `twin keys init DIR`)")
    server_keys(root)
    allowed_keys(root, GATEWAYS)
    allowed_keys(root, OPERATORS)
