"""An environment's application users: one principal, two ways to authenticate.

``add`` makes ``User:<name>`` usable over SASL_SSL (a SCRAM-SHA-512 credential whose
generated password lives in the ``SecretStore``) and over mTLS (a client certificate with
CN=<name>, which the brokers' principal mapping turns into the same ``User:<name>``). A new
user may do nothing until the ACL file grants it something (deny by default).

``remove`` deletes the SCRAM credential on the cluster, so no new SASL connection of the
user authenticates any more, and brokers close its open ones at their next
re-authentication (``connections.max.reauth.ms``). It revokes the client certificate too
(the CRL, ``ops/revocation.py``): a later ``add`` of the same name issues a new certificate,
and whoever kept the old key gets nothing the new user is granted. A user named in the ACL
file cannot be removed: remove its rules and `acl apply --prune` first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    ScramMechanism,
    UserScramCredentialDeletion,
)

from .. import pki
from ..errors import SecureKafkaError
from ..model import acl
from ..model.topology import ADMIN, is_anonymous_name, is_super_user_name
from ..pki.secretstore import scram_password_name
from . import clients, kafka_admin, revocation
from .context import EnvironmentContext

__all__ = ["AddResult", "RemoveResult", "scram_users", "known_users", "check_user_name", "add", "remove"]

SCRAM_PREFIX = scram_password_name("")


@dataclass(frozen=True)
class AddResult:
    name: str
    certificate_issued: bool
    credential_created: bool

    @property
    def changed(self) -> bool:
        return self.certificate_issued or self.credential_created


@dataclass(frozen=True)
class RemoveResult:
    name: str
    certificate: str  # revoked, kept (a PKI that predates revocation) or none
    files: str | None  # where the client's files are kept (None: deleted, or there were none)


def scram_users(env: EnvironmentContext) -> list[str]:
    """Names of the environment's SCRAM users (admin included), from its secret store."""
    return sorted(n[len(SCRAM_PREFIX):] for n in env.secrets.names() if n.startswith(SCRAM_PREFIX))


def known_users(env: EnvironmentContext) -> set[str]:
    """Principal names an ACL may name: SCRAM users and client certificates."""
    clients = env.certs.root / "clients"
    with_certs = {p.name for p in clients.iterdir() if p.is_dir() and not p.name.startswith(".")} if clients.is_dir() else set()
    return set(scram_users(env)) | with_certs


def check_user_name(name: str) -> None:
    pki.check_name("user name", name)
    if is_super_user_name(name):
        raise SecureKafkaError(f"user name {name!r} is reserved (admin and the nodes' names): choose another name")
    if is_anonymous_name(name):
        raise SecureKafkaError(f"user name {name!r} is reserved (Kafka's unauthenticated principal): choose another name")


def add(env: EnvironmentContext, name: str) -> AddResult:
    """Creates the user (idempotent: completes a user whose earlier ``add`` stopped half-way)."""
    check_user_name(name)
    env.certs.load()  # the passphrase and CA first: fail before anything is created
    admin = env.admin_client()
    with env.trail.recorded("users add", name=name) as changes:
        issued = False
        if not env.certs.has_client(name):
            env.certs.add_client(name)
            issued = True
        password = env.secrets.get(scram_password_name(name))
        created = kafka_admin.ensure_scram_users(admin, {name: password})
        changes.update(certificate_issued=issued, scram_credential_created=bool(created))
    return AddResult(name, issued, bool(created))


def remove(env: EnvironmentContext, name: str, delete_files: bool = False, prove_revoked: bool = True) -> RemoveResult:
    """Deletes the SCRAM credential on the cluster and revokes the client certificate.

    Each is proven by a refused login on every broker before the stored password goes, so a
    re-run after a failure does what is left; ``prove_revoked=False`` skips the certificate's
    proof (up to 30 s: a broker re-reads the CRL at that pace) for callers that test other things.
    The client's files move to ``archive/`` or, with ``delete_files``, are deleted.
    """
    check_user_name(name)
    if not env.secrets.has(scram_password_name(name)):
        raise SecureKafkaError(f"{env.env} has no SCRAM user {name!r}: `secure-kafka users list {env.env}` shows them")
    path = acl.acl_file(env.project.root, env.env)
    if path.is_file():
        principal = f"User:{name}"
        if any(b.principal == principal for b in acl.load(path, None, display=_relative(env, path))):
            raise SecureKafkaError(f"{_relative(env, path)} still grants {principal}: remove its rules and run "
                                   f"`secure-kafka acl apply {env.env} --prune` first")
    admin = env.admin_client()
    password = env.secrets.get(scram_password_name(name))
    with env.trail.recorded("users remove", name=name) as changes:
        futures = admin.alter_user_scram_credentials([UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)])
        for future in futures.values():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].name() != "RESOURCE_NOT_FOUND":  # already gone: finish the local part
                    raise SecureKafkaError(f"deleting SCRAM user {name} failed: {exc.args[0].str()}") from None
        ca = env.certs.client_dir(ADMIN) / "ca.crt"
        revocation.wait_refused(env, f"SCRAM user {name}", {
            address: {**clients.scram_config(env.settings, ca, name, password), "bootstrap.servers": address}
            for address in env.settings.topology.bootstrap("sasl_ssl")})
        certificate, files = _revoke_certificate(env, name, delete_files, prove_revoked)
        env.secrets.remove(scram_password_name(name))
        changes.update(scram_credential_deleted=True, client_certificate=certificate, client_files=files or "deleted")
    return RemoveResult(name, certificate, files)


def _revoke_certificate(env: EnvironmentContext, name: str, delete_files: bool, prove: bool) -> tuple[str, str | None]:
    if not env.certs.revocation_enabled():
        kept = env.certs.client_dir(name)
        return "kept until it expires (this PKI predates revocation: `secure-kafka certs rotate` enables it)", (
            _relative(env, kept) if kept.exists() else None)
    revoked, _ = env.certs.revoke_client(name, reissue=False)
    # None: revoked by an earlier run that was cut off afterwards (or a user without a certificate).
    record = revoked or env.certs.latest_revoked(name)
    archived = env.certs.archived_client_dir(record) if record else None
    if revoked is not None and prove:
        env.progress(f"waiting until every broker refuses {name}'s revoked certificate (up to {revocation.REFUSED_TIMEOUT_S} s)")
        revocation.wait_certificate_refused(env, name, archived)
    if archived is None or not archived.exists():
        return "revoked", None
    if delete_files:
        shutil.rmtree(archived)
        return "revoked", None
    return "revoked", _relative(env, archived)


def _relative(env: EnvironmentContext, path) -> str:
    try:
        return str(path.relative_to(env.project.root))
    except ValueError:
        return str(path)
