"""An environment's settings: the ``secure-kafka:*`` keys of ``Pulumi.<env>.yaml``.

The stack file is the single source of an environment's settings, for the Pulumi program
(through ``pulumi.Config``) and for the CLI alike. Reading it is strict: an unknown key or
a value of the wrong type is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from .profiles import Profile, TlsPolicy, get_profile
from .topology import KAFKA_VERSIONS, KRAFT, METADATA_MODES, ZOOKEEPER, Topology

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "NAMESPACE",
    "Settings",
    "KEYS",
    "KEY_HELP",
    "check_env_name",
    "defaults",
    "from_config",
    "to_values",
    "to_config",
    "Project",
]

# The stack setting volumeBackend. gocryptfs by measurement on this platform (kernel without
# an AES-NI crypto driver: fscrypt writes 69 MiB/s, gocryptfs 290, plain ext4 loop 274;
# benchmarks/at_rest_mechanisms.py). Choose fscrypt where /proc/crypto lists aesni_intel.
BACKENDS = ("gocryptfs", "fscrypt")
DEFAULT_BACKEND = "gocryptfs"
DEFAULT_AUDIT_LOG_FILE_MB = 10

NAMESPACE = "secure-kafka"
# The project id of settings made in memory, not read from a project (tests, `init`'s defaults).
UNSCOPED_PROJECT = "unscoped"
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# 16 bytes in URL-safe base64 without padding, as Kafka writes a cluster id.
CLUSTER_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{21}$")


@dataclass(frozen=True)
class Settings:
    env: str
    profile: Profile
    brokers: int
    zookeeper_nodes: int
    port_base: int
    bind_address: str
    allow_public_bind: bool
    plaintext_loopback: bool
    encrypted_volumes: bool
    key_algorithm: str
    leaf_validity_days: int
    tls_versions: tuple[str, ...]
    tls12_reason: str  # why TLSv1.2 is enabled where the profile wants TLSv1.3 only
    replication_factor: int
    min_insync_replicas: int
    unclean_leader_election: bool
    read_only_rootfs: bool
    # Size of each node's encrypted volume image (sparse: disk is used as data is written);
    # read when a volume is created, an existing image keeps its size.
    volume_size_gib: int = 2
    # How volumes are encrypted: gocryptfs or fscrypt (the default and why: DEFAULT_BACKEND).
    volume_backend: str = DEFAULT_BACKEND
    # Not a stack-file key: the id of the project directory the settings were read from
    # (``Project.id``), part of every host-wide name, so two checkouts never share an object.
    project_id: str = UNSCOPED_PROJECT
    # ZooKeeper (Kafka 3.9) or KRaft (Kafka 4.x). A stack file without the key predates KRaft
    # and is a ZooKeeper environment: reading it as KRaft would re-initialise its data.
    metadata_mode: str = ZOOKEEPER
    controllers: int = 1  # KRaft mode's controller quorum; zookeeper_nodes is ZooKeeper mode's
    # KRaft mode: the cluster id the nodes are formatted with. Empty: derived from the network
    # name (topology.kraft_cluster_id); `migrate` sets the ZooKeeper cluster's own id, which
    # the migrated nodes keep.
    cluster_id: str = ""
    # Not a stack-file key: set by `migrate` while a ZooKeeper environment moves to KRaft (its
    # topology then has both the ZooKeeper ensemble and the controllers).
    migrating: bool = False
    # Allowed decisions in the audit trail too (denied ones always are): what an auditor asks
    # for ("who read this topic"), at a cost in log volume measured in benchmarks/audit_cost_bench.py.
    audit_allowed: bool = True
    # Size of each node's own audit log file before it rolls (the node keeps the profile's
    # audit_log_backups of them; the durable trail is collected from them, README, Audit).
    audit_log_file_mb: int = DEFAULT_AUDIT_LOG_FILE_MB

    @functools.cached_property
    def topology(self) -> Topology:
        # Cached: settings are frozen, and every module asks for it (dataclasses.replace makes a new one).
        kraft = self.metadata_mode == KRAFT
        return Topology(self.env, 0 if kraft else self.zookeeper_nodes, self.brokers, self.port_base,
                        self.bind_address, self.project_id,
                        controller_count=self.controllers if kraft or self.migrating else 0,
                        fixed_cluster_id=self.cluster_id)

    @property
    def kafka_version(self) -> str:
        return KAFKA_VERSIONS[self.metadata_mode]

    @functools.cached_property
    def tls(self) -> TlsPolicy:
        return TlsPolicy.of(self.tls_versions)

    @property
    def topic_replication_factor(self) -> int:
        """The replication factor of the topics the environment makes (brokers' default, the
        verify topic): ``replicationFactor``, at most one replica per broker (``check`` refuses
        more, but a dev environment may run fewer brokers than it asks)."""
        return min(self.replication_factor, self.brokers)

    @property
    def topic_min_insync_replicas(self) -> int:
        return min(self.min_insync_replicas, self.brokers)


# stack-file key -> (Settings field, type)
KEYS: dict[str, tuple[str, type]] = {
    "profile": ("profile", str),
    "metadataMode": ("metadata_mode", str),
    "brokers": ("brokers", int),
    "zookeeperNodes": ("zookeeper_nodes", int),
    "controllers": ("controllers", int),
    "clusterId": ("cluster_id", str),
    "portBase": ("port_base", int),
    "bindAddress": ("bind_address", str),
    "allowPublicBind": ("allow_public_bind", bool),
    "plaintextLoopback": ("plaintext_loopback", bool),
    "encryptedVolumes": ("encrypted_volumes", bool),
    "keyAlgorithm": ("key_algorithm", str),
    "leafValidityDays": ("leaf_validity_days", int),
    "tlsVersions": ("tls_versions", list),
    "tls12Reason": ("tls12_reason", str),
    "replicationFactor": ("replication_factor", int),
    "minInsyncReplicas": ("min_insync_replicas", int),
    "uncleanLeaderElection": ("unclean_leader_election", bool),
    "readOnlyRootfs": ("read_only_rootfs", bool),
    "volumeSizeGib": ("volume_size_gib", int),
    "volumeBackend": ("volume_backend", str),
    "auditAllowed": ("audit_allowed", bool),
    "auditLogFileMb": ("audit_log_file_mb", int),
}

# What each key means, written as a comment above it by `init` (a test keeps it complete).
KEY_HELP: dict[str, str] = {
    "profile": "dev, ci or prod: the strictness every other key is checked against (`secure-kafka check`)",
    "metadataMode": "zookeeper (Kafka 3.9) or kraft (Kafka 4.x): where the cluster keeps its metadata",
    "brokers": "number of Kafka brokers (prod: at least 3)",
    "zookeeperNodes": "zookeeper mode: number of ZooKeeper nodes, odd (prod: 3)",
    "controllers": "kraft mode: number of KRaft controllers, odd (prod: 3)",
    "clusterId": "kraft mode: the cluster id (empty: derived from the environment; `migrate` sets the ZooKeeper cluster's)",
    "portBase": "first host port: broker i publishes SASL_SSL on portBase+10i+1 and SSL (mTLS) on +2",
    "bindAddress": "host interface the brokers' ports are published on (loopback unless allowPublicBind)",
    "allowPublicBind": "explicit allow for a non-loopback bindAddress",
    "plaintextLoopback": "dev only: an extra PLAINTEXT listener on 127.0.0.1 (benchmarks, debugging)",
    "encryptedVolumes": "node data on encrypted volumes (prod: required)",
    "keyAlgorithm": "key type of every certificate: ec-p256, ec-p384, rsa-3072, rsa-4096 (prod: not ec-p256)",
    "leafValidityDays": "validity of node and client certificates (prod: at most 397)",
    "tlsVersions": "TLS versions the brokers and ZooKeeper accept (prod: TLSv1.3 only)",
    "tls12Reason": "prod: why TLSv1.2 must stay enabled (required to list it)",
    "replicationFactor": "default replication factor of topics (prod: 3)",
    "minInsyncReplicas": "min.insync.replicas (prod: 2)",
    "uncleanLeaderElection": "allow an out-of-sync replica to become leader (loses data; never in prod)",
    "readOnlyRootfs": "containers' root filesystem read-only (prod: required)",
    "volumeSizeGib": "size of a new fscrypt volume image (gocryptfs grows with the host filesystem)",
    "volumeBackend": "gocryptfs or fscrypt: how volumes are encrypted (see README, Encryption at rest)",
    "auditAllowed": "allowed decisions in the audit trail too, not only denied ones (default true; README, Audit)",
    "auditLogFileMb": "size in MB of each node's audit log file before it rolls, 1..1024 (the durable trail collects them)",
}


def check_env_name(env: str) -> str:
    if not ENV_NAME.match(env):
        raise SecureKafkaError(
            f"invalid environment name {env!r}: use 1-20 lowercase letters, digits or '-', starting with a letter"
        )
    return env


def defaults(env: str, profile: Profile, port_base: int = 19000) -> Settings:
    return Settings(
        env=check_env_name(env),
        profile=profile,
        brokers=profile.brokers,
        zookeeper_nodes=profile.zookeeper_nodes,
        controllers=profile.zookeeper_nodes,  # a quorum like ZooKeeper's: same bounds, same math
        port_base=port_base,
        bind_address="127.0.0.1",
        allow_public_bind=False,
        plaintext_loopback=False,
        encrypted_volumes=profile.encrypted_volumes,
        key_algorithm=profile.key_algorithm,
        leaf_validity_days=profile.leaf_validity_days,
        tls_versions=profile.tls_versions,
        tls12_reason="",
        replication_factor=profile.replication_factor,
        min_insync_replicas=profile.min_insync_replicas,
        unclean_leader_election=False,
        read_only_rootfs=True,
    )


def from_config(env: str, config: dict[str, object], source: str) -> Settings:
    """Settings from ``{key: value}`` without namespace; ``source`` names where they came from."""
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise SecureKafkaError(
            f"{source}: unknown key {NAMESPACE}:{unknown[0]}: known keys are {', '.join(KEYS)}"
        )
    if "profile" not in config:
        raise SecureKafkaError(f"{source}: missing key {NAMESPACE}:profile: set it to dev, ci or prod")
    values: dict[str, object] = {}
    for key, value in config.items():
        field, expected = KEYS[key]
        values[field] = _typed(key, value, expected, source)
    if values.get("metadata_mode", ZOOKEEPER) not in METADATA_MODES:
        raise SecureKafkaError(
            f"{source}: {NAMESPACE}:metadataMode must be {' or '.join(METADATA_MODES)}, got {values['metadata_mode']!r}"
        )
    if values.get("cluster_id") and not CLUSTER_ID.match(str(values["cluster_id"])):
        raise SecureKafkaError(
            f"{source}: {NAMESPACE}:clusterId must be a Kafka cluster id (22 characters of A-Z a-z 0-9 _ -, "
            f"not starting with -) or empty, got {values['cluster_id']!r}"
        )
    if values.get("volume_backend", DEFAULT_BACKEND) not in BACKENDS:
        raise SecureKafkaError(
            f"{source}: {NAMESPACE}:volumeBackend must be {' or '.join(BACKENDS)}, got {values['volume_backend']!r}"
        )
    profile = get_profile(str(values.pop("profile")))
    if "tls_versions" in values:
        values["tls_versions"] = tuple(str(v) for v in values["tls_versions"])  # type: ignore[union-attr]
    return dataclasses.replace(defaults(env, profile), **values)


def _typed(key: str, value: object, expected: type, source: str) -> object:
    """``value`` as ``expected``, from any form a stack file or Pulumi hands over, else an error.

    Accepted besides the native YAML type: the strings ``pulumi stack init`` and ``pulumi
    config set`` write (``"3"``, ``"true"``, a JSON list) and the integral floats a dynamic
    resource's inputs become (a protobuf Struct has only doubles). Nothing else is guessed:
    ``"1"`` is no bool and ``"three"`` no int.
    """
    if isinstance(value, str) and expected is not str:
        if expected is int and re.fullmatch(r"-?[0-9]+", value):
            return int(value)
        if expected is bool and value in ("true", "false"):
            return value == "true"
        if expected is list and value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                pass
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    # bool is an int in Python; a stack file saying `brokers: true` is still wrong.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise SecureKafkaError(
            f"{source}: {NAMESPACE}:{key} must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def to_values(settings: Settings) -> dict[str, object]:
    """Settings as ``{key: value}`` without namespace: what ``from_config`` reads back."""
    out: dict[str, object] = {}
    for key, (field, _) in KEYS.items():
        value = getattr(settings, field)
        if field == "profile":
            value = value.name
        elif field == "tls_versions":
            value = list(value)
        out[key] = value
    return out


def to_config(settings: Settings) -> dict[str, object]:
    """The stack-file form of settings, namespaced, for ``init``."""
    return {f"{NAMESPACE}:{key}": value for key, value in to_values(settings).items()}


class Project:
    """The directory that holds ``Pulumi.yaml``, the stack files and ``certs/``."""

    def __init__(self, root: Path):
        self.root = root

    @functools.cached_property
    def id(self) -> str:
        """Eight hex digits naming this checkout on the host: a hash of its absolute path.

        Container, network and volume names, labels and the mount root carry it, so
        `down dev` here cannot reach the `dev` of another checkout. A moved checkout is a new
        project: `down` its environments before moving it.
        """
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]

    @classmethod
    def find(cls, start: Path | None = None) -> "Project":
        """``$SECURE_KAFKA_PROJECT``, else the nearest directory upwards with ``Pulumi.yaml``."""
        if env_root := os.environ.get("SECURE_KAFKA_PROJECT"):
            return cls(Path(env_root).resolve())
        here = (start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / "Pulumi.yaml").is_file():
                return cls(candidate)
        raise SecureKafkaError(
            f"no Pulumi.yaml in {here} or above: run inside a secure-kafka project or set SECURE_KAFKA_PROJECT"
        )

    def stack_file(self, env: str) -> Path:
        return self.root / f"Pulumi.{check_env_name(env)}.yaml"

    def certs_dir(self, env: str) -> Path:
        return self.root / "certs" / check_env_name(env)

    def load(self, env: str) -> Settings:
        path = self.stack_file(env)
        if not path.is_file():
            raise SecureKafkaError(f"{path.name} not found: run `secure-kafka init {env} --profile dev|prod` first")
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SecureKafkaError(f"{path}: cannot read it as YAML ({exc.__class__.__name__}): fix or re-create it") from None
        config = document.get("config", {}) if isinstance(document, dict) else None
        if not isinstance(config, dict):
            raise SecureKafkaError(f"{path}: 'config' must be a mapping of {NAMESPACE}:* keys")
        ours = {}
        for key, value in config.items():
            namespace, _, name = str(key).partition(":")
            if namespace == NAMESPACE:
                ours[name] = value
        return dataclasses.replace(from_config(env, ours, path.name), project_id=self.id)

    def update(self, env: str, values: dict[str, object]) -> Path:
        """Sets stack-file keys (``{key: value}``, no namespace) in place, keeping every other
        line and comment; a key the file lacks is added at the end of its ``config`` mapping.
        Nothing is written unless the result reads back with exactly these values."""
        path = self.stack_file(env)
        lines = path.read_text().splitlines()
        for key, value in values.items():
            line = "  " + yaml.safe_dump({f"{NAMESPACE}:{key}": value}, default_flow_style=True, width=1000).strip().strip("{}")
            pattern = re.compile(rf"^\s+['\"]?{re.escape(NAMESPACE)}:{re.escape(key)}['\"]?\s*:")
            index = next((i for i, existing in enumerate(lines) if pattern.match(existing)), None)
            if index is None:
                lines.append(line)
            else:
                lines[index] = line
        text = "\n".join(lines) + "\n"
        try:
            config = (yaml.safe_load(text) or {}).get("config") or {}
        except yaml.YAMLError:
            config = {}
        if any(config.get(f"{NAMESPACE}:{key}") != value for key, value in values.items()):
            wanted = ", ".join(f"{NAMESPACE}:{key}: {value}" for key, value in values.items())
            raise SecureKafkaError(f"{path.name}: cannot set {wanted} in place (config is not its last mapping): set them by hand")
        write_atomic(path, text, mode=0o644)
        return path

    def write(self, settings: Settings) -> Path:
        """Writes a new stack file; refuses to overwrite an existing one."""
        path = self.stack_file(settings.env)
        if path.exists():
            raise SecureKafkaError(f"{path.name} exists already: edit it, or remove it to start over")
        lines = [f"# secure-kafka environment {settings.env!r}: the profile {settings.profile.name}'s defaults.",
                 "# Change values within the profile's bounds; `secure-kafka check` lists what breaks them.",
                 "config:"]
        for key, value in to_config(settings).items():
            lines.append(f"  # {KEY_HELP[key.partition(':')[2]]}")
            lines.append("  " + yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip().strip("{}"))
        write_atomic(path, "\n".join(lines) + "\n", mode=0o644)
        return path
