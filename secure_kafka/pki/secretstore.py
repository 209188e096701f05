"""An environment's generated secrets: store passwords, SASL passwords, SCRAM passwords.

Kept in ``certs/<env>/secrets.json`` (0600, in a 0700 directory). Values are created on
first use with 256 bits of randomness and never change unless rotated; they are never
printed or logged (``repr`` of the store shows names only).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from ..errors import SecureKafkaError
from ..fsutil import write_atomic

__all__ = [
    "ZOOKEEPER_SASL",
    "QUORUM_SASL",
    "PASSWORD_ENCODER",
    "SecretStore",
    "store_password_name",
    "scram_password_name",
]

# Names of the secrets the cluster itself needs.
ZOOKEEPER_SASL = "zookeeper-sasl"  # brokers' shared SASL identity towards ZooKeeper
QUORUM_SASL = "quorum-sasl"  # ZooKeeper peers towards each other
# Encrypts the password configs a broker stores in ZooKeeper (dynamic keystore reload, rotation).
PASSWORD_ENCODER = "password-encoder"


class SecretStore:
    def __init__(self, path: Path):
        self.path = path
        self._values: dict[str, str] | None = None
        self._stamp: tuple[int, int] | None = None  # (inode, mtime) of the file last read or written

    def __repr__(self) -> str:
        return f"SecretStore({self.path}, names={sorted(self._load())})"

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _load(self) -> dict[str, str]:
        # Re-read when another SecretStore of the same file (CertStore makes its own) saved
        # since: saving a stale copy would drop the other's secrets.
        stamp = self._file_stamp()
        if self._values is None or stamp != self._stamp:
            self._stamp = stamp
            if not self.path.exists():
                self._values = {}
            else:
                try:
                    data = json.loads(self.path.read_text())
                except (OSError, ValueError) as exc:
                    raise SecureKafkaError(
                        f"{self.path}: unreadable secret store ({exc.__class__.__name__}): restore it from backup"
                    ) from None
                if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                    raise SecureKafkaError(f"{self.path}: not a secret store (expected a JSON object of strings)")
                self._values = data
        return self._values

    def names(self) -> list[str]:
        return sorted(self._load())

    def get(self, name: str) -> str:
        """The secret called ``name``, generated and saved on first use."""
        values = self._load()
        if name not in values:
            values[name] = secrets.token_urlsafe(32)
            self._save()
        return values[name]

    def has(self, name: str) -> bool:
        return name in self._load()

    def set(self, name: str, value: str) -> None:
        self._load()[name] = value
        self._save()

    def remove(self, name: str) -> None:
        if self._load().pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self._values or {}, indent=1, sort_keys=True), mode=0o600)
        self._stamp = self._file_stamp()


def store_password_name(owner: str) -> str:
    """Secret name of the keystore/truststore password of a node or client principal."""
    return f"store:{owner}"


def scram_password_name(user: str) -> str:
    return f"scram:{user}"
