"""``certs verify``: every problem of an environment's PKI on disk, with the file and the fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from .. import pki
from ..errors import SecureKafkaError
from ..model.settings import Settings
from ..model.topology import ADMIN, Node
from .manifest import Manifest


class CheckedStore(Protocol):
    """What the checker reads of an environment's PKI (``CertStore`` provides it)."""

    env: str
    settings: Settings
    root: Path

    @property
    def ca_cert_path(self) -> Path: ...

    @property
    def ca_key_path(self) -> Path: ...

    @property
    def manifest_path(self) -> Path: ...

    def exists(self) -> bool: ...

    def passphrase(self) -> str: ...

    def store_password(self, owner: str) -> str: ...

    def relative(self, path: Path) -> str: ...


def _load_pkcs12(path: Path, password: str) -> pkcs12.PKCS12KeyAndCertificates:
    """Raises ``ValueError`` with a human reason when the store is missing or does not open."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError("missing") from None
    except OSError as exc:
        raise ValueError(f"unreadable ({exc.strerror})") from None
    try:
        return pkcs12.load_pkcs12(data, password.encode())
    except ValueError:
        raise ValueError("does not open with its password from secrets.json (damaged or half-written)") from None


class PkiChecker:
    """Collects problems instead of stopping at the first: the user fixes them in one go."""

    def __init__(self, store: CheckedStore):
        self.store = store
        self.env = store.env
        self.problems: list[str] = []
        self.at = pki.now()
        self.warning = dt.timedelta(days=store.settings.profile.expiry_warning_days)

    def problem(self, path: Path, what: str, fix: str) -> None:
        self.problems.append(f"{self.store.relative(path)}: {what}: {fix}")

    def run(self) -> list[str]:
        store = self.store
        if not store.exists():
            self.problem(store.ca_cert_path, "missing", f"create the PKI with `secure-kafka certs init {self.env}`")
            return self.problems
        ca_cert = self.check_ca()
        if ca_cert is None:
            return self.problems
        try:
            manifest: Manifest | None = Manifest.load(store.manifest_path)
        except SecureKafkaError as exc:
            self.problems.append(str(exc))
            manifest = None
        for node in store.settings.topology.nodes:
            self.check_node(node, ca_cert, manifest)
        clients = store.root / "clients"
        principals = sorted(p.name for p in clients.iterdir() if p.is_dir() and not p.name.startswith(".")) if clients.is_dir() else []
        if ADMIN not in principals:
            self.problem(clients / ADMIN, "missing (every environment has an admin principal)", self.reissue(ADMIN, "client"))
        for principal in principals:
            self.check_client(principal, ca_cert, manifest)
        return self.problems

    def reissue(self, name: str, kind: str) -> str:
        option = "--client" if kind == "client" else "--node"
        return f"re-issue it with `secure-kafka certs rotate {self.env} {option} {name}`"

    def check_ca(self) -> x509.Certificate | None:
        store = self.store
        try:
            ca = pki.CA.load(store.ca_cert_path, store.ca_key_path, store.passphrase())
        except SecureKafkaError as exc:
            self.problems.append(str(exc))
            return None
        self.check_validity(store.ca_cert_path, ca.cert, f"replace it with `secure-kafka certs rotate {self.env} --ca`")
        return ca.cert

    def check_validity(self, path: Path, cert: x509.Certificate, fix: str) -> None:
        not_after = cert.not_valid_after_utc
        if not_after <= self.at:
            self.problem(path, f"certificate expired on {not_after:%Y-%m-%d}", fix)
        elif not_after - self.at < self.warning:
            days = (not_after - self.at).days
            self.problem(
                path,
                f"certificate expires in {days} days ({not_after:%Y-%m-%d}), inside the {self.warning.days}-day warning window",
                fix,
            )
        if cert.not_valid_before_utc > self.at:
            self.problem(path, f"certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", fix)

    def check_leaf(
        self, path: Path, cert: x509.Certificate, ca_cert: x509.Certificate, name: str, kind: str, fix: str
    ) -> None:
        if not pki.issued_by(cert, ca_cert):
            self.problem(path, "certificate not signed by the environment's CA", fix)
        expected_subject = pki.subject_name(name, kind, self.env).rfc4514_string()
        if cert.subject.rfc4514_string() != expected_subject:
            self.problem(path, f"subject is {cert.subject.rfc4514_string()!r}, expected {expected_subject!r}", fix)
        self.check_validity(path, cert, fix)

    def check_stores(
        self, directory: Path, owner: str, kind: str, ca_cert: x509.Certificate, fix: str
    ) -> x509.Certificate | None:
        """Opens keystore and truststore; returns the keystore's certificate if it is usable."""
        try:
            password = self.store.store_password(owner)
        except SecureKafkaError as exc:
            self.problems.append(str(exc))
            return None
        keystore_path, truststore_path = directory / "keystore.p12", directory / "truststore.p12"
        cert = None
        try:
            keystore = _load_pkcs12(keystore_path, password)
        except ValueError as reason:
            self.problem(keystore_path, str(reason), fix)
        else:
            if keystore.key is None or keystore.cert is None:
                self.problem(keystore_path, "no private key entry", fix)
            else:
                cert = keystore.cert.certificate
                if not pki.public_keys_match(keystore.key, cert):
                    self.problem(keystore_path, "private key does not match its certificate", fix)
                self.check_leaf(keystore_path, cert, ca_cert, owner, kind, fix)
        try:
            truststore = _load_pkcs12(truststore_path, password)
        except ValueError as reason:
            self.problem(truststore_path, str(reason), fix)
        else:
            trusted = {pki.fingerprint(c.certificate) for c in truststore.additional_certs}
            if pki.fingerprint(ca_cert) not in trusted:
                self.problem(truststore_path, "does not trust the environment's CA", fix)
        return cert

    def check_manifest(self, path: Path, cert: x509.Certificate, name: str, manifest: Manifest | None) -> None:
        if manifest is None:
            return
        record = manifest.current(name)
        if record is None:
            self.problem(self.store.manifest_path, f"no active record for {name!r}", "re-create it from backup")
        elif record.sha256 != pki.fingerprint(cert):
            self.problem(path, f"certificate is not the one manifest.json records for {name!r}", self.reissue(name, record.kind))

    def check_node(self, node: Node, ca_cert: x509.Certificate, manifest: Manifest | None) -> None:
        directory = self.store.root / "nodes" / node.name
        fix = self.reissue(node.name, node.role)
        if not directory.is_dir():
            self.problem(directory, f"no certificate for node {node.name}", fix)
            return
        cert = self.check_stores(directory, node.name, node.role, ca_cert, fix)
        if cert is None:
            return
        keystore_path = directory / "keystore.p12"
        expected = set(node.dns_names) | ({"localhost", "127.0.0.1"} if node.role == "broker" else set())
        if missing := sorted(expected - set(pki.sans_of(cert))):
            self.problem(keystore_path, f"SANs lack {', '.join(missing)}", fix)
        usages = pki.extended_key_usages(cert)
        if not {"serverAuth", "clientAuth"} <= usages:
            self.problem(keystore_path, "certificate lacks serverAuth/clientAuth usage", fix)
        pem_path = directory / "node.crt"
        try:
            pem_cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
        except (OSError, ValueError):
            self.problem(pem_path, "missing or not a PEM certificate", fix)
        else:
            if pem_cert != cert:
                self.problem(pem_path, "differs from the certificate in keystore.p12", fix)
        self.check_manifest(keystore_path, cert, node.name, manifest)

    def check_client(self, principal: str, ca_cert: x509.Certificate, manifest: Manifest | None) -> None:
        directory = self.store.root / "clients" / principal
        fix = self.reissue(principal, "client")
        cert_path, key_path, ca_path = directory / "client.crt", directory / "client.key", directory / "ca.crt"
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = _load_pem_key(key_path)
        except (OSError, ValueError):
            self.problem(directory, "client.crt or client.key missing or damaged", fix)
        else:
            if not pki.public_keys_match(key, cert):
                self.problem(key_path, "private key does not match client.crt", fix)
            self.check_leaf(cert_path, cert, ca_cert, principal, "client", fix)
            if pki.extended_key_usages(cert) != {"clientAuth"}:
                self.problem(cert_path, "certificate must have clientAuth usage only", fix)
            self.check_manifest(cert_path, cert, principal, manifest)
        try:
            bundle = x509.load_pem_x509_certificates(ca_path.read_bytes())
        except (OSError, ValueError):
            self.problem(ca_path, "missing or not a PEM certificate", fix)
        else:
            if pki.fingerprint(ca_cert) not in {pki.fingerprint(c) for c in bundle}:
                self.problem(ca_path, "does not contain the environment's CA", fix)
        self.check_stores(directory, principal, "client", ca_cert, fix)


def _load_pem_key(path: Path) -> object:
    return serialization.load_pem_private_key(path.read_bytes(), None)
