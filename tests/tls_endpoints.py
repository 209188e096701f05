"""Every TLS listener of a running environment, as a client reaches it from the host: brokers'
published listeners on 127.0.0.1 (host name localhost), their INTERNAL listener, and the
quorum's (ZooKeeper's TLS client port, or the KRaft controllers' listener) at the container's
address on the environment network, each with the name its certificate carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from secure_kafka.build import render
from secure_kafka.model.topology import ADMIN, CONTROLLER_PORT, ZK_SECURE_CLIENT_PORT
from secure_kafka.verify.target import node_pem


@dataclass(frozen=True)
class Endpoint:
    name: str  # kafka-0/SASL_SSL_EXT, zk-1/2182, ...
    node: str
    ip: str
    port: int
    server_name: str


def tls_endpoints(env, docker_client) -> list[Endpoint]:
    topology = env.settings.topology

    def ip(node) -> str:
        networks = docker_client.api.inspect_container(node.container)["NetworkSettings"]["Networks"]
        return networks[topology.network]["IPAddress"]

    found = []
    for broker in topology.brokers:
        for listener in render.broker_listeners(env.settings, broker):
            if listener.protocol not in ("SSL", "SASL_SSL"):
                continue
            internal = listener.advertised_host == broker.name
            found.append(Endpoint(f"{broker.name}/{listener.name}", broker.name, ip(broker) if internal else "127.0.0.1",
                                  listener.port, listener.advertised_host))
    for node in topology.quorum:
        port = ZK_SECURE_CLIENT_PORT if node.role == "zookeeper" else CONTROLLER_PORT
        found.append(Endpoint(f"{node.name}/{port}", node.name, ip(node), port, node.name))
    return found


def client_certs(env, endpoints: list[Endpoint], directory: Path) -> dict[str, tuple[Path, Path]]:
    """The certificate each endpoint accepts from a client: the admin's, or a broker's at
    ZooKeeper (whose port accepts only nodes' certificates)."""
    admin = env.certs.client_dir(ADMIN)
    zookeepers = {n.name for n in env.settings.topology.zookeepers}
    broker_cert = node_pem(env.certs, env.settings.topology.brokers[0].name, directory) if zookeepers else None
    return {e.name: broker_cert if e.node in zookeepers else (admin / "client.crt", admin / "client.key") for e in endpoints}
