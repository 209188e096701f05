"""Static policy check of an environment's settings against its profile.

Pure: ``check(settings)`` returns every violation at once, each naming the stack-file
setting, its value, the rule and the fix. ``secure-kafka check`` prints them; ``enforce``
(called first thing by ``Environment.up``) refuses an environment with any, before
anything is applied.

Not covered, because no setting exists for it: supplied passwords (every password is
generated into ``certs/<env>/secrets.json``; the prod passphrase's length is checked where it
is read, in ``certstore``) and the container user (the plan always runs uid 10001).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import asdict, dataclass

from ..errors import SecureKafkaError
from .profiles import TLS_VERSIONS
from .settings import DEFAULT_AUDIT_LOG_FILE_MB, KEYS, NAMESPACE, Settings, defaults
from .topology import BROKER_INTERNAL_PORT, KRAFT, ZOOKEEPER

__all__ = ["SECURITY_KEYS", "Violation", "check", "enforce", "overrides"]

# Published ports stay out of the privileged range and inside the TCP range.
MIN_PORT, MAX_PORT = 1024, 65535
# A node's audit log file rolls at this size at most: its tail is read back on every collection.
MAX_AUDIT_LOG_FILE_MB = 1024

_KEY_OF_FIELD = {field: key for key, (field, _) in KEYS.items()}

# The stack-file keys that weaken or strengthen a security property: each set away from its
# profile's default is an override, recorded with every `up` in the operations trail.
SECURITY_KEYS = ("bindAddress", "allowPublicBind", "plaintextLoopback", "encryptedVolumes", "keyAlgorithm",
                 "leafValidityDays", "tlsVersions", "tls12Reason", "uncleanLeaderElection", "readOnlyRootfs",
                 "auditAllowed")

# The metadata quorum of each mode, checked by the same rules (a majority must stay up); the
# other mode's count is not read. mode -> (Settings field, what it counts, (min, max, odd) rules)
QUORUM = {
    ZOOKEEPER: ("zookeeper_nodes", "ZooKeeper nodes", ("zookeeper-nodes-min", "zookeeper-nodes-max", "zookeeper-nodes-odd")),
    KRAFT: ("controllers", "KRaft controllers", ("controllers-min", "controllers-max", "controllers-odd")),
}


@dataclass(frozen=True)
class Violation:
    setting: str  # the stack-file key, e.g. secure-kafka:brokers
    value: object  # as the stack file has it (JSON-safe)
    rule: str  # a stable id, e.g. brokers-min
    reason: str  # what the rule says
    fix: str  # what to change

    def line(self) -> str:
        return f"{self.setting}={_show(self.value)}: {self.rule}: {self.reason}; fix: {self.fix}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _show(value: object) -> str:
    """A value as YAML writes it in the stack file."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def check(settings: Settings) -> list[Violation]:
    """Every way ``settings`` leave the bounds of its profile, in stack-file key order."""
    found: list[Violation] = []
    p = settings.profile
    stack = f"Pulumi.{settings.env}.yaml"

    def violation(field: str, rule: str, reason: str, fix: str) -> None:
        value = getattr(settings, field)
        found.append(Violation(f"{NAMESPACE}:{_KEY_OF_FIELD[field]}",
                               list(value) if isinstance(value, tuple) else value, rule, reason, f"{fix} in {stack}"))

    # --- shape ------------------------------------------------------------------------------
    field, what, (rule_min, rule_max, rule_odd) = QUORUM[settings.metadata_mode]
    key, quorum = _KEY_OF_FIELD[field], getattr(settings, field)
    if quorum < p.min_zookeeper_nodes:
        violation(field, rule_min, f"profile {p.name} needs at least {p.min_zookeeper_nodes} {what}",
                  f"set {key} to {p.min_zookeeper_nodes}")
    elif quorum > p.max_zookeeper_nodes:
        violation(field, rule_max, f"profile {p.name} allows at most {p.max_zookeeper_nodes} {what}",
                  f"set {key} to {p.max_zookeeper_nodes} or fewer")
    if quorum >= 1 and quorum % 2 == 0:
        violation(field, rule_odd,
                  f"a quorum of {what} needs an odd count: an even one tolerates no more failures than one node fewer",
                  f"set {key} to {' or '.join(map(str, _odd_neighbours(quorum, p.min_zookeeper_nodes, p.max_zookeeper_nodes)))}")
    brokers = settings.brokers
    if brokers < max(1, p.min_brokers):
        violation("brokers", "brokers-min", f"profile {p.name} needs at least {max(1, p.min_brokers)} brokers",
                  f"set brokers to {max(1, p.min_brokers)} or more")
    rf, isr = settings.replication_factor, settings.min_insync_replicas
    if rf < p.min_replication_factor:
        violation("replication_factor", "replication-factor-min",
                  f"profile {p.name} needs a replication factor of at least {p.min_replication_factor}",
                  f"set replicationFactor to {p.min_replication_factor}")
    if rf > brokers >= 1:
        violation("replication_factor", "replication-factor-exceeds-brokers",
                  f"a replication factor of {rf} needs {rf} brokers, the environment has {brokers}",
                  f"set brokers to {rf}" + (f" or replicationFactor to {brokers}" if brokers >= p.min_replication_factor else ""))
    if isr < p.min_insync_floor:
        violation("min_insync_replicas", "min-insync-replicas-min",
                  f"profile {p.name} needs minInsyncReplicas of at least {p.min_insync_floor}, "
                  "or an acks=all write may live on one disk only",
                  f"set minInsyncReplicas to {p.min_insync_floor}")
    if isr > rf >= 1:
        violation("min_insync_replicas", "min-insync-replicas-exceeds-replication",
                  f"minInsyncReplicas {isr} above the replication factor {rf} refuses every acks=all write",
                  f"set minInsyncReplicas to {max(1, rf - 1)}")
    if settings.unclean_leader_election and not p.allow_unclean_leader_election:
        violation("unclean_leader_election", "unclean-leader-election-forbidden",
                  f"profile {p.name} forbids unclean leader election: it silently loses acknowledged records",
                  "set uncleanLeaderElection to false")

    # --- TLS and keys -----------------------------------------------------------------------
    versions = settings.tls_versions
    unknown = [v for v in versions if v not in TLS_VERSIONS]
    if not versions:
        violation("tls_versions", "tls-versions-empty", "no TLS version is enabled", "set tlsVersions to [TLSv1.3]")
    elif unknown:
        violation("tls_versions", "tls-version-unsupported",
                  f"{', '.join(map(str, unknown))} is not allowed: only {' and '.join(TLS_VERSIONS)} are",
                  "list only TLSv1.3 (and TLSv1.2 where needed) in tlsVersions")
    if "TLSv1.2" in versions and p.tls12_requires_reason and not settings.tls12_reason.strip():
        violation("tls_versions", "tls12-needs-reason",
                  f"profile {p.name} enables TLSv1.2 only with a written reason",
                  "set tlsVersions to [TLSv1.3], or write why TLSv1.2 is needed into tls12Reason")
    if settings.key_algorithm not in p.allowed_key_algorithms:
        violation("key_algorithm", "key-algorithm-not-allowed",
                  f"profile {p.name} allows {', '.join(p.allowed_key_algorithms)}",
                  f"set keyAlgorithm to {p.key_algorithm}")
    if not 1 <= settings.leaf_validity_days <= p.max_leaf_validity_days:
        violation("leaf_validity_days", "leaf-validity-bounds",
                  f"profile {p.name} issues leaf certificates for 1..{p.max_leaf_validity_days} days",
                  f"set leafValidityDays to {p.leaf_validity_days}")

    # --- exposure ---------------------------------------------------------------------------
    if settings.plaintext_loopback and not p.allow_plaintext_loopback:
        violation("plaintext_loopback", "plaintext-listener-forbidden",
                  f"profile {p.name} allows no PLAINTEXT listener, not even on loopback",
                  "set plaintextLoopback to false")
    try:
        address = ipaddress.ip_address(settings.bind_address)
    except ValueError:
        violation("bind_address", "bind-address-invalid", "the address listeners are published on must be an IP address",
                  "set bindAddress to 127.0.0.1 or one interface's address")
    else:
        if not address.is_loopback and not settings.allow_public_bind:
            where = "every interface" if address.is_unspecified else "a non-loopback interface"
            violation("bind_address", "public-bind-not-allowed",
                      f"{settings.bind_address} publishes the listeners on {where} without allowPublicBind",
                      "set bindAddress to 127.0.0.1, or set allowPublicBind to true to publish on purpose")
    _check_ports(settings, violation)
    if not 1 <= settings.audit_log_file_mb <= MAX_AUDIT_LOG_FILE_MB:
        violation("audit_log_file_mb", "audit-log-file-size",
                  f"a node's audit log file rolls at 1..{MAX_AUDIT_LOG_FILE_MB} MB", f"set auditLogFileMb to {DEFAULT_AUDIT_LOG_FILE_MB}")

    # --- storage and containers -------------------------------------------------------------
    if not settings.encrypted_volumes and p.encrypted_volumes_required:
        violation("encrypted_volumes", "encrypted-volumes-required",
                  f"profile {p.name} keeps data only on encrypted volumes", "set encryptedVolumes to true")
    if not settings.read_only_rootfs and not p.allow_writable_rootfs:
        violation("read_only_rootfs", "writable-rootfs-forbidden",
                  f"profile {p.name} runs containers with a read-only root filesystem", "set readOnlyRootfs to true")
    return found


def _odd_neighbours(count: int, low: int, high: int) -> list[int]:
    return [n for n in (count - 1, count + 1) if low <= n <= high] or [high]


def _check_ports(settings: Settings, violation) -> None:
    listeners = ["sasl_ssl", "ssl"] + (["plaintext"] if settings.plaintext_loopback else [])
    # The ports the topology publishes; with no broker (another rule's error), broker 0's.
    topology = dataclasses.replace(settings.topology, broker_count=max(settings.brokers, 1))
    ports = [topology.listener_port(broker, listener) for broker in topology.brokers for listener in listeners]
    lowest, highest = min(ports), max(ports)
    if lowest < MIN_PORT or highest > MAX_PORT:
        top = MAX_PORT - (highest - settings.port_base)
        violation("port_base", "port-range",
                  f"brokers publish ports {lowest}..{highest}, outside {MIN_PORT}..{MAX_PORT}",
                  f"set portBase between {MIN_PORT} and {top}")
    if BROKER_INTERNAL_PORT in ports:
        violation("port_base", "port-collision",
                  f"a published listener would take port {BROKER_INTERNAL_PORT}, the brokers' inter-broker listener",
                  f"set portBase so that {settings.port_base}..{highest} leaves out {BROKER_INTERNAL_PORT}, e.g. 19000")


def enforce(settings: Settings) -> None:
    """Raises one ``SecureKafkaError`` summarizing every violation; returns when there is none."""
    violations = check(settings)
    if violations:
        summary = ", ".join(f"{v.setting} ({v.rule})" for v in violations)
        raise SecureKafkaError(
            f"environment {settings.env!r} breaks profile {settings.profile.name} in {len(violations)} "
            f"setting(s): {summary}: nothing applied; run `secure-kafka check {settings.env}` for the fixes"
        )


def overrides(settings: Settings) -> dict[str, object]:
    """The security settings (``SECURITY_KEYS``) set away from the profile's defaults, by stack-file key."""
    default = defaults(settings.env, settings.profile, settings.port_base)
    changed = {key: getattr(settings, KEYS[key][0]) for key in SECURITY_KEYS
               if getattr(settings, KEYS[key][0]) != getattr(default, KEYS[key][0])}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in changed.items()}  # as the stack file spells it
