"""Authentication and authorization probes: mTLS (with test certificates that must be
refused), SCRAM logins, and what a fresh SCRAM user without ACLs may do."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
)

from .. import pki
from ..errors import SecureKafkaError
from ..model.topology import ADMIN
from ..ops import clients, kafka_admin
from ..pki import revocation
from ..pki.secretstore import scram_password_name
from . import probes
from .network import _refused
from .scorecard import ProbeResult, _where, result
from .target import Target
from .trail import probe_denials_collected

PROBE_USER_PREFIX = "verify-probe-"
AUTH_TIMEOUT_S = 15  # a refused SCRAM login surfaces within this


# --- authentication -----------------------------------------------------------------------------


def _test_certificates(t: Target) -> dict[str, tuple[Path, Path]]:
    """Client certificates that must be refused, in the probe's temp dir (never under certs/)."""
    key_algorithm = t.settings.key_algorithm
    foreign = pki.CA.create("foreign-ca", key_algorithm, 30, env=t.settings.env)
    ca = t.env.certs.load()  # the environment's real CA: only the validity check can refuse these
    # ... and a distribution point of the CA's CRL, so a missing one is not what refuses them.
    crl_uri = revocation.crl_uri(ca.cert) if t.env.certs.revocation_enabled() else None
    now = pki.now()
    issued = {
        "mtls.foreign-ca": foreign.issue_cert(ADMIN, "client", validity_days=7, key_algorithm=key_algorithm),
        "mtls.expired": ca.issue_cert(ADMIN, "client", validity_days=1, key_algorithm=key_algorithm,
                                      not_before=now - dt.timedelta(days=3), crl_uri=crl_uri),
        "mtls.not-yet-valid": ca.issue_cert(ADMIN, "client", validity_days=1, key_algorithm=key_algorithm,
                                            not_before=now + dt.timedelta(days=2), crl_uri=crl_uri),
    }
    paths = {}
    for probe, cert in issued.items():
        directory = t.work_dir / probe
        directory.mkdir(mode=0o700)
        pem = cert.write_pem(directory)
        paths[probe] = (pem.cert, pem.key)
    return paths


def probe_mtls(t: Target) -> list[ProbeResult]:
    endpoints = t.kafka_mtls_endpoints()

    def attempt(client_cert) -> dict[str, probes.HandshakeResult]:
        # speak_kafka: a TLS 1.3 server rejects a client certificate after the handshake.
        return {e.name: probes.tls_handshake(e.host, e.port, t.ca_file, e.server_hostname, client_cert=client_cert,
                                             speak_kafka=True) for e in endpoints}

    control = attempt(t.admin_cert)
    refused = [f"{n}: {r.detail}" for n, r in control.items() if not r.ok]
    results = [result("mtls.admin", "accepted", f"refused by {_where(refused, 2)}" if refused
                      else f"accepted by {len(control)} listeners", not refused and bool(control))]
    results.append(_refused("mtls.no-cert", attempt(None)))
    for probe, client_cert in _test_certificates(t).items():
        results.append(_refused(probe, attempt(client_cert)))
    return results


def _scram_conf(t: Target, user: str, password: str, address: str | None = None) -> dict[str, str]:
    conf = {**clients.scram_config(t.settings, t.ca_file, user, password), "log_level": 0}
    if address:
        conf["bootstrap.servers"] = address
    return conf


def _login(conf: dict[str, str], timeout_s: float = AUTH_TIMEOUT_S) -> str | None:
    """None when a SCRAM client lists topics, else why not.

    librdkafka retries a refused login until the request times out; its error callback hears
    of the refusal at once, so a refusal takes about a second, not ``timeout_s``.
    """
    refusals: list[KafkaError] = []
    client = AdminClient({**conf, "error_cb": refusals.append})
    deadline = time.monotonic() + timeout_s
    last = f"no answer in {timeout_s:.0f} s"
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=1)
            return None
        except KafkaException as exc:
            last = exc.args[0].str()
        client.poll(0)  # serves the error callback
        if auth := [e for e in refusals if e.code() == KafkaError._AUTHENTICATION]:
            return auth[0].str()
    return last


def probe_scram(t: Target) -> list[ProbeResult]:
    admin_password = t.env.secrets.get(scram_password_name(ADMIN))
    outcomes = {}
    attempts = {"scram.admin": (ADMIN, admin_password), "scram.wrong-password": (ADMIN, secrets.token_urlsafe(16)),
                "scram.unknown-user": (f"{PROBE_USER_PREFIX}nobody-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16))}
    for probe, (user, password) in attempts.items():
        outcomes[probe] = [(address, _login(_scram_conf(t, user, password, address)))
                           for address in t.topology.bootstrap("sasl_ssl")]
    control = [f"{a}: {why}" for a, why in outcomes.pop("scram.admin") if why]
    results = [result("scram.admin", "accepted", f"refused: {_where(control, 1)}" if control
                      else f"accepted by {len(t.topology.brokers)} broker(s)", not control)]
    for probe, attempts_ in outcomes.items():
        accepted = [a for a, why in attempts_ if why is None]
        results.append(result(probe, "refused", f"accepted by {_where(accepted)}" if accepted
                              else f"refused by {len(attempts_)} broker(s)", not accepted))
    return results


# --- authorization --------------------------------------------------------------------------------

AUTHORIZATION_FAILED = re.compile(r"AUTHORIZATION_FAILED$")


def probe_authorization(t: Target) -> list[ProbeResult]:
    """A throwaway SCRAM user with no ACLs tries what deny-by-default must refuse."""
    name = f"{PROBE_USER_PREFIX}{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(32)
    admin = t.env.admin_client(30)
    topic = kafka_admin.VERIFY_TOPIC
    kafka_admin.ensure_topic(admin, topic, t.settings.topic_replication_factor)
    kafka_admin.ensure_scram_users(admin, {name: password})
    own_topic = f"{name}-topic"
    try:
        # Its own consumer group only: the consume probe then isolates Read on the topic (a
        # consumer without a group, assign-only, needs nothing else).
        group_read = AclBinding(ResourceType.GROUP, name, ResourcePatternType.LITERAL, f"User:{name}", "*",
                                AclOperation.READ, AclPermissionType.ALLOW)
        next(iter(admin.create_acls([group_read], request_timeout=15).values())).result(timeout=20)
        _wait_accepted(t, name, password)
        conf = _scram_conf(t, name, password)
        return [
            _denied("authz.produce", _produce(conf, topic)),
            _denied("authz.consume", _consume(conf, topic, group=name)),
            _denied("authz.create-topic", _create_topic(conf, own_topic)),
            _denied("authz.alter-acl", _grant_self(conf, f"User:{name}", own_topic)),
            # The refusals above are decisions the authorizer logged: the durable trail has them.
            probe_denials_collected(t, f"User:{name}"),
        ]
    finally:
        _remove_probe_user(admin, name, own_topic)


def _denied(probe: str, outcome: str) -> ProbeResult:
    return result(probe, "*_AUTHORIZATION_FAILED", outcome, bool(AUTHORIZATION_FAILED.search(outcome)))


def _wait_accepted(t: Target, name: str, password: str, timeout_s: float = 30) -> None:
    """Brokers learn of a new SCRAM credential through ZooKeeper: wait until each accepts it,
    so a refusal below is about authorization, not a login that came too early."""
    for address in t.topology.bootstrap("sasl_ssl"):
        deadline = time.monotonic() + timeout_s
        while (why := _login(_scram_conf(t, name, password, address), 5)) is not None:
            if time.monotonic() > deadline:
                raise SecureKafkaError(f"{address} does not accept the probe's new SCRAM user ({why})")
            time.sleep(0.5)


def _produce(conf: dict, topic: str) -> str:
    outcome: list = []
    producer = Producer({**conf, "message.timeout.ms": 20000, "acks": "all"})
    producer.produce(topic, b"secure-kafka verify: this record must be refused",
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    if not outcome:
        return "no delivery report in 30 s"
    return outcome[0].name() if outcome[0] else "written"


def _consume(conf: dict, topic: str, group: str, timeout_s: float = 60) -> str:
    """Reads ``topic`` (which holds `up`'s verification records) from the start, in ``group``.

    The probe user may read its own group, so the answer is about Read on the topic alone.
    """
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if not msg.error():
                return "read a record"
            if msg.error().name() == "_PARTITION_EOF":
                return "read to the end of the topic"
            return msg.error().name()
        return f"no record and no error in {timeout_s:.0f} s"
    finally:
        consumer.close()


def _create_topic(conf: dict, topic: str) -> str:
    client = AdminClient(conf)  # held: a collected client fails its futures with _DESTROY
    future = client.create_topics([NewTopic(topic, 1, 1)], request_timeout=45)[topic]
    try:
        future.result(timeout=60)
        return "created"
    except KafkaException as exc:
        return exc.args[0].name()


def _grant_self(conf: dict, principal: str, topic: str) -> str:
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*",
                         AclOperation.ALL, AclPermissionType.ALLOW)
    client = AdminClient(conf)
    try:
        next(iter(client.create_acls([binding], request_timeout=15).values())).result(timeout=20)
        return "created"
    except KafkaException as exc:
        return exc.args[0].name()


def _remove_probe_user(admin: AdminClient, name: str, topic: str) -> None:
    """Whatever the probe user managed to create goes, then the user itself."""
    principal = f"User:{name}"
    ours = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None, AclOperation.ANY,
                            AclPermissionType.ANY)
    for future in admin.delete_acls([ours], request_timeout=15).values():
        future.result(timeout=20)
    if topic in admin.list_topics(timeout=10).topics:
        for future in admin.delete_topics([topic], request_timeout=15).values():
            future.result(timeout=20)
    deletion = UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)
    for future in admin.alter_user_scram_credentials([deletion]).values():
        try:
            future.result(timeout=20)
        except KafkaException as exc:
            if exc.args[0].name() != "RESOURCE_NOT_FOUND":
                raise
