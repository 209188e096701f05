"""Rendering of the nodes of a ZooKeeper → KRaft migration (KIP-866), all on the Kafka 3.9 image.

The settings are the migrating environment's (``Settings.migrating``: the topology holds the
ZooKeeper ensemble and the controllers; ``cluster_id``: the ZooKeeper cluster's id). Nodes
take these shapes on the way, each logging with the 3.9 line's reload4j (log4j.properties):

- a controller in migration mode, which copies the metadata from ZooKeeper and writes to both
  until the migration is finalized (migration-controller.properties), then without it;
- a ZooKeeper-mode broker that registers with the controllers (migration-broker.properties);
- a KRaft broker (kraft-broker.properties), until the 4.x image replaces it.
"""

from __future__ import annotations

from ..model.settings import Settings
from ..model.topology import Node
from ..pki.secretstore import SecretStore
from .kraft import CLUSTER_ID_FILE, controller_context, kraft_context
from .render import Renderer, broker_listeners, default_renderer, zookeeper_broker_context, zookeeper_client_context

__all__ = ["migration_controller", "zookeeper_line_controller", "migrating_broker", "zookeeper_line_kraft_broker"]


def _files(renderer: Renderer, template: str, context: dict[str, object], **extra: str) -> dict[str, str]:
    return {
        "server.properties": renderer.render(template, **context),
        "log4j.properties": renderer.render("log4j-broker.properties.j2", **context),
        **extra,
    }


def migration_controller(settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None) -> dict[str, str]:
    """A controller in migration mode: it logs in to ZooKeeper as the brokers do (jaas.conf)."""
    renderer = renderer or default_renderer()
    context = {**controller_context(settings, node, secrets), **zookeeper_client_context(settings, secrets)}
    return _files(renderer, "migration-controller.properties.j2", context,
                  **{"jaas.conf": renderer.render("broker-jaas.conf.j2", **context),
                     CLUSTER_ID_FILE: f"{settings.topology.cluster_id}\n"})


def zookeeper_line_controller(settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None) -> dict[str, str]:
    """A controller after the migration is finalized, still on the 3.9 image."""
    context = controller_context(settings, node, secrets)
    return _files(renderer or default_renderer(), "kraft-controller.properties.j2", context,
                  **{CLUSTER_ID_FILE: f"{settings.topology.cluster_id}\n"})


def migrating_broker(settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None) -> dict[str, str]:
    """A ZooKeeper-mode broker that registers with the controllers."""
    renderer = renderer or default_renderer()
    context = {**zookeeper_broker_context(settings, node, secrets),
               "controller_quorum_voters": settings.topology.controller_quorum_voters}
    return _files(renderer, "migration-broker.properties.j2", context,
                  **{"jaas.conf": renderer.render("broker-jaas.conf.j2", **context)})


def zookeeper_line_kraft_broker(settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None) -> dict[str, str]:
    """A broker in KRaft mode on the 3.9 image (its storage is the ZooKeeper-era broker's)."""
    context = {**kraft_context(settings, node, secrets), "listeners": broker_listeners(settings, node)}
    return _files(renderer or default_renderer(), "kraft-broker.properties.j2", context,
                  **{CLUSTER_ID_FILE: f"{settings.topology.cluster_id}\n"})
