"""Rendering of a KRaft-mode environment's nodes (Kafka 4.x): controllers and brokers.

The pieces both modes share (TLS, SASL listener, authorizer, durability rules, listeners)
come from ``render``; what is KRaft's own is here: process roles, node ids, the static
controller quorum, the cluster id the storage is formatted with, log4j2 logging. A KRaft
node has no JAAS file: nothing in it logs in to ZooKeeper.
"""

from __future__ import annotations

from ..model.settings import Settings
from ..model.topology import CONTROLLER_PORT, Node
from ..pki.secretstore import SecretStore
from .render import Renderer, broker_listeners, default_renderer, kafka_node_context

__all__ = ["AUTHORIZER_CLASS", "CLUSTER_ID_FILE", "kraft_context", "controller_context", "render_controller", "render_kraft_broker"]

AUTHORIZER_CLASS = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# Read by the image's kafka-server-start to format the node's storage on first start.
CLUSTER_ID_FILE = "cluster.id"
# How often every node snapshots the metadata (when it changed): see the KRaft templates.
METADATA_SNAPSHOT_INTERVAL_MS = 10_000


def kraft_context(settings: Settings, node: Node, secrets: SecretStore) -> dict[str, object]:
    topology = settings.topology
    return {
        **kafka_node_context(settings, node, secrets),
        "node_id": topology.node_id(node),
        "controller_quorum_voters": topology.controller_quorum_voters,
        "authorizer_class": AUTHORIZER_CLASS,
        "metadata_snapshot_interval_ms": METADATA_SNAPSHOT_INTERVAL_MS,
    }


def _files(renderer: Renderer, template: str, settings: Settings, context: dict[str, object]) -> dict[str, str]:
    return {
        "server.properties": renderer.render(template, **context),
        "log4j2.properties": renderer.render("log4j2-kafka.properties.j2", **context),
        CLUSTER_ID_FILE: f"{settings.topology.cluster_id}\n",
    }


def render_controller(
    settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None
) -> dict[str, str]:
    """``{filename: content}`` of a controller: server.properties, log4j2.properties, cluster.id."""
    context = controller_context(settings, node, secrets)
    return _files(renderer or default_renderer(), "kraft-controller.properties.j2", settings, context)


def controller_context(settings: Settings, node: Node, secrets: SecretStore) -> dict[str, object]:
    return {
        **kraft_context(settings, node, secrets),
        "controller_port": CONTROLLER_PORT,
        # Only nodes of the environment speak to a controller: a certificate always, even
        # where a profile relaxed the client listeners.
        "ssl_client_auth": "required",
    }


def render_kraft_broker(
    settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None
) -> dict[str, str]:
    """``{filename: content}`` of a KRaft broker: server.properties, log4j2.properties, cluster.id."""
    context = {**kraft_context(settings, node, secrets), "listeners": broker_listeners(settings, node)}
    return _files(renderer or default_renderer(), "kraft-broker.properties.j2", settings, context)
