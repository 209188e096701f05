"""The operations trail: who changed an environment's security, when, with what effect.

One JSON line per operation in ``certs/<env>/audit/operations.jsonl``: sequence number, time,
operator (``$SECURE_KAFKA_OPERATOR``, else the OS user), command, arguments, outcome, and
what changed. Nothing secret is written: the arguments recorded are the operation's own
(names, flags), never a password, key or passphrase, and a failure is its one-line message.

Tamper evidence: each entry carries the MAC of the one before it (a chain) and its own
HMAC-SHA256 under the environment's trail key (``secrets.json``, 0600); ``head.json`` holds the
count and the last MAC, MACed too, so a cut tail shows. ``verify`` names the first entry that
was changed, removed, reordered or cut off. What it proves: the trail is as the tool wrote it,
to anyone who can edit the trail but not read the key (a copy shipped elsewhere, a log
collector, a careless edit). What it cannot: someone who holds the key (root on the host, or
whoever reads ``certs/<env>/``) can write a consistent trail of their own; and ``down --purge``
removes it with the rest of the environment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import SecureKafkaError
from ..fsutil import append_synced, write_atomic
from ..pki.secretstore import SecretStore

__all__ = ["OPERATOR_ENV", "TRAIL_KEY", "Trail", "Verdict"]

OPERATOR_ENV = "SECURE_KAFKA_OPERATOR"
TRAIL_KEY = "audit-trail-mac"  # the SecretStore entry of the MAC key
FORMAT = 1
GENESIS = "0" * 64  # what the first entry follows


@dataclass(frozen=True)
class Verdict:
    entries: int
    problem: str | None  # the first place the trail is not as written, or None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _canonical(entry: dict) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True, separators=(",", ":")).encode()


def _operator() -> str:
    if named := os.environ.get(OPERATOR_ENV):
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


class Trail:
    """An environment's operations trail under ``directory`` (``certs/<env>/audit``)."""

    def __init__(self, directory: Path, secrets: SecretStore):
        self.directory = directory
        self.path = directory / "operations.jsonl"
        self.head_path = directory / "head.json"
        self.secrets = secrets

    @classmethod
    def of_environment(cls, certs_dir: Path) -> Trail:
        """The trail of the environment whose files are in ``certs_dir`` (``certs/<env>``), made
        0700 if it does not exist yet (``init`` records itself before any certificate)."""
        certs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(certs_dir / "audit", SecretStore(certs_dir / "secrets.json"))

    def _mac(self, data: bytes) -> str:
        return hmac.new(self.secrets.get(TRAIL_KEY).encode(), data, hashlib.sha256).hexdigest()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two CLI runs at once append one after the other
            yield

    def append(self, command: str, args: dict[str, object], outcome: str, changes: dict[str, object]) -> dict:
        """Appends one entry (flushed and synced before the head moves) and returns it."""
        with self._locked():
            head = self._head()
            entry = {
                "format": FORMAT, "seq": head["count"] + 1,
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                "operator": _operator(), "command": command, "args": args, "outcome": outcome,
                "changes": changes, "prev": head["last"],
            }
            entry["mac"] = self._mac(_canonical(entry))
            append_synced(self.path, (json.dumps(entry, sort_keys=True) + "\n").encode())
            self._write_head(entry["seq"], entry["mac"])
            return entry

    def _head(self) -> dict:
        if not self.head_path.exists():
            return {"count": 0, "last": GENESIS}
        try:
            return json.loads(self.head_path.read_text())
        except (OSError, ValueError) as exc:
            raise SecureKafkaError(f"{self.head_path}: unreadable ({exc.__class__.__name__}): "
                                   "run `secure-kafka audit verify` and restore the trail from backup") from None

    def _write_head(self, count: int, last: str) -> None:
        head = {"count": count, "last": last}
        head["mac"] = self._mac(_canonical(head))
        write_atomic(self.head_path, json.dumps(head, sort_keys=True) + "\n", mode=0o600)

    def entries(self) -> list[dict]:
        """Every entry, as written (unverified); unreadable lines are skipped (``verify`` names them)."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def verify(self) -> Verdict:
        """The whole trail checked: chain, MACs, sequence, and the head's count and last MAC."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        previous, count = GENESIS, 0
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                seq, prev, mac = entry["seq"], entry["prev"], entry["mac"]
            except (ValueError, KeyError, TypeError):
                return Verdict(count, f"line {number}: not an entry of the trail (damaged or edited)")
            if not hmac.compare_digest(str(mac), self._mac(_canonical(entry))):
                return Verdict(count, f"entry {seq} (line {number}): changed after it was written")
            if seq != count + 1 or prev != previous:
                return Verdict(count, f"entry {seq} (line {number}) does not follow entry {count}: "
                                      f"an entry before it was removed or the entries were reordered")
            previous, count = mac, seq
        head = self._head()
        if count == 0 and not self.head_path.exists():
            return Verdict(0, None)
        if not hmac.compare_digest(str(head.get("mac")), self._mac(_canonical({k: head.get(k) for k in ("count", "last")}))):
            return Verdict(count, f"{self.head_path.name}: changed after it was written")
        if head["count"] != count or head["last"] != previous:
            return Verdict(count, f"the trail ends at entry {count}, its head says {head['count']}: "
                                  f"entries after {count} were removed")
        return Verdict(count, None)

    @contextlib.contextmanager
    def recorded(self, command: str, **args: object) -> Iterator[dict[str, object]]:
        """Records the operation in the block: its outcome, and what it put in the yielded dict."""
        changes: dict[str, object] = {}
        try:
            yield changes
        except SecureKafkaError as exc:
            self.append(command, args, f"failed: {exc}", changes)
            raise
        except BaseException as exc:
            self.append(command, args, f"interrupted: {exc.__class__.__name__}", changes)
            raise
        self.append(command, args, "ok", changes)
