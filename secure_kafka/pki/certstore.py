"""An environment's PKI under ``certs/<env>/``: create it, issue client certificates, list, verify.

Layout (see docs/architecture.md; dirs 0700, private files 0600)::

    passphrase            dev/ci only: the generated environment passphrase
    secrets.json          store passwords (``store:<owner>``) and other generated secrets
    manifest.json         every issued certificate, with its generation
    ca/ca.crt, ca/ca.key  the CA; the key encrypted with the passphrase
    nodes/<node>/         keystore.p12, truststore.p12, node.crt; owned by uid 10001
    clients/<principal>/  client.crt, client.key, ca.crt, keystore.p12, truststore.p12
    crl/<CA name>.crl     the CA's signed CRL; each node directory holds a copy (``revocation``)
    archive/<name>/gen-N/ superseded and revoked certificates' files

Nothing is ever half-written: ``init`` builds the whole tree in a temp directory beside
``certs/<env>`` and renames it into place; ``add_client`` does the same for one client dir.

The manifest's records live in ``manifest.py``, the checks behind ``verify`` in ``checker.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import pki
from ..errors import SecureKafkaError
from ..fsutil import archive_dir, write_atomic
from ..model.settings import Project, Settings
from ..model.topology import (
    ADMIN,
    CONTAINER_UID,
    RESERVED_CLIENT_NAME,
    Node,
    is_anonymous_name,
)
from . import keyfile, revocation
from .checker import PkiChecker
from .manifest import CertRecord, Manifest
from .secretstore import SecretStore, store_password_name

# CertRecord, Manifest and CONTAINER_UID are re-exported: callers import them from here.
__all__ = [
    "CONTAINER_UID",
    "GENERATED_PASSPHRASE_PROFILES",
    "MIN_PROD_PASSPHRASE_LENGTH",
    "PASSPHRASE_ENV",
    "CertRecord",
    "CertStore",
    "ClientFiles",
    "Manifest",
    "PromptPassphrase",
    "StoreFiles",
    "check_bounds",
]

PASSPHRASE_ENV = "SECURE_KAFKA_PASSPHRASE"
# Profiles that may generate and keep their passphrase beside the PKI.
GENERATED_PASSPHRASE_PROFILES = ("dev", "ci")
MIN_PROD_PASSPHRASE_LENGTH = 12

PromptPassphrase = Callable[[str], "str | None"]


@dataclass(frozen=True)
class StoreFiles:
    """A node's (or client's) Java stores; one password opens both, and the key inside."""

    keystore: Path
    truststore: Path
    password: str = field(repr=False)


@dataclass(frozen=True)
class ClientFiles:
    """A client principal's material: PEM for librdkafka, PKCS12 for Java clients."""

    directory: Path
    cert: Path
    key: Path
    ca: Path
    stores: StoreFiles


def check_bounds(settings: Settings) -> None:
    """Key algorithm and leaf validity of ``settings`` within its profile's bounds."""
    profile = settings.profile
    if settings.key_algorithm not in profile.allowed_key_algorithms:
        raise SecureKafkaError(
            f"secure-kafka:keyAlgorithm {settings.key_algorithm!r} is not allowed by profile {profile.name}: "
            f"use one of {', '.join(profile.allowed_key_algorithms)}"
        )
    if not 0 < settings.leaf_validity_days <= profile.max_leaf_validity_days:
        raise SecureKafkaError(
            f"secure-kafka:leafValidityDays {settings.leaf_validity_days} is outside profile {profile.name}'s "
            f"bound of 1..{profile.max_leaf_validity_days} days: lower it in Pulumi.{settings.env}.yaml"
        )


def _mkdir(path: Path, uid: int | None = None) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    if uid is not None:
        os.chown(path, uid, uid)
    return path


class CertStore:
    """The PKI of one environment. ``prompt`` asks for the passphrase on a terminal."""

    def __init__(self, project: Project, settings: Settings, prompt: PromptPassphrase | None = None):
        self.project = project
        self.settings = settings
        self.env = settings.env
        self.root = project.certs_dir(settings.env)
        self._prompt = prompt
        self._passphrase: str | None = None

    # -- where things are ------------------------------------------------------------------

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def passphrase_path(self) -> Path:
        return self.root / "passphrase"

    @property
    def secrets(self) -> SecretStore:
        return SecretStore(self.root / "secrets.json")

    def node_dir(self, node_name: str) -> Path:
        """``certs/<env>/nodes/<node>/``: mounted read-only at ``/etc/kafka/tls``."""
        return self.root / "nodes" / self.settings.topology.node(node_name).name

    def client_dir(self, principal: str) -> Path:
        pki.check_name("client principal", principal)
        return self.root / "clients" / principal

    def store_password(self, owner: str) -> str:
        """The password of a node's or client's stores (and of the key inside the keystore)."""
        name = store_password_name(owner)
        secret_store = self.secrets
        if not secret_store.has(name):
            raise SecureKafkaError(
                f"{self.relative(secret_store.path)}: no {name} password: restore it from backup, or re-issue the stores "
                f"of {owner} with `secure-kafka certs rotate {self.env}`"
            )
        return secret_store.get(name)

    def node_stores(self, node_name: str) -> StoreFiles:
        """Paths of a node's keystore and truststore on the host, and their password."""
        directory = self.node_dir(node_name)
        return StoreFiles(directory / "keystore.p12", directory / "truststore.p12", self.store_password(node_name))

    def client_files(self, principal: str) -> ClientFiles:
        directory = self.client_dir(principal)
        if not directory.is_dir():
            raise SecureKafkaError(
                f"{self.relative(directory)}: no certificate for principal {principal!r}: "
                f"create it with `secure-kafka users add {self.env} {principal}`"
            )
        return ClientFiles(
            directory=directory,
            cert=directory / "client.crt",
            key=directory / "client.key",
            ca=directory / "ca.crt",
            stores=StoreFiles(directory / "keystore.p12", directory / "truststore.p12", self.store_password(principal)),
        )

    def has_client(self, principal: str) -> bool:
        return self.client_dir(principal).is_dir()

    def exists(self) -> bool:
        """Whether the environment has a PKI (``certs init`` has run), even a damaged one."""
        return self.ca_cert_path.parent.exists() or self.manifest_path.exists()

    def relative(self, path: Path) -> str:
        """``path`` relative to the project root, for messages."""
        try:
            return str(path.relative_to(self.project.root))
        except ValueError:
            return str(path)

    # -- the passphrase ----------------------------------------------------------------------

    def passphrase(self) -> str:
        """The passphrase protecting the CA key: ``$SECURE_KAFKA_PASSPHRASE``, the kept file, or a prompt."""
        if self._passphrase is None:
            self._passphrase = self._existing_passphrase() or self._prompted_passphrase()
            if not self._passphrase:
                raise SecureKafkaError(
                    f"no passphrase for environment {self.env!r}: set {PASSPHRASE_ENV} (or run on a terminal to be asked)"
                )
        return self._passphrase

    def _existing_passphrase(self) -> str | None:
        if from_env := os.environ.get(PASSPHRASE_ENV):
            return from_env
        if self.passphrase_path.exists():
            try:
                return self.passphrase_path.read_text().strip() or None
            except OSError as exc:
                raise SecureKafkaError(
                    f"{self.relative(self.passphrase_path)}: cannot read it ({exc.strerror}): fix its permissions"
                ) from None
        return None

    def _prompted_passphrase(self) -> str | None:
        return self._prompt(self.env) if self._prompt else None

    def _passphrase_for_new_ca(self, staging: Path) -> str:
        """Like ``passphrase()``, but dev/ci generate one (kept 0600 in ``staging``) instead of asking."""
        passphrase = self._existing_passphrase()
        if passphrase is None and self.settings.profile.name in GENERATED_PASSPHRASE_PROFILES:
            passphrase = secrets.token_urlsafe(32)
            write_atomic(staging / "passphrase", passphrase + "\n", mode=0o600)
        if passphrase is None and (passphrase := self._prompted_passphrase()):
            # A typo here would lock the CA key for good: ask twice.
            if self._prompted_passphrase() != passphrase:
                raise SecureKafkaError("the two passphrases differ: run the command again and type the same one twice")
        if not passphrase:
            raise SecureKafkaError(
                f"profile {self.settings.profile.name} needs a passphrase for the CA key of {self.env!r}: set {PASSPHRASE_ENV}"
            )
        if self.settings.profile.name == "prod" and len(passphrase) < MIN_PROD_PASSPHRASE_LENGTH:
            raise SecureKafkaError(
                f"{PASSPHRASE_ENV} is shorter than {MIN_PROD_PASSPHRASE_LENGTH} characters, too weak for profile prod: use a longer one"
            )
        self._passphrase = passphrase
        return passphrase

    # -- creating ------------------------------------------------------------------------------

    def init(self) -> list[CertRecord]:
        """Creates the CA, a certificate and stores per node, and the admin client.

        Refuses when the environment has a CA already; on any failure nothing is left behind.
        """
        check_bounds(self.settings)
        if self.exists():
            raise SecureKafkaError(
                f"{self.relative(self.ca_cert_path.parent)} exists already: environment {self.env!r} has its PKI; "
                f"use `secure-kafka certs rotate {self.env}` to renew it"
            )
        staging: Path | None = None
        try:
            staging = Path(tempfile.mkdtemp(dir=_mkdir(self.root.parent), prefix=f".{self.env}.init-"))
            self._carry_over(staging)
            manifest = self._build(staging)
            self._install(staging)
        except BaseException as exc:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                where = exc.filename or self.relative(self.root.parent)
                raise SecureKafkaError(
                    f"{where}: {exc.strerror}: fix permissions or free space, then run `secure-kafka certs init {self.env}` again"
                ) from None
            raise
        return manifest.active()

    def _carry_over(self, staging: Path) -> None:
        """A passphrase or secrets made before the CA (e.g. by the volume setup) are kept."""
        for name in ("passphrase", "secrets.json"):
            if (self.root / name).exists():
                shutil.copy2(self.root / name, staging / name)

    def _build(self, base: Path) -> Manifest:
        settings, profile = self.settings, self.settings.profile
        passphrase = self._passphrase_for_new_ca(base)
        ca = pki.CA.create(f"secure-kafka-{self.env}-ca", settings.key_algorithm, profile.ca_validity_days, self.env)
        ca.write(_mkdir(base / "ca"), passphrase)
        manifest = Manifest(self.env, [])
        manifest.add(CertRecord.of("ca", "ca", ca.cert, "ca"))
        secret_store = SecretStore(base / "secrets.json")
        _mkdir(base / "nodes")
        for node in settings.topology.nodes:
            issued = self.issue_node(ca, node)
            self.write_node_files(base / "nodes" / node.name, issued, [ca.cert], secret_store.get(store_password_name(node.name)))
            manifest.add(CertRecord.of(node.name, node.role, issued.cert, f"nodes/{node.name}"))
        _mkdir(base / "clients")
        issued = self.issue_client(ca, ADMIN)
        self.write_client_files(base / "clients" / ADMIN, issued, [ca.cert], secret_store.get(store_password_name(ADMIN)))
        manifest.add(CertRecord.of(ADMIN, "client", issued.cert, f"clients/{ADMIN}"))
        revocation.publish(base, ca, manifest, [base / "nodes" / n.name for n in settings.topology.nodes], self.container_uid())
        manifest.save(base / "manifest.json")
        return manifest

    def _install(self, staging: Path) -> None:
        """Renames the built tree to ``certs/<env>``, keeping whatever else was there."""
        if not self.root.exists():
            os.rename(staging, self.root)
            return
        # Files older than the CA (rendered configs, a passphrase) exist: swap the whole
        # directory, then move back what the new tree does not have.
        previous = staging.with_name(staging.name + ".previous")
        os.rename(self.root, previous)
        try:
            os.rename(staging, self.root)
        except OSError:
            os.rename(previous, self.root)
            raise
        for entry in previous.iterdir():
            if not (self.root / entry.name).exists():
                os.rename(entry, self.root / entry.name)
        shutil.rmtree(previous)

    def issue_node(self, ca: pki.CA, node: Node) -> pki.IssuedCert:
        # Brokers' published listeners are reached as localhost / 127.0.0.1 from the host.
        sans = node.dns_names + (("localhost", "127.0.0.1") if node.role == "broker" else ())
        return ca.issue_cert(
            node.name,
            node.role,
            sans,
            validity_days=self.settings.leaf_validity_days,
            key_algorithm=self.settings.key_algorithm,
            server=True,
            client=True,  # brokers and ZooKeeper peers are also clients of each other
            crl_uri=revocation.crl_uri(ca.cert),
        )

    def issue_client(self, ca: pki.CA, principal: str) -> pki.IssuedCert:
        return ca.issue_cert(
            principal,
            "client",
            validity_days=self.settings.leaf_validity_days,
            key_algorithm=self.settings.key_algorithm,
            server=False,
            client=True,
            crl_uri=revocation.crl_uri(ca.cert),
        )

    @staticmethod
    def container_uid() -> int | None:
        """The owner of files a container reads (None: the caller's own)."""
        # Only root can hand files to the container user; others run rootless Docker,
        # where their own uid is what the container sees.
        return CONTAINER_UID if os.geteuid() == 0 else None

    def write_node_files(
        self, directory: Path, issued: pki.IssuedCert, trusted: Sequence[x509.Certificate], password: str
    ) -> None:
        """A node's stores: ``trusted`` holds one CA, or two while the CA is being rotated."""
        uid = self.container_uid()
        _mkdir(directory, uid)
        write_atomic(directory / "keystore.p12", issued.pkcs12_keystore(password), mode=0o600, uid=uid)
        write_atomic(directory / "truststore.p12", pki.pkcs12_truststore(trusted, password), mode=0o600, uid=uid)
        write_atomic(directory / "node.crt", issued.cert_pem(), mode=0o644, uid=uid)

    @staticmethod
    def write_client_files(
        directory: Path, issued: pki.IssuedCert, trusted: Sequence[x509.Certificate], password: str
    ) -> None:
        """A client's PEM files and stores; ``ca.crt`` is the bundle of every trusted CA."""
        _mkdir(directory)
        issued.write_pem(directory, "client")
        write_atomic(directory / "ca.crt", b"".join(c.public_bytes(serialization.Encoding.PEM) for c in trusted), mode=0o644)
        write_atomic(directory / "keystore.p12", issued.pkcs12_keystore(password), mode=0o600)
        write_atomic(directory / "truststore.p12", pki.pkcs12_truststore(trusted, password), mode=0o600)

    def load(self) -> pki.CA:
        """The CA, ready to issue: decrypted with the passphrase, and not expired."""
        if not self.exists():
            raise SecureKafkaError(
                f"{self.relative(self.ca_cert_path)} not found: create the PKI with `secure-kafka certs init {self.env}`"
            )
        ca = pki.CA.load(self.ca_cert_path, self.ca_key_path, self.passphrase())
        if not keyfile.is_scrypt_protected(self.ca_key_path.read_bytes()):
            # Written by an earlier version (PBKDF2, 2048 iterations): stretched with scrypt from now on.
            ca.write(self.ca_cert_path.parent, self.passphrase())
        if ca.is_expired():
            raise SecureKafkaError(
                f"{self.relative(self.ca_cert_path)}: the CA expired on {ca.not_after:%Y-%m-%d}: "
                f"replace it with `secure-kafka certs rotate {self.env} --ca`"
            )
        return ca

    def add_nodes(self, nodes: Sequence[Node]) -> list[str]:
        """Issues certificates and stores for the nodes the manifest does not have yet (the
        controllers a migration adds); returns their names. Each node's files are written
        before the manifest names them: a re-run issues again what was not recorded."""
        manifest = Manifest.load(self.manifest_path)
        missing = [node for node in nodes if manifest.current(node.name) is None]
        if not missing:
            return []
        ca = self.load()
        for node in missing:
            issued = self.issue_node(ca, node)
            self.write_node_files(self.node_dir(node.name), issued, [ca.cert], self.secrets.get(store_password_name(node.name)))
            manifest.add(CertRecord.of(node.name, node.role, issued.cert, f"nodes/{node.name}"))
        revocation.publish(self.root, ca, manifest, [self.node_dir(n.name) for n in self.settings.topology.nodes],
                           self.container_uid())
        manifest.save(self.manifest_path)
        return [node.name for node in missing]

    def add_client(self, principal: str) -> ClientFiles:
        """Issues a client certificate and stores for an application principal."""
        pki.check_name("client principal", principal)
        if RESERVED_CLIENT_NAME.match(principal):
            raise SecureKafkaError(
                f"client principal {principal!r} looks like a node name (reserved: its certificate would act as that node): choose another name"
            )
        if is_anonymous_name(principal):
            raise SecureKafkaError(
                f"client principal {principal!r} is reserved (Kafka's unauthenticated principal: its certificate would map to it): choose another name"
            )
        check_bounds(self.settings)
        directory = self.client_dir(principal)
        if directory.exists():
            raise SecureKafkaError(f"{self.relative(directory)} exists already: principal {principal!r} has a certificate")
        ca = self.load()
        manifest = Manifest.load(self.manifest_path)
        staging = self._stage_client(ca, principal)
        os.rename(staging, directory)
        manifest.add(CertRecord.of(principal, "client", self._staged_cert(directory), f"clients/{principal}"))
        manifest.save(self.manifest_path)
        return self.client_files(principal)

    def _stage_client(self, ca: pki.CA, principal: str) -> Path:
        """A new certificate and stores for ``principal`` in a temp directory beside ``clients/<principal>``."""
        issued = self.issue_client(ca, principal)
        staging = Path(tempfile.mkdtemp(dir=_mkdir(self.root / "clients"), prefix=f".{principal}.new-"))
        try:
            self.write_client_files(staging, issued, [ca.cert], self.secrets.get(store_password_name(principal)))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    @staticmethod
    def _staged_cert(directory: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate((directory / "client.crt").read_bytes())

    # -- revoking ------------------------------------------------------------------------------

    def revocation_enabled(self) -> bool:
        return revocation.enabled(self.root)

    def revoke_client(self, principal: str, reissue: bool) -> tuple[CertRecord | None, CertRecord | None]:
        """Revokes the active certificate of client ``principal`` and publishes the CRL.

        Its files move to ``archive/<principal>/gen-N`` (``reissue``: a new certificate takes
        their place). Returns the revoked record (None: there was none active, e.g. a re-run
        after a kill; the CRL is published again all the same) and the new one.
        """
        if not self.revocation_enabled():
            raise SecureKafkaError(
                f"the PKI of {self.env!r} predates revocation (no {self.relative(self.root / revocation.CRL_DIR)}): "
                f"reissue every certificate with `secure-kafka certs rotate {self.env}`, then `secure-kafka up {self.env}`"
            )
        if (self.root / "rotation").exists():
            raise SecureKafkaError(
                f"a certificate rotation of {self.env!r} is in progress: finish it with "
                f"`secure-kafka certs rotate {self.env} --resume` (or --abort) first"
            )
        ca = self.load()
        manifest = Manifest.load(self.manifest_path)
        directory = self.client_dir(principal)
        current = manifest.current(principal)
        if current is not None and current.kind != "client":
            raise SecureKafkaError(f"{principal!r} is a node of {self.env!r}: replace its certificate with `secure-kafka certs rotate {self.env} --node {principal}`")
        if current is None and reissue:
            raise SecureKafkaError(f"{self.env!r} has no active certificate of client {principal!r}: `secure-kafka certs list {self.env}` shows them")
        staging = self._stage_client(ca, principal) if reissue else None
        revoked = manifest.revoke(principal, pki.now()) if current else None
        added = manifest.add(CertRecord.of(principal, "client", self._staged_cert(staging), f"clients/{principal}")) if staging else None
        # The manifest first: from there a re-run publishes the same CRL, whatever was cut off.
        manifest.save(self.manifest_path)
        # The files in clients/ are those of the certificate revoked now, or by a killed earlier run.
        if directory.exists() and (gone := revoked or manifest.latest_revoked(principal)):
            archive_dir(directory, self.archived_client_dir(gone))
        if staging is not None:
            os.rename(staging, directory)
        revocation.publish(self.root, ca, manifest, [self.node_dir(n.name) for n in self.settings.topology.nodes], self.container_uid())
        return revoked, added

    def archived_client_dir(self, record: CertRecord) -> Path:
        """Where the files of a revoked or superseded client certificate are kept."""
        return self.root / "archive" / record.name / f"gen-{record.generation}"

    # -- reading -------------------------------------------------------------------------------

    def list(self) -> list[CertRecord]:
        """The active certificates, from the manifest: CA, nodes, clients."""
        if not self.exists():
            raise SecureKafkaError(
                f"{self.relative(self.ca_cert_path)} not found: create the PKI with `secure-kafka certs init {self.env}`"
            )
        return Manifest.load(self.manifest_path).active()

    def latest_revoked(self, principal: str) -> CertRecord | None:
        return Manifest.load(self.manifest_path).latest_revoked(principal)

    def revoked(self) -> list[CertRecord]:
        """The revoked certificates (removed users' and replaced leaked keys'), from the manifest."""
        return Manifest.load(self.manifest_path).revoked() if self.manifest_path.exists() else []

    def verify(self) -> list[str]:
        """Every problem of the PKI on disk, one line each naming the file and the fix."""
        return PkiChecker(self).run()
