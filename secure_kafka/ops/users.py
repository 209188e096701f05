"""An environment's application users: one principal, two ways to authenticate.

``add`` makes ``User:<name>`` usable over SASL_SSL (a SCRAM-SHA-512 credential whose
generated password lives in the ``SecretStore``) and over mTLS (a client certificate with
CN=<name>, which the brokers' principal mapping turns into the same ``User:<name>``). A new
user may do nothing until the ACL file grants it something (deny by default).

``remove`` deletes the SCRAM credential on the cluster, so no new SASL connection of the
user authenticates any more, and brokers close its open ones at their next
re-authentication (``connections.max.reauth.ms``). Its client certificate stays valid until
it expires (there is no CRL), which is why a user named in the ACL file cannot be removed:
remove its rules and `acl apply --prune` first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramMechanism,
    UserScramCredentialDeletion,
)

from .. import pki
from ..errors import SecureKafkaError
from ..model import acl
from ..model.topology import ADMIN, is_anonymous_name, is_super_user_name
from ..pki.secretstore import scram_password_name
from . import clients, kafka_admin
from .context import EnvironmentContext

__all__ = ["AddResult", "scram_users", "known_users", "check_user_name", "add", "remove"]

SCRAM_PREFIX = scram_password_name("")
REVOKE_TIMEOUT_S = 30


@dataclass(frozen=True)
class AddResult:
    name: str
    certificate_issued: bool
    credential_created: bool

    @property
    def changed(self) -> bool:
        return self.certificate_issued or self.credential_created


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


def remove(env: EnvironmentContext, name: str) -> None:
    """Deletes the SCRAM credential on the cluster, then the stored password."""
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
        _wait_refused(env, name, password)
        env.secrets.remove(scram_password_name(name))
        changes.update(scram_credential_deleted=True, client_certificate="kept until it expires (no revocation yet)")


def _wait_refused(env: EnvironmentContext, name: str, password: str) -> None:
    """Returns once every broker refuses the deleted credential.

    Brokers learn of the deletion through a ZooKeeper notification, a moment after the Admin
    API answers: "revoked" is proven by a refused login on each broker, not assumed.
    """
    ca = env.certs.client_dir(ADMIN) / "ca.crt"
    for address in env.settings.topology.bootstrap("sasl_ssl"):
        conf = {**clients.scram_config(env.settings, ca, name, password), "bootstrap.servers": address,
                "log_level": 0}  # the refusal is expected: keep librdkafka from logging it
        deadline = time.monotonic() + REVOKE_TIMEOUT_S
        while True:
            try:
                AdminClient(conf).list_topics(timeout=5)
            except KafkaException:
                break  # refused (or unreachable, which refuses as well)
            if time.monotonic() > deadline:
                raise SecureKafkaError(f"{address} still accepts SCRAM user {name} {REVOKE_TIMEOUT_S} s after its "
                                       f"deletion: re-run `secure-kafka users remove {env.env} {name}`")
            time.sleep(0.5)


def _relative(env: EnvironmentContext, path) -> str:
    try:
        return str(path.relative_to(env.project.root))
    except ValueError:
        return str(path)
