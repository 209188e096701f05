"""What the probes look at: a running environment's containers (inspected once), its TLS
endpoints and the files the probes need, built from an ``EnvironmentContext``."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

import docker.errors

import docker

from ..model.topology import (
    ADMIN,
    BROKER_INTERNAL_PORT,
    CONTROLLER_PORT,
    ZK_SECURE_CLIENT_PORT,
    Node,
)
from .. import pki
from ..ops.context import EnvironmentContext
from ..pki.certstore import CertStore

LOOPBACK = "127.0.0.1"


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


def node_pem(certs: CertStore, node_name: str, directory: Path) -> tuple[Path, Path]:
    """``(certificate, key)`` of a node, written as PEM files (the key 0600) into ``directory``."""
    stores = certs.node_stores(node_name)
    issued = pki.IssuedCert.from_pkcs12(stores.keystore.read_bytes(), stores.password, certs.settings.topology.node(node_name).role)
    paths = issued.write_pem(directory, node_name)
    return paths.cert, paths.key


class Target:
    """A running environment as the probes see it: containers (inspected once), endpoints, files."""

    def __init__(self, env: EnvironmentContext, client: docker.DockerClient, work_dir: Path):
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
        self._node_certs: dict[str, tuple[Path, Path]] = {}
        self._lock = threading.Lock()

    def node_cert(self, node: Node) -> tuple[Path, Path]:
        """A node's certificate and key as PEM files in the probes' temp dir, for probes that act as the node."""
        with self._lock:  # probe groups run side by side
            if node.name not in self._node_certs:
                self._node_certs[node.name] = node_pem(self.env.certs, node.name, self.work_dir)
            return self._node_certs[node.name]

    def client_cert(self, endpoint: Endpoint) -> tuple[Path, Path]:
        """The certificate a probe presents to ``endpoint``: the admin's, or a broker's at
        ZooKeeper (whose port accepts only nodes' certificates)."""
        return self.node_cert(self.topology.brokers[0]) if endpoint.node.role == "zookeeper" else self.admin_cert

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
        """Every TLS listener: brokers' published SASL_SSL and SSL ports, their INTERNAL listener,
        KRaft controllers' CONTROLLER listener and ZooKeeper's TLS client port (the latter
        three at the container's network address)."""
        found = []
        address = self.settings.bind_address
        host = address if _is_specific(address) and not ipaddress.ip_address(address).is_loopback else LOOPBACK
        for broker in self.topology.brokers:
            for listener, mtls in (("sasl_ssl", False), ("ssl", True)):
                found.append(Endpoint(f"{broker.name}/{listener}", broker, host,
                                      self.topology.listener_port(broker, listener), "localhost", True, mtls))
            if ip := self.ip(broker):
                found.append(Endpoint(f"{broker.name}/internal", broker, ip, BROKER_INTERNAL_PORT, broker.name, True, True))
        for controller in self.topology.controllers:
            if ip := self.ip(controller):
                found.append(Endpoint(f"{controller.name}/controller", controller, ip, CONTROLLER_PORT,
                                      controller.name, True, True))
        for zk in self.topology.zookeepers:
            if ip := self.ip(zk):
                found.append(Endpoint(f"{zk.name}/client-port", zk, ip, ZK_SECURE_CLIENT_PORT, zk.name, False, True))
        return found

    def kafka_mtls_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints() if e.kafka and e.mtls]

    def internal_kafka_addresses(self) -> list[tuple[str, int]]:
        """(container address, port) of the Kafka listeners the host does not publish: the
        brokers' INTERNAL and the controllers' CONTROLLER."""
        found = [(ip, BROKER_INTERNAL_PORT) for b in self.topology.brokers if (ip := self.ip(b))]
        return found + [(ip, CONTROLLER_PORT) for c in self.topology.controllers if (ip := self.ip(c))]


def _is_specific(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False
