"""Environment profiles: how strict an environment is (dev, ci, prod).

A profile is data. Settings of an environment start from its profile's defaults and may
only move within the profile's bounds: ``policy.check`` lists every setting outside them,
``secure-kafka check`` prints that list and ``up`` refuses to apply an environment with any.

The README's profile table is ``markdown_table()`` (a unit test keeps them equal); print it
with ``python -m secure_kafka.model.profiles``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import SecureKafkaError

__all__ = [
    "KEY_ALGORITHMS",
    "TLS_VERSIONS",
    "CIPHER_SUITES",
    "Profile",
    "DEV",
    "CI",
    "PROD",
    "PROFILES",
    "get_profile",
    "cipher_suites",
    "TlsPolicy",
    "markdown_table",
]

# Key algorithms the PKI can generate, weakest first.
KEY_ALGORITHMS = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096")

# TLS versions a listener may enable at all. Anything older is broken (POODLE, BEAST, SHA-1
# handshakes) and is refused by every profile.
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")

# Cipher suites per TLS version (JSSE names); every profile pins those of its enabled
# versions, on brokers and ZooKeeper alike. ZooKeeper 3.8's default list holds TLS 1.2 suites
# only (a TLS 1.3-only ZooKeeper fails every handshake unless suites are named), and one
# list everywhere means dev negotiates what prod negotiates. TLS 1.3 has only AEAD suites;
# for TLS 1.2 only forward-secret ECDHE with an AEAD cipher, for ECDSA and RSA keys alike.
CIPHER_SUITES = {
    "TLSv1.3": ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"),
    "TLSv1.2": (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
}


@dataclass(frozen=True)
class Profile:
    name: str
    # --- shape ----------------------------------------------------------------------------
    zookeeper_nodes: int
    min_zookeeper_nodes: int
    max_zookeeper_nodes: int
    brokers: int
    min_brokers: int
    replication_factor: int
    min_replication_factor: int
    min_insync_replicas: int
    min_insync_floor: int  # the lowest minInsyncReplicas the profile accepts
    allow_unclean_leader_election: bool
    # --- TLS and keys ---------------------------------------------------------------------
    tls_versions: tuple[str, ...]
    tls12_requires_reason: bool  # TLSv1.2 only with secure-kafka:tls12Reason set
    ssl_client_auth: str  # on the SSL listeners (SASL_SSL authenticates by SCRAM)
    key_algorithm: str
    allowed_key_algorithms: tuple[str, ...]
    leaf_validity_days: int
    max_leaf_validity_days: int
    ca_validity_days: int
    expiry_warning_days: int
    # --- exposure and storage -------------------------------------------------------------
    allow_plaintext_loopback: bool
    encrypted_volumes: bool
    encrypted_volumes_required: bool
    audit_log_backups: int  # rolled audit files (auditLogFileMb each) kept besides the current one
    audit_retention_days: int  # the host's collected decisions trail (ops/decision_trail.py)
    # --- containers -----------------------------------------------------------------------
    broker_heap_mb: int
    zookeeper_heap_mb: int
    broker_cpus: float
    zookeeper_cpus: float
    pids_limit: int
    allow_writable_rootfs: bool

    def resources(self, role: str) -> tuple[int, float]:
        """(heap MiB, CPUs) of a node of ``role``: a quorum node (ZooKeeper or KRaft
        controller) gets the quorum's, a broker the broker's."""
        if role == "broker":
            return self.broker_heap_mb, self.broker_cpus
        return self.zookeeper_heap_mb, self.zookeeper_cpus


DEV = Profile(
    name="dev",
    # One of each fits a laptop; a 3-node ensemble may be tried (ZooKeeper needs an odd count).
    zookeeper_nodes=1,
    min_zookeeper_nodes=1,
    max_zookeeper_nodes=3,
    brokers=1,
    min_brokers=1,
    replication_factor=1,
    min_replication_factor=1,
    min_insync_replicas=1,
    min_insync_floor=1,
    # Losing acknowledged records silently is never what a developer tests for, but a
    # single-broker dev cluster has no replica to lose them to: allowed, off by default.
    allow_unclean_leader_election=True,
    # Both current versions, so any client a developer tries connects.
    tls_versions=("TLSv1.2", "TLSv1.3"),
    tls12_requires_reason=False,
    ssl_client_auth="required",
    # P-256: fast to generate (tests create many PKIs); 825 days is the CA/B Forum's old cap.
    key_algorithm="ec-p256",
    allowed_key_algorithms=KEY_ALGORITHMS,
    leaf_validity_days=825,
    max_leaf_validity_days=825,
    ca_validity_days=3650,
    expiry_warning_days=30,
    # A PLAINTEXT listener on 127.0.0.1 helps debugging with tools that lack TLS; opt-in.
    allow_plaintext_loopback=True,
    # On by default so dev runs the storage prod runs; opting out helps on machines
    # without fscrypt or FUSE.
    encrypted_volumes=True,
    encrypted_volumes_required=False,
    audit_log_backups=5,
    audit_retention_days=30,
    broker_heap_mb=512,
    zookeeper_heap_mb=256,
    broker_cpus=1.0,
    zookeeper_cpus=0.5,
    pids_limit=512,
    # Dev runs prod's container shape by default; a developer may opt out of the read-only
    # root (readOnlyRootfs: false) to install a debugging tool in a container. No setting
    # runs a container as root: with cap_drop ALL root could not even read the 0600 config
    # files of uid 10001, and `docker exec -u 0` serves debugging without changing the plan.
    allow_writable_rootfs=True,
)

# The throwaway environment of CI pipelines: dev's shape (2 cores are common on CI runners),
# but prod's strictness wherever it costs no hardware, so that CI fails where prod would.
CI = replace(
    DEV,
    name="ci",
    allow_unclean_leader_election=False,
    # Short-lived certificates: a pipeline's PKI outlives it by days, not years; no leaf
    # outlives the 30-day CA.
    leaf_validity_days=7,
    max_leaf_validity_days=30,
    ca_validity_days=30,
    expiry_warning_days=1,
    allow_plaintext_loopback=False,
    audit_log_backups=2,
    audit_retention_days=7,
    allow_writable_rootfs=False,
)

PROD = Profile(
    name="prod",
    # A 3-node ensemble survives one ZooKeeper loss; an even count adds no tolerance.
    zookeeper_nodes=3,
    min_zookeeper_nodes=3,
    max_zookeeper_nodes=7,
    # RF 3 with min ISR 2: one broker may be down (or rolling) and acks=all writes go on.
    brokers=3,
    min_brokers=3,
    replication_factor=3,
    min_replication_factor=3,
    min_insync_replicas=2,
    min_insync_floor=2,
    allow_unclean_leader_election=False,
    # TLS 1.3 only: no RSA key exchange, no CBC, forward secrecy always. TLS 1.2 for an old
    # client only with a written reason (secure-kafka:tls12Reason), and then AEAD suites only.
    tls_versions=("TLSv1.3",),
    tls12_requires_reason=True,
    ssl_client_auth="required",
    # CA/B Forum limits for public leaf certificates: P-384 or RSA >= 3072, <= 397 days.
    key_algorithm="ec-p384",
    allowed_key_algorithms=("ec-p384", "rsa-3072", "rsa-4096"),
    leaf_validity_days=397,
    max_leaf_validity_days=397,
    ca_validity_days=3650,
    expiry_warning_days=30,
    allow_plaintext_loopback=False,
    encrypted_volumes=True,
    encrypted_volumes_required=True,
    # Authorization decisions are evidence: keep 500 MB of them on the (encrypted) volume.
    audit_log_backups=50,
    audit_retention_days=90,
    broker_heap_mb=1024,
    zookeeper_heap_mb=512,
    # Limits are ceilings, not reservations; 2 CPUs is what the smallest host we run has.
    broker_cpus=2.0,
    zookeeper_cpus=1.0,
    pids_limit=512,
    allow_writable_rootfs=False,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (DEV, CI, PROD)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise SecureKafkaError(f"unknown profile {name!r}: use one of {known}") from None


def cipher_suites(tls_versions: tuple[str, ...]) -> tuple[str, ...]:
    """The suites enabled for ``tls_versions``, TLS 1.3's first; unknown versions add none."""
    return tuple(suite for version in TLS_VERSIONS[::-1] if version in tls_versions for suite in CIPHER_SUITES[version])


@dataclass(frozen=True)
class TlsPolicy:
    """What every TLS endpoint of an environment enables, from its ``tlsVersions``: brokers,
    ZooKeeper, client configs and the probes that check them read this one value."""

    versions: tuple[str, ...]  # lowest first: TLSv1.2, TLSv1.3

    @classmethod
    def of(cls, tls_versions: tuple[str, ...]) -> "TlsPolicy":
        if not tls_versions:
            raise SecureKafkaError("secure-kafka:tlsVersions is empty: list at least TLSv1.3")
        return cls(tuple(sorted(tls_versions, key=_tls_version_key)))

    @property
    def protocol(self) -> str:
        """The highest version: Java's SSLContext protocol."""
        return self.versions[-1]

    @property
    def enabled_protocols(self) -> str:
        return ",".join(self.versions)

    @property
    def cipher_suites(self) -> str:
        """Named, not left to defaults: ZooKeeper 3.8 names no TLS 1.3 suite by default, so a
        TLS 1.3-only ZooKeeper or client fails every handshake unless suites are named."""
        return ",".join(cipher_suites(self.versions))


def _tls_version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.removeprefix("TLSv").split("."))
    except ValueError:
        raise SecureKafkaError(
            f"secure-kafka:tlsVersions has {version!r}: use names like TLSv1.2 and TLSv1.3"
        ) from None


# --- The README's profile table --------------------------------------------------------------


def _tls(p: Profile) -> str:
    versions = " + ".join(v.removeprefix("TLSv") for v in p.tls_versions)
    extra = " (1.2 only with `tls12Reason`)" if p.tls12_requires_reason else ""
    return f"{versions}{extra}; AEAD suites only"


# (row title, value of a profile)
TABLE_ROWS = (
    ("ZooKeeper nodes (default, allowed)", lambda p: f"{p.zookeeper_nodes}, odd {p.min_zookeeper_nodes}..{p.max_zookeeper_nodes}"),
    ("brokers (default, minimum)", lambda p: f"{p.brokers}, ≥ {p.min_brokers}"),
    ("replication factor / min ISR (default, minimum)",
     lambda p: f"{p.replication_factor} / {p.min_insync_replicas}, ≥ {p.min_replication_factor} / ≥ {p.min_insync_floor}"),
    ("unclean leader election", lambda p: "off" + ("" if p.allow_unclean_leader_election else ", refused")),
    ("TLS", _tls),
    ("client certificate on SSL listeners", lambda p: p.ssl_client_auth),
    ("key algorithm (default; allowed)", lambda p: f"{p.key_algorithm}; {', '.join(p.allowed_key_algorithms)}"),
    ("leaf validity (default, maximum)", lambda p: f"{p.leaf_validity_days} d, ≤ {p.max_leaf_validity_days} d"),
    ("CA validity", lambda p: f"{p.ca_validity_days} d"),
    ("PLAINTEXT listener on 127.0.0.1", lambda p: "opt-in" if p.allow_plaintext_loopback else "refused"),
    ("encrypted volumes", lambda p: "required" if p.encrypted_volumes_required else ("on (opt-out allowed)" if p.encrypted_volumes else "off")),
    ("audit log kept on a node", lambda p: f"current + {p.audit_log_backups} × auditLogFileMb (10 MB)"),
    ("collected decisions kept on the host", lambda p: f"{p.audit_retention_days} days"),
    ("heap broker / ZooKeeper", lambda p: f"{p.broker_heap_mb} / {p.zookeeper_heap_mb} MiB"),
    ("CPUs broker / ZooKeeper", lambda p: f"{p.broker_cpus:g} / {p.zookeeper_cpus:g}"),
    ("pids per container", lambda p: str(p.pids_limit)),
    ("container user", lambda p: "uid 10001, never root"),
    ("read-only root filesystem", lambda p: "yes" + (" (opt-out allowed)" if p.allow_writable_rootfs else ", required")),
    ("cap_drop ALL, no-new-privileges", lambda p: "yes"),
    ("ports published on", lambda p: "127.0.0.1; another interface only with `allowPublicBind`"),
)


def markdown_table() -> str:
    profiles = list(PROFILES.values())
    lines = [
        "| setting | " + " | ".join(p.name for p in profiles) + " |",
        "| --- |" + " --- |" * len(profiles),
    ]
    lines += [f"| {title} | " + " | ".join(value(p) for p in profiles) + " |" for title, value in TABLE_ROWS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
