"""Names, addresses and ports of an environment's nodes (and the admin principal's name):
pure functions of its settings.

PKI (SANs), rendering (listeners, quorum) and the plan (containers, ports) all read the
topology, so a name is decided in exactly one place.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ..errors import SecureKafkaError

__all__ = [
    "kraft_cluster_id",
    "ZK_SECURE_CLIENT_PORT",
    "ZK_QUORUM_PORT",
    "ZK_ELECTION_PORT",
    "BROKER_INTERNAL_PORT",
    "CONTROLLER_PORT",
    "ZOOKEEPER",
    "KRAFT",
    "METADATA_MODES",
    "KAFKA_VERSIONS",
    "ADMIN",
    "NAME_PATTERN",
    "RESERVED_CLIENT_NAME",
    "ANONYMOUS",
    "is_super_user_name",
    "is_anonymous_name",
    "CONTAINER_UID",
    "Node",
    "Topology",
]

# Container-side ports that are the same in every environment.
ZK_SECURE_CLIENT_PORT = 2182
ZK_QUORUM_PORT = 2888
ZK_ELECTION_PORT = 3888
BROKER_INTERNAL_PORT = 9091  # inter-broker TLS (mTLS), advertised on the Docker network
CONTROLLER_PORT = 9093  # KRaft controllers' listener (mTLS), on the Docker network only
# Where an environment keeps its metadata: a ZooKeeper ensemble (Kafka 3.9, the last line
# that has it) or a KRaft controller quorum (Kafka 4.x). Each mode runs its own image.
ZOOKEEPER = "zookeeper"
KRAFT = "kraft"
METADATA_MODES = (ZOOKEEPER, KRAFT)
KAFKA_VERSIONS = {ZOOKEEPER: "3.9.2", KRAFT: "4.4.0"}
# KRaft node ids are one namespace for brokers and controllers: controllers start here, far
# from broker ids (KIP-866 migration needs them distinct from every broker.id too).
CONTROLLER_ID_BASE = 1000
# Every environment's administrator: a client certificate (mTLS) and a SCRAM user of this
# name, a super user beside the brokers. Outside tools rely on the name.
ADMIN = "admin"
# What the principal mapping rule captures from a certificate's CN (node and principal
# names alike); names outside it would not map.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
# Client principals may not take a node's name: its certificate would map to the node's
# principal (User:kafka-0, User:controller-0), a super user. Case-insensitive, as all reserved names are: a
# principal that differs from a super user by case alone is a trap in an ACL review.
RESERVED_CLIENT_NAME = re.compile(r"^(kafka|zk|controller)-[0-9]+$", re.IGNORECASE)
# What Kafka calls every unauthenticated client (a PLAINTEXT listener's): a user, a client
# certificate or an ACL rule of this name would grant to anyone who connects.
ANONYMOUS = "ANONYMOUS"


def is_super_user_name(name: str) -> bool:
    """The admin's or a node's name (any case): principals ACLs do not apply to."""
    return name.lower() == ADMIN or RESERVED_CLIENT_NAME.match(name) is not None


def is_anonymous_name(name: str) -> bool:
    """Kafka's unauthenticated principal, in any case."""
    return name.upper() == ANONYMOUS
# The user every container runs as (user kafka of docker/Dockerfile): it owns what the nodes
# read and write on the host, their TLS files and their volumes' data.
CONTAINER_UID = 10001

# Offsets of a broker's published listeners from ``port_base + 10 * index``.
LISTENER_PORT_OFFSETS = {"sasl_ssl": 1, "ssl": 2, "plaintext": 3}


@dataclass(frozen=True)
class Node:
    """One ZooKeeper node, KRaft controller or broker."""

    name: str  # short name and network alias: zk-0, kafka-1
    role: str  # "zookeeper", "controller" or "broker"
    index: int
    container: str  # Docker container name: sk-<env>-<project id>-kafka-1
    network: str

    @property
    def dns_names(self) -> tuple[str, ...]:
        """Every name the node is reached or reverse-resolved by on the Docker network.

        ZooKeeper checks client certificates against the reverse DNS name of the peer's
        address, which Docker answers with ``<container>.<network>``: it must be a SAN.
        """
        return (self.name, self.container, f"{self.container}.{self.network}")


@dataclass(frozen=True)
class Topology:
    env: str
    zookeeper_count: int
    broker_count: int
    port_base: int
    bind_address: str
    project_id: str  # settings.Project.id: Docker names are host-wide, environments per project
    controller_count: int = 0  # KRaft mode: the controller quorum (then zookeeper_count is 0, but while migrating)
    fixed_cluster_id: str = ""  # settings.cluster_id: the KRaft cluster id, when not derived

    @property
    def metadata_mode(self) -> str:
        """ZooKeeper while an ensemble holds the metadata (also during a migration to KRaft)."""
        return ZOOKEEPER if self.zookeeper_count else KRAFT

    @property
    def network(self) -> str:
        """The environment's Docker network, and the prefix of every other Docker name it has."""
        return f"sk-{self.env}-{self.project_id}"

    def _node(self, role: str, short: str, index: int) -> Node:
        name = f"{short}-{index}"
        return Node(name, role, index, f"{self.network}-{name}", self.network)

    @property
    def zookeepers(self) -> tuple[Node, ...]:
        return tuple(self._node("zookeeper", "zk", i) for i in range(self.zookeeper_count))

    @property
    def brokers(self) -> tuple[Node, ...]:
        return tuple(self._node("broker", "kafka", i) for i in range(self.broker_count))

    @property
    def controllers(self) -> tuple[Node, ...]:
        return tuple(self._node("controller", "controller", i) for i in range(self.controller_count))

    @property
    def quorum(self) -> tuple[Node, ...]:
        """The nodes that keep the metadata: ZooKeeper nodes or KRaft controllers."""
        return self.zookeepers + self.controllers

    @property
    def nodes(self) -> tuple[Node, ...]:
        """All nodes in start order: the metadata quorum first, then the brokers."""
        return self.quorum + self.brokers

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise SecureKafkaError(f"no node {name!r} in environment {self.env!r}: use one of {known}")

    def volume(self, node: Node) -> str:
        return f"{self.network}-{node.name}-data"

    @staticmethod
    def zookeeper_myid(node: Node) -> int:
        return node.index + 1  # ZooKeeper ids are 1..255

    @staticmethod
    def broker_id(node: Node) -> int:
        return node.index

    @staticmethod
    def node_id(node: Node) -> int:
        """A KRaft ``node.id``: brokers keep their broker id, controllers count from 1000."""
        return CONTROLLER_ID_BASE + node.index if node.role == "controller" else node.index

    @property
    def controller_quorum_voters(self) -> str:
        """KRaft's static quorum: ``id@host:port`` of every controller."""
        return ",".join(f"{self.node_id(c)}@{c.name}:{CONTROLLER_PORT}" for c in self.controllers)

    @property
    def cluster_id(self) -> str:
        """The KRaft cluster id every node is formatted with: the fixed one (a migrated
        cluster keeps its ZooKeeper-era id), else ``kraft_cluster_id`` of the environment's
        network name, which needs no storage. Not a secret: every client can read it from the
        metadata."""
        return self.fixed_cluster_id or kraft_cluster_id(self.network)

    def listener_port(self, broker: Node, listener: str) -> int:
        """Host port of a broker's published listener; the container listens on the same."""
        return self.port_base + 10 * broker.index + LISTENER_PORT_OFFSETS[listener]

    def bootstrap(self, listener: str) -> list[str]:
        return [f"localhost:{self.listener_port(b, listener)}" for b in self.brokers]

    @property
    def bootstrap_servers(self) -> dict[str, list[str]]:
        """What clients connect to, per client listener: ``status``, ``up`` and the Pulumi outputs."""
        return {"sasl_ssl": self.bootstrap("sasl_ssl"), "ssl": self.bootstrap("ssl")}

    @property
    def zookeeper_connect(self) -> str:
        return ",".join(f"{z.name}:{ZK_SECURE_CLIENT_PORT}" for z in self.zookeepers)


def kraft_cluster_id(seed: str) -> str:
    """16 bytes derived from ``seed``, URL-safe base64 as Kafka writes them, never starting with
    ``-`` as KRaft's own ids never do (a digest that would is derived again). A ZooKeeper
    cluster's id may (Kafka 3.9 derives it from a random UUID without that guard), and a
    migrated environment keeps it: the launchers pass ``--cluster-id=<id>``, which
    ``kafka-storage format`` cannot read as an option."""
    attempt = 0
    while True:
        suffix = f" {attempt}" if attempt else ""
        digest = hashlib.sha256(f"secure-kafka cluster {seed}{suffix}".encode()).digest()[:16]
        encoded = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded
        attempt += 1
