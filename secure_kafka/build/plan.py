"""``ClusterPlan``: everything an engine needs to stand up an environment, as pure data.

Built by ``planner.build_plan`` from settings, secrets and rendered templates; applied by the
direct Docker engine or mapped onto ``pulumi_docker`` by the Pulumi program. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..model.topology import CONTAINER_UID

__all__ = [
    "NANOS",
    "Mount",
    "PortBinding",
    "Healthcheck",
    "RenderedFile",
    "ContainerSpec",
    "ClusterPlan",
    "QUORUM_ROLES",
    "START_ORDER",
    "spec_hash",
    "LABEL_PROJECT",
    "LABEL_ENV",
    "LABEL_ROLE",
    "LABEL_NODE",
    "LABEL_SPEC_HASH",
]

# The roles that keep the metadata, and the order roles start in: a broker exits when no
# quorum answers it within its timeout.
QUORUM_ROLES = ("zookeeper", "controller")
START_ORDER = (*QUORUM_ROLES, "broker")

# Docker counts CPUs (NanoCpus) and healthcheck durations in billionths.
NANOS = 1_000_000_000


@dataclass(frozen=True)
class Mount:
    """``kind`` is "bind" (``source`` a host path), "volume" (``source`` a volume name) or
    "tmpfs" (``source`` empty)."""

    kind: str
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class PortBinding:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]  # Docker form: ("CMD", ...) or ("CMD-SHELL", "...")
    interval_s: int = 5
    timeout_s: int = 5
    retries: int = 30
    start_period_s: int = 5


@dataclass(frozen=True)
class RenderedFile:
    """A file the engine writes on the host before the container starts.

    ``path`` is relative to the project root (e.g. ``certs/dev/runtime/kafka-0/server.properties``);
    the file belongs to ``uid`` with ``mode``. Content may hold secrets: never log it.
    """

    path: str
    content: str = field(repr=False)
    mode: int = 0o600
    uid: int = CONTAINER_UID


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # Docker container name
    node: str  # node name and network alias, e.g. kafka-0
    role: str  # one of START_ORDER
    image: str
    command: tuple[str, ...]
    hostname: str
    env: dict[str, str] = field(default_factory=dict)  # never secrets
    mounts: tuple[Mount, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    healthcheck: Healthcheck | None = None
    labels: dict[str, str] = field(default_factory=dict)
    files: tuple[RenderedFile, ...] = ()
    user: str = f"{CONTAINER_UID}:{CONTAINER_UID}"
    read_only_rootfs: bool = False
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges:true",)
    mem_limit_mb: int | None = None
    # Memory plus swap; equal to mem_limit_mb means no swap (Docker's default would allow as much again).
    memswap_limit_mb: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    restart_policy: str = "unless-stopped"
    # Docker's json-file log, rolled: uncapped, a chatty node fills the host's disk. What must
    # be kept is not here: the authorizer's audit log is a file on the node's volume.
    log_max_size_mb: int = 10
    log_max_files: int = 5

    @property
    def log_options(self) -> dict[str, str]:
        """The json-file driver's options, spelled as Docker stores them."""
        return {"max-file": str(self.log_max_files), "max-size": f"{self.log_max_size_mb}m"}


@dataclass(frozen=True)
class ClusterPlan:
    env: str
    network: str
    volumes: tuple[str, ...]
    containers: tuple[ContainerSpec, ...]  # in START_ORDER: the metadata quorum, then brokers
    labels: dict[str, str] = field(default_factory=dict)  # put on network and volumes too

    def container(self, node: str) -> ContainerSpec:
        return next(c for c in self.containers if c.node == node)


def spec_hash(spec: ContainerSpec) -> str:
    """Content hash of a container spec, its rendered files included.

    Stored as a label, it tells the engine whether a running container already matches the
    plan (then nothing is restarted). The label value is a SHA-256 of high-entropy input, so
    it reveals no secret.
    """
    data = asdict(spec)
    data["labels"] = {k: v for k, v in spec.labels.items() if k != LABEL_SPEC_HASH}
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


# Labels every object of an environment carries.
LABEL_PROJECT = "io.secure-kafka.project"
LABEL_ENV = "io.secure-kafka.env"
LABEL_ROLE = "io.secure-kafka.role"
LABEL_NODE = "io.secure-kafka.node"
LABEL_SPEC_HASH = "io.secure-kafka.spec-hash"
