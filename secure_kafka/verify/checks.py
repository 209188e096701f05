"""``secure-kafka verify``: live security probes against a running environment, as a scorecard.

Each probe attacks one security claim of the running environment the way an outsider (or a
careless insider) would, and reports what it expected, what it observed and whether that
holds. Refusal probes are built so they *can* fail: legacy TLS is offered with the client's
own floor lowered (``probes.legacy_offer``), test certificates are issued by the
environment's real CA (expired, not yet valid) so only the validity check can refuse them,
and each refusal has a control probe (``mtls.admin``, ``scram.admin``) that must succeed.
``tests/integration/test_verify.py`` shows every probe failing against a deliberately
weakened environment or a weak server.

What verify expects is the secure posture, not merely what the profile permits: an opt-in
a profile allows (dev's PLAINTEXT loopback listener, plain Docker volumes, a writable root
filesystem, publishing on every interface) is reported as a failing probe. The static
``secure-kafka check`` says whether settings are allowed; verify says how exposed the
running environment is.

Nothing a probe creates stays behind: test certificates live in a temporary directory,
never under ``certs/<env>/``; the throwaway SCRAM user of the ``authz.*`` probes (random
name, random password, no ACLs) is deleted with any ACL or topic it managed to create.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import docker.errors
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
from cryptography import x509

import docker

from .. import pki
from ..build.plan import NANOS
from ..build.planner import JVM_OVERHEAD_MB
from ..build.render import ZOOKEEPER_SASL_USER
from ..dockerclient import connect
from ..errors import SecureKafkaError
from ..model.topology import (
    ADMIN,
    BROKER_INTERNAL_PORT,
    CONTAINER_UID,
    ZK_SECURE_CLIENT_PORT,
    Node,
)
from ..ops import clients, provision
from ..pki.secretstore import ZOOKEEPER_SASL, scram_password_name, store_password_name
from ..storage import volumes
from . import probes

if TYPE_CHECKING:
    from ..ops.environment import Environment

LOOPBACK = "127.0.0.1"
PROBE_USER_PREFIX = "verify-probe-"
JSON_FORMAT = 1
ZK_PLAINTEXT_PORT = 2181  # ZooKeeper's customary plaintext client port: must be closed
AUTH_TIMEOUT_S = 15  # a refused SCRAM login surfaces within this

# Every probe: id -> what it checks. The order is the scorecard's. Ids are stable (the JSON
# output and users' pipelines rely on them); the README lists them.
PROBES: dict[str, str] = {
    "ports.plaintext": "plaintext Kafka (ApiVersions) on every published port and INTERNAL listener",
    "ports.bind-address": "host address of every published port",
    "tls.v1.0": "TLS 1.0 offered (client floor lowered) on every TLS listener",
    "tls.v1.1": "TLS 1.1 offered (client floor lowered) on every TLS listener",
    "tls.v1.2": "TLS 1.2 offered on every TLS listener",
    "tls.weak-cipher": "TLS 1.2 offering only CBC and RSA-key-exchange suites",
    "tls.chain": "served certificate verifies against the env's CA for the listener's host name",
    "tls.sans": "SANs and subject of every served certificate",
    "tls.expiry": "validity of every served certificate",
    "mtls.admin": "control: the admin's certificate on the mTLS listeners",
    "mtls.no-cert": "no client certificate on the mTLS listeners",
    "mtls.foreign-ca": "a client certificate (CN=admin) from a foreign CA",
    "mtls.expired": "an expired client certificate issued by the env's CA",
    "mtls.not-yet-valid": "a not-yet-valid client certificate issued by the env's CA",
    "scram.admin": "control: the admin's SCRAM login",
    "scram.wrong-password": "SCRAM login as admin with a wrong password",
    "scram.unknown-user": "SCRAM login as a user that does not exist",
    "authz.produce": "produce by a fresh SCRAM user without ACLs",
    "authz.consume": "consume by a fresh SCRAM user without ACLs",
    "authz.create-topic": "topic creation by a fresh SCRAM user without ACLs",
    "authz.alter-acl": "a fresh SCRAM user granting itself an ACL",
    "zookeeper.anonymous-read": "ZooKeeper read over TLS without SASL",
    "zookeeper.anonymous-write": "ZooKeeper write over TLS without SASL",
    "zookeeper.plaintext": "ZooKeeper over plaintext (ports 2181 and 2182), with valid SASL",
    "containers.user": "user every container runs as",
    "containers.read-only-rootfs": "root filesystem of every container",
    "containers.cap-drop": "Linux capabilities of every container",
    "containers.no-new-privileges": "no-new-privileges of every container",
    "containers.limits": "memory, CPU and pid limits of every container",
    "containers.secrets": "secrets (secret store, passphrase) in container env, args, labels",
    "volumes.encrypted": "every node's data on an unlocked encrypted volume",
    "volumes.mounts": "volume mounts: only for running nodes, nosuid and nodev",
}
# Left out of the quick set `up` runs on dev and ci: each starts a JVM in a one-off container.
SLOW_PROBES = frozenset({"zookeeper.anonymous-read", "zookeeper.anonymous-write", "zookeeper.plaintext"})


@dataclass(frozen=True)
class ProbeResult:
    probe: str  # an id of PROBES
    checks: str
    expected: str
    observed: str
    passed: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def result(probe: str, expected: str, observed: str, passed: bool) -> ProbeResult:
    return ProbeResult(probe, PROBES[probe], expected, observed, passed)


@dataclass(frozen=True)
class Scorecard:
    env: str
    profile: str
    quick: bool
    results: tuple[ProbeResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.passed]

    def to_json(self) -> dict[str, object]:
        """The stable ``verify --json`` document (README, "Verify")."""
        return {
            "format": JSON_FORMAT,
            "env": self.env,
            "profile": self.profile,
            "set": "quick" if self.quick else "full",
            "passed": self.passed,
            "total": len(self.results),
            "failed": len(self.failed),
            "probes": [r.to_json() for r in self.results],
        }

    def summary(self) -> str:
        """One line: how many probes passed, and which failed."""
        which = "quick probes" if self.quick else "probes"
        line = f"verify {self.env}: {len(self.results) - len(self.failed)}/{len(self.results)} {which} passed"
        if self.failed:
            line += f"; FAILED: {', '.join(r.probe for r in self.failed)}"
        return line

    def table(self, width: int = 60) -> str:
        """The scorecard: probe, expected, observed, PASS/FAIL; cells longer than ``width`` wrap."""
        header = ("probe", "expected", "observed", "result")
        rows = [(r.probe, r.expected, r.observed, "PASS" if r.passed else "FAIL") for r in self.results]
        widths = [min(width, max(len(row[i]) for row in [header, *rows])) for i in range(4)]
        lines = [_table_line(header, widths), _table_line(tuple("-" * w for w in widths), widths)]
        for row in rows:
            lines.extend(_wrapped_lines(row, widths))
        return "\n".join(lines) + "\n"


def _table_line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()


def _wrapped_lines(row: tuple[str, ...], widths: list[int]) -> list[str]:
    chunks = [[cell[i:i + w] for i in range(0, len(cell), w)] or [""] for cell, w in zip(row, widths)]
    height = max(len(c) for c in chunks)
    return [_table_line(tuple(c[i] if i < len(c) else "" for c in chunks), widths) for i in range(height)]


# --- what the probes look at --------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A TLS listener of a node, and how the host reaches it."""

    name: str  # kafka-0/SASL_SSL_EXT, zk-0/client-port
    node: Node
    host: str
    port: int
    server_hostname: str  # the name a client verifies the certificate against
    kafka: bool  # speaks Kafka (ApiVersions answers before authentication)
    mtls: bool  # requires a client certificate


class Target:
    """A running environment as the probes see it: containers (inspected once), endpoints, files."""

    def __init__(self, env: Environment, client: docker.DockerClient, work_dir: Path):
        self.env = env
        self.settings = env.settings
        self.topology = env.settings.topology
        self.client = client
        self.work_dir = work_dir
        self.inspected: dict[str, dict | None] = {}
        for node in self.topology.nodes:
            try:
                self.inspected[node.name] = client.api.inspect_container(node.container)
            except docker.errors.NotFound:
                self.inspected[node.name] = None
        admin_dir = env.certs.client_dir(ADMIN)
        self.ca_file = admin_dir / "ca.crt"  # every CA the environment trusts (two during a CA rotation)
        self.admin_cert = (admin_dir / "client.crt", admin_dir / "client.key")

    def running(self, node: Node) -> bool:
        info = self.inspected.get(node.name)
        return bool(info and info["State"]["Running"])

    def ip(self, node: Node) -> str | None:
        info = self.inspected.get(node.name)
        if not info:
            return None
        network = info["NetworkSettings"]["Networks"].get(self.topology.network)
        return network["IPAddress"] if network else None

    def published(self) -> list[tuple[Node, str, int]]:
        """(broker, host address, host port) of every port Docker publishes, as it actually does."""
        found = []
        for node in self.topology.nodes:
            info = self.inspected.get(node.name)
            for bindings in ((info or {}).get("NetworkSettings", {}).get("Ports") or {}).values():
                for binding in bindings or []:
                    found.append((node, binding.get("HostIp", ""), int(binding["HostPort"])))
        return sorted(found, key=lambda f: f[2])

    def endpoints(self) -> list[Endpoint]:
        """Every TLS listener: brokers' published SASL_SSL and SSL ports, their INTERNAL listener
        and ZooKeeper's TLS client port (the latter two at the container's network address)."""
        found = []
        address = self.settings.bind_address
        host = address if _is_specific(address) and not ipaddress.ip_address(address).is_loopback else LOOPBACK
        for broker in self.topology.brokers:
            for listener, mtls in (("sasl_ssl", False), ("ssl", True)):
                found.append(Endpoint(f"{broker.name}/{listener}", broker, host,
                                      self.topology.listener_port(broker, listener), "localhost", True, mtls))
            if ip := self.ip(broker):
                found.append(Endpoint(f"{broker.name}/internal", broker, ip, BROKER_INTERNAL_PORT, broker.name, True, True))
        for zk in self.topology.zookeepers:
            if ip := self.ip(zk):
                found.append(Endpoint(f"{zk.name}/client-port", zk, ip, ZK_SECURE_CLIENT_PORT, zk.name, False, True))
        return found

    def kafka_mtls_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints() if e.kafka and e.mtls]


def _is_specific(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def _where(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


# --- network and TLS ----------------------------------------------------------------------------


def probe_plaintext(t: Target) -> list[ProbeResult]:
    targets = [(f"{host if _is_specific(host) else LOOPBACK}:{port}") for _node, host, port in t.published()]
    targets += [f"{ip}:{BROKER_INTERNAL_PORT}" for b in t.topology.brokers if (ip := t.ip(b))]
    answered = [a for a in targets if probes.kafka_answers_plaintext(*_split(a))]
    observed = f"answered on {_where(answered)}" if answered else f"no answer on {len(targets)} ports"
    return [result("ports.plaintext", "no plaintext Kafka answer", observed, not answered and bool(targets))]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def probe_bind_address(t: Target) -> list[ProbeResult]:
    allowed = t.settings.bind_address if t.settings.allow_public_bind else None
    expected = "127.0.0.1" + (f" or {allowed} (allowPublicBind)" if allowed and _is_specific(allowed) else "") + \
        "; never every interface"
    wrong = []
    for node, host, port in t.published():
        if not _is_specific(host):
            wrong.append(f"{port} on every interface ({host or '0.0.0.0'})")
        elif not ipaddress.ip_address(host).is_loopback and host != allowed:
            wrong.append(f"{port} on {host}")
    published = t.published()
    observed = _where(wrong) if wrong else f"{len(published)} ports on {', '.join(sorted({h for _, h, _ in published}))}"
    return [result("ports.bind-address", expected, observed, not wrong and bool(published))]


def _offer_everywhere(t: Target, **offer) -> dict[str, probes.HandshakeResult]:
    """The same handshake offer on every TLS endpoint, with the admin certificate (an mTLS
    listener that accepted the protocol must not fail the handshake for want of one)."""
    return {e.name: probes.tls_handshake(e.host, e.port, None, e.server_hostname, client_cert=t.admin_cert, **offer)
            for e in t.endpoints()}


def _refused(probe: str, outcomes: dict[str, probes.HandshakeResult]) -> ProbeResult:
    """Passes only if every listener answered and refused: silence proves nothing."""
    accepted = [f"{name} ({r.detail} {r.cipher})" for name, r in outcomes.items() if r.ok]
    silent = [name for name, r in outcomes.items() if not r.answered]
    observed = "; ".join(filter(None, [f"accepted by {_where(accepted)}" if accepted else "",
                                       f"no answer from {_where(silent)}" if silent else ""]))
    return result(probe, "refused", observed or f"refused by {len(outcomes)} listeners",
                  not accepted and not silent and bool(outcomes))


def probe_legacy_tls(t: Target) -> list[ProbeResult]:
    return [_refused("tls.v1.0", _offer_everywhere(t, **probes.legacy_offer(ssl.TLSVersion.TLSv1))),
            _refused("tls.v1.1", _offer_everywhere(t, **probes.legacy_offer(ssl.TLSVersion.TLSv1_1))),
            _refused("tls.weak-cipher", _offer_everywhere(t, **probes.weak_cipher_offer()))]


AEAD_FORWARD_SECRET = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$")


def probe_tls12(t: Target) -> list[ProbeResult]:
    outcomes = _offer_everywhere(t, min_version=ssl.TLSVersion.TLSv1_2, max_version=ssl.TLSVersion.TLSv1_2)
    if "TLSv1.2" not in t.settings.tls_versions:
        return [_refused("tls.v1.2", outcomes)]
    weak = [f"{n} ({r.cipher})" for n, r in outcomes.items() if r.ok and not AEAD_FORWARD_SECRET.match(r.cipher or "")]
    refused = [n for n, r in outcomes.items() if not r.ok]
    observed = "; ".join(filter(None, [f"weak suite on {_where(weak)}" if weak else "",
                                       f"refused by {_where(refused)}" if refused else ""]))
    ciphers = sorted({r.cipher for r in outcomes.values() if r.ok})
    return [result("tls.v1.2", "accepted (tlsVersions has it), ECDHE + AEAD suite only",
                   observed or f"{len(outcomes)} listeners: {', '.join(ciphers)}", not weak and not refused)]


def probe_certificates(t: Target) -> list[ProbeResult]:
    endpoints = t.endpoints()
    verified = {e.name: probes.tls_handshake(e.host, e.port, t.ca_file, e.server_hostname, client_cert=t.admin_cert)
                for e in endpoints}
    unverified = [f"{n}: {r.detail}" for n, r in verified.items() if not r.ok]
    chain = result("tls.chain", "verified on every listener", f"failed on {_where(unverified, 2)}" if unverified
                   else f"{len(verified)} listeners verified ({', '.join(sorted({r.detail for r in verified.values()}))})",
                   not unverified and bool(verified))
    served = {e.name: (e, probes.tls_handshake(e.host, e.port, None, e.server_hostname, client_cert=t.admin_cert))
              for e in endpoints}
    bad_sans, bad_expiry, days_left = [], [], []
    profile = t.settings.profile
    at = pki.now()
    for name, (endpoint, handshake) in served.items():
        if not handshake.peer_cert:
            bad_sans.append(f"{name}: no certificate ({handshake.detail})")
            bad_expiry.append(f"{name}: no certificate")
            continue
        cert = x509.load_der_x509_certificate(handshake.peer_cert)
        node = endpoint.node
        expected_sans = set(node.dns_names) | ({"localhost", "127.0.0.1"} if node.role == "broker" else set())
        if missing := sorted(expected_sans - set(pki.sans_of(cert))):
            bad_sans.append(f"{name} lacks {', '.join(missing)}")
        subject = pki.subject_name(node.name, node.role, t.settings.env).rfc4514_string()
        if cert.subject.rfc4514_string() != subject:
            bad_sans.append(f"{name} subject {cert.subject.rfc4514_string()}")
        left = (cert.not_valid_after_utc - at).days
        days_left.append((left, name))
        lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        if cert.not_valid_before_utc > at or left < 0:
            bad_expiry.append(f"{name} outside its validity")
        elif left <= profile.expiry_warning_days:
            bad_expiry.append(f"{name} expires in {left} d")
        if lifetime > profile.max_leaf_validity_days:
            bad_expiry.append(f"{name} valid {lifetime} d")
    soonest = min(days_left) if days_left else None
    sans = result("tls.sans", "node names (+ localhost, 127.0.0.1 on brokers), CN=<node>,OU=<role>",
                  _where(bad_sans, 2) if bad_sans else f"{len(served)} certificates match",
                  not bad_sans and bool(served))
    expiry = result("tls.expiry", f"valid now, > {profile.expiry_warning_days} d left, "
                    f"≤ {profile.max_leaf_validity_days} d lifetime",
                    _where(bad_expiry, 2) if bad_expiry else
                    (f"soonest: {soonest[1]} in {soonest[0]} d" if soonest else "no certificate"),
                    not bad_expiry and bool(served))
    return [chain, sans, expiry]


# --- authentication -----------------------------------------------------------------------------


def _test_certificates(t: Target) -> dict[str, tuple[Path, Path]]:
    """Client certificates that must be refused, in the probe's temp dir (never under certs/)."""
    key_algorithm = t.settings.key_algorithm
    foreign = pki.CA.create("foreign-ca", key_algorithm, 30, env=t.settings.env)
    ca = t.env.certs.load()  # the environment's real CA: only the validity check can refuse these
    now = pki.now()
    issued = {
        "mtls.foreign-ca": foreign.issue_cert(ADMIN, "client", validity_days=7, key_algorithm=key_algorithm),
        "mtls.expired": ca.issue_cert(ADMIN, "client", validity_days=1, key_algorithm=key_algorithm,
                                      not_before=now - dt.timedelta(days=3)),
        "mtls.not-yet-valid": ca.issue_cert(ADMIN, "client", validity_days=1, key_algorithm=key_algorithm,
                                            not_before=now + dt.timedelta(days=2)),
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
        conf["provision.servers"] = address
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
    admin = provision.wait_for_admin(t.env.admin_mtls_config(), len(t.topology.brokers), 30)
    topic = provision.VERIFY_TOPIC
    provision.ensure_topic(admin, topic, t.settings.topic_replication_factor)
    provision.ensure_scram_users(admin, {name: password})
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


# --- ZooKeeper --------------------------------------------------------------------------------------

ZNODE_LIST = re.compile(r"^\[\d+(, \d+)*\]$", re.MULTILINE)
SASL_REFUSED = "client failed to authenticate"
# What ZooKeeper's shell prints when the server refuses each probe.
ZOOKEEPER_REFUSALS = {"zookeeper.anonymous-read": SASL_REFUSED, "zookeeper.anonymous-write": SASL_REFUSED,
                      "zookeeper.plaintext": "ConnectionLoss"}


def zookeeper_verdict(probe: str, output: str, intruder: str) -> str:
    """``answered`` (data listed, or the intruder's znode created), ``refused`` (the refusal's
    own words and nothing answered), or ``inconclusive`` (neither: the shell proved nothing)."""
    if ZNODE_LIST.search(output) or f"Created {intruder}" in output:
        return "answered"
    return "refused" if ZOOKEEPER_REFUSALS[probe] in output else "inconclusive"


def probe_zookeeper(t: Target) -> list[ProbeResult]:
    """ZooKeeper's shell in one-off containers on the environment's network, with a broker's
    TLS certificate (which ZooKeeper accepts), so a refusal is about SASL alone."""
    broker, zk = t.topology.brokers[0], t.topology.zookeepers[0]
    image = (t.inspected.get(zk.name) or {}).get("Config", {}).get("Image")
    if not image:
        raise SecureKafkaError(f"{zk.container} is not running")
    intruder = f"/secure-kafka-verify-{uuid.uuid4().hex[:8]}"
    server = f"{zk.name}:{ZK_SECURE_CLIENT_PORT}"
    runs = {
        "zookeeper.anonymous-read": dict(command=("ls", "/brokers/ids"), server=server),
        "zookeeper.anonymous-write": dict(command=("create", intruder, "x"), server=server),
        "zookeeper.plaintext": dict(command=("ls", "/brokers/ids"), server=f"{zk.name}:{ZK_PLAINTEXT_PORT},{server}",
                                    tls=False, sasl_password=t.env.secrets.get(ZOOKEEPER_SASL)),
    }

    tls = t.settings.tls
    tls_properties = {"zookeeper.ssl.protocol": tls.protocol, "zookeeper.ssl.enabledProtocols": tls.enabled_protocols,
                      "zookeeper.ssl.ciphersuites": tls.cipher_suites}

    def shell(probe: str, attempt: int = 0) -> str:
        spec = dict(runs[probe])
        work_dir = t.work_dir / f"{probe}-{attempt}"
        work_dir.mkdir(mode=0o700)
        return probes.zookeeper_shell(image, t.topology.network, spec.pop("server"), t.env.certs.node_dir(broker.name),
                                      t.env.secrets.get(store_password_name(broker.name)), work_dir,
                                      *spec.pop("command"), sasl_user=ZOOKEEPER_SASL_USER,
                                      tls_properties=tls_properties, **spec)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        outputs = dict(zip(runs, pool.map(shell, runs)))
    # A shell that ended without either answer (seen once on a loaded prod start: the JVM exited
    # 1 before printing the server's refusal) proves nothing either way: asked again, one at a
    # time, twice at most. An answer is never asked again: it fails the probe at once.
    for probe in runs:
        for attempt in (1, 2):
            if zookeeper_verdict(probe, outputs[probe], intruder) != "inconclusive":
                break
            outputs[probe] = shell(probe, attempt)
    results = []
    for probe in runs:
        out, outcome = outputs[probe], zookeeper_verdict(probe, outputs[probe], intruder)
        refusal = ZOOKEEPER_REFUSALS[probe]
        observed = {"answered": "answered", "refused": f"refused: {refusal}"}.get(outcome, f"unexpected: {_last_line(out)}")
        results.append(result(probe, f"refused: {refusal}", observed, outcome == "refused"))
    return results


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else "no output"


# --- containers ---------------------------------------------------------------------------------

MIB = 1024 * 1024


def probe_containers(t: Target) -> list[ProbeResult]:
    profile = t.settings.profile
    missing = [n.name for n in t.topology.nodes if not t.running(n)]
    checks: dict[str, list[str]] = {p: [] for p in ("containers.user", "containers.read-only-rootfs",
                                                      "containers.cap-drop", "containers.no-new-privileges",
                                                      "containers.limits")}
    for node in t.topology.nodes:
        info = t.inspected.get(node.name)
        if not info:
            continue
        host = info["HostConfig"]
        if info["Config"].get("User") != f"{CONTAINER_UID}:{CONTAINER_UID}":
            checks["containers.user"].append(f"{node.name}: {info['Config'].get('User') or 'root (image default)'}")
        if not host.get("ReadonlyRootfs"):
            checks["containers.read-only-rootfs"].append(f"{node.name} writable")
        if host.get("CapDrop") != ["ALL"] or host.get("CapAdd"):
            checks["containers.cap-drop"].append(f"{node.name}: drop {host.get('CapDrop')}, add {host.get('CapAdd')}")
        if "no-new-privileges:true" not in (host.get("SecurityOpt") or []) or host.get("Privileged"):
            checks["containers.no-new-privileges"].append(f"{node.name}: {host.get('SecurityOpt')}")
        heap, cpus = ((profile.zookeeper_heap_mb, profile.zookeeper_cpus) if node.role == "zookeeper"
                      else (profile.broker_heap_mb, profile.broker_cpus))
        limits = {"memory": (host.get("Memory"), (heap + JVM_OVERHEAD_MB) * MIB),
                  "cpus": (host.get("NanoCpus"), int(cpus * NANOS)), "pids": (host.get("PidsLimit"), profile.pids_limit)}
        for what, (actual, wanted) in limits.items():
            if not actual or actual > wanted:
                checks["containers.limits"].append(f"{node.name} {what} {actual or 'unlimited'}")
    expected = {
        "containers.user": f"{CONTAINER_UID}:{CONTAINER_UID}",
        "containers.read-only-rootfs": "read-only",
        "containers.cap-drop": "drop ALL, add none",
        "containers.no-new-privileges": "no-new-privileges:true, not privileged",
        "containers.limits": f"memory heap+{JVM_OVERHEAD_MB} MiB, CPUs and pids ≤ profile {profile.name}",
    }
    present = len(t.topology.nodes) - len(missing)
    results = []
    for probe, wrong in checks.items():
        problems = wrong + [f"{name} not running" for name in missing]
        results.append(result(probe, expected[probe], _where(problems, 3) if problems else f"{present} containers",
                              not problems))
    return results


def probe_secrets_in_containers(t: Target) -> list[ProbeResult]:
    """Every secret value, searched for in the whole inspect document (env, command, labels, ...)."""
    store = t.env.secrets
    values = {name: store.get(name) for name in store.names()}
    values["passphrase"] = t.env.certs.passphrase()
    found = []
    for node in t.topology.nodes:
        info = t.inspected.get(node.name)
        if info is None:
            found.append(f"{node.name} not running")
            continue
        document = json.dumps(info)
        found += [f"{name} in {node.name}" for name, value in values.items() if value and value in document]
    return [result("containers.secrets", "none of the env's secrets", _where(found) if found
                   else f"none of {len(values)} secrets in {len(t.topology.nodes)} containers", not found)]


# --- volumes ----------------------------------------------------------------------------------------


def probe_volumes(t: Target) -> list[ProbeResult]:
    env = t.env
    backend = env.volumes.backend.name
    encrypted, mounts = [], []
    if not t.settings.encrypted_volumes:
        encrypted.append("plain Docker volumes (encryptedVolumes: false)")
    else:
        states = env.volumes.states()
        for node in t.topology.nodes:
            if states.get(node.name) != volumes.UNLOCKED:
                encrypted.append(f"{node.name} {states.get(node.name)}")
            info = t.inspected.get(node.name) or {}
            sources = {m.get("Source") for m in info.get("Mounts", [])}
            if volumes.plaintext_dir(env.volumes.run_dir, node.name) not in sources:
                encrypted.append(f"{node.name} data not on its volume")
        table = _mount_table()
        run_dir = f"{env.volumes.run_dir}/"
        running = {n.name for n in t.topology.nodes if t.running(n)}
        for where, options in table.items():
            if not where.startswith(run_dir):
                continue
            node = where[len(run_dir):].split("/")[0]
            if node not in running:
                mounts.append(f"{where} mounted without a running node")
            if not {"nosuid", "nodev"} <= options:
                mounts.append(f"{where} lacks nosuid/nodev")
        for node in running:
            if volumes.mountpoint(env.volumes.run_dir, node) not in table:
                mounts.append(f"{node} volume not mounted")
    return [
        result("volumes.encrypted", f"every node unlocked ({backend}), data mounted from it",
               _where(encrypted, 3) if encrypted else f"{len(t.topology.nodes)} volumes unlocked ({backend})",
               not encrypted),
        result("volumes.mounts", f"mounted under {volumes.RUN_ROOT} (tmpfs) for running nodes only, nosuid,nodev",
               _where(mounts, 3) if mounts else "only the running nodes' volumes", not mounts and not encrypted),
    ]


def _mount_table() -> dict[str, set[str]]:
    found = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        found[fields[1]] = set(fields[3].split(","))
    return found


# --- running ----------------------------------------------------------------------------------------

# (probe group, the ids it reports): a group shares its setup (a user, test certificates).
GROUPS: tuple[tuple[Callable[[Target], list[ProbeResult]], tuple[str, ...]], ...] = (
    (probe_plaintext, ("ports.plaintext",)),
    (probe_bind_address, ("ports.bind-address",)),
    (probe_legacy_tls, ("tls.v1.0", "tls.v1.1", "tls.weak-cipher")),
    (probe_tls12, ("tls.v1.2",)),
    (probe_certificates, ("tls.chain", "tls.sans", "tls.expiry")),
    (probe_mtls, ("mtls.admin", "mtls.no-cert", "mtls.foreign-ca", "mtls.expired", "mtls.not-yet-valid")),
    (probe_scram, ("scram.admin", "scram.wrong-password", "scram.unknown-user")),
    (probe_authorization, ("authz.produce", "authz.consume", "authz.create-topic", "authz.alter-acl")),
    (probe_zookeeper, ("zookeeper.anonymous-read", "zookeeper.anonymous-write", "zookeeper.plaintext")),
    (probe_containers, ("containers.user", "containers.read-only-rootfs", "containers.cap-drop",
                        "containers.no-new-privileges", "containers.limits")),
    (probe_secrets_in_containers, ("containers.secrets",)),
    (probe_volumes, ("volumes.encrypted", "volumes.mounts")),
)


def _run_group(group: Callable[[Target], list[ProbeResult]], ids: tuple[str, ...], target: Target) -> list[ProbeResult]:
    """A group's results; a group that breaks fails each of its probes, naming why."""
    try:
        return group(target)
    except Exception as exc:  # noqa: BLE001 - a broken probe is a failed probe, never a passed one
        reason = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        return [result(probe, "probe runs", f"probe error: {reason}", False) for probe in ids]


def run(env: Environment, quick: bool = False, client: docker.DockerClient | None = None) -> Scorecard:
    """Every probe (``quick``: all but SLOW_PROBES) against the running environment."""
    client = client or connect()
    work_dir = Path(tempfile.mkdtemp(prefix=f"secure-kafka-verify-{env.env}-"))
    try:
        target = Target(env, client, work_dir)
        if not any(target.running(node) for node in env.settings.topology.nodes):
            raise SecureKafkaError(f"{env.env} has no running container: run `secure-kafka up {env.env}` first")
        fast = [(g, ids) for g, ids in GROUPS if not set(ids) <= SLOW_PROBES]
        slow = [] if quick else [(g, ids) for g, ids in GROUPS if set(ids) <= SLOW_PROBES]
        # Probes wait on the network and the brokers, not on this process: fast groups side by
        # side; then the slow ones (JVMs of their own), so they do not starve the others' timeouts.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(_run_group, group, ids, target) for group, ids in fast]
            found = {r.probe: r for future in futures for r in future.result()}
        for group, ids in slow:
            found.update({r.probe: r for r in _run_group(group, ids, target)})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    order = list(PROBES)
    return Scorecard(env.env, env.settings.profile.name, quick, tuple(sorted(found.values(), key=lambda r: order.index(r.probe))))
