"""The manifest ``certs/<env>/manifest.json``: every certificate issued for an environment.

The manifest is designed for rotation: every certificate record carries a ``generation``
(1 for the first issue of a name) and an ``active`` flag. Rotation adds the next generation
as a new record, renames the new files into place, and only then flips ``active`` in one
atomic rewrite of the manifest; superseded records stay (inactive) as history.
A revoked certificate's record carries the time of its revocation (``revoked``): the CRLs
are built from those records (``revocation.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography import x509

from .. import pki
from ..fsutil import read_json, write_atomic

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate in ``manifest.json``."""

    name: str
    kind: str  # ca, broker, zookeeper, client
    subject: str
    sans: tuple[str, ...]
    serial: str  # lowercase hex
    sha256: str  # fingerprint of the DER certificate, lowercase hex
    not_before: str  # ISO 8601, UTC
    not_after: str
    generation: int
    active: bool
    path: str  # directory of its files, relative to certs/<env>/
    revoked: str | None = None  # ISO 8601, UTC: when it was revoked (in the CRL from then on)

    @classmethod
    def of(cls, name: str, kind: str, cert: x509.Certificate, path: str, generation: int = 1) -> "CertRecord":
        return cls(
            name=name,
            kind=kind,
            subject=cert.subject.rfc4514_string(),
            sans=tuple(pki.sans_of(cert)),
            serial=format(cert.serial_number, "x"),
            sha256=pki.fingerprint(cert),
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=cert.not_valid_after_utc.isoformat(),
            generation=generation,
            active=True,
            path=path,
        )

    @property
    def days_left(self) -> int:
        """Whole days until ``not_after`` from now; negative once expired."""
        return (dt.datetime.fromisoformat(self.not_after) - pki.now()).days

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "sans": list(self.sans)}


class Manifest:
    def __init__(self, env: str, records: list[CertRecord]):
        self.env = env
        self.records = records

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return read_json(path, cls._of_json, missing=f"{path}: manifest missing: restore certs/ from backup",
                         unreadable=f"{path}: unreadable manifest")

    @classmethod
    def _of_json(cls, document: dict) -> "Manifest":
        records = [CertRecord(**{**r, "sans": tuple(r["sans"])}) for r in document["certificates"]]
        return cls(document["env"], records)

    def save(self, path: Path) -> None:
        document = {
            "format": MANIFEST_FORMAT,
            "env": self.env,
            "certificates": [r.to_json() for r in self.records],
        }
        write_atomic(path, json.dumps(document, indent=1) + "\n", mode=0o600)

    def active(self) -> list[CertRecord]:
        return [r for r in self.records if r.active]

    def current(self, name: str) -> CertRecord | None:
        return next((r for r in self.records if r.active and r.name == name), None)

    def revoked(self) -> list[CertRecord]:
        return [r for r in self.records if r.revoked]

    def latest_revoked(self, name: str) -> CertRecord | None:
        return max((r for r in self.revoked() if r.name == name), key=lambda r: r.generation, default=None)

    def revoke(self, name: str, at: dt.datetime) -> CertRecord:
        """Marks the active certificate of ``name`` revoked (and no longer active)."""
        record = self.current(name)
        if record is None:
            raise KeyError(name)
        revoked = replace(record, active=False, revoked=at.isoformat())
        self.records = [revoked if r is record else r for r in self.records]
        return revoked

    def add(self, record: CertRecord) -> CertRecord:
        """Adds ``record`` as the next generation of its name; earlier ones become inactive."""
        generation = 1 + max((r.generation for r in self.records if r.name == record.name), default=0)
        self.records = [replace(r, active=False) if r.name == record.name else r for r in self.records]
        record = replace(record, generation=generation, active=True)
        self.records.append(record)
        return record
