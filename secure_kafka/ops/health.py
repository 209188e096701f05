"""How healthy a running environment is, beyond its containers: what `status` reports while a
fault lasts.

Every container can be running and healthy while the cluster is not: a broker cut off from
the network keeps answering its own healthcheck, and a quorum that lost its majority still
has running nodes. So `status` also asks the cluster (the admin's metadata: which brokers are
registered, which partitions are under-replicated or without a leader) and counts the
metadata quorum's nodes against its majority. ``read_*`` touch the cluster or Docker; the
rest is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ..model.topology import Topology

__all__ = ["ClusterView", "QUORUM_ROLE", "cluster_warnings", "node_warnings", "quorum_role", "quorum_warnings",
           "read_cluster_view"]

# Where a quorum node last said its role: ZooKeeper's "Peer state changed: leading|following|
# looking", KRaft's "Completed transition to Leader(...)|FollowerState(...)|...".
QUORUM_ROLE = re.compile(r"Peer state changed: (leading|following|looking|observing)"
                         r"|Completed transition to (Leader|FollowerState|CandidateState|ProspectiveState|"
                         r"UnattachedState|ResignedState|Voted)")
_ROLE_NAMES = {"leading": "leader", "Leader": "leader", "following": "follower", "FollowerState": "follower"}
EXAMPLES = 3  # partitions named in a warning


@dataclass(frozen=True)
class ClusterView:
    """The cluster as its metadata says: ``answered`` False (with ``error``) when no broker did."""

    answered: bool
    error: str = ""
    registered: tuple[int, ...] = ()  # broker ids the metadata lists
    under_replicated: tuple[str, ...] = ()  # topic-partition: in-sync replicas fewer than replicas
    offline: tuple[str, ...] = ()  # topic-partition: no leader

    def to_json(self) -> dict:
        return {"answered": self.answered, "error": self.error, "registered_brokers": list(self.registered),
                "under_replicated": len(self.under_replicated), "offline": len(self.offline)}


def read_cluster_view(admin_config: Mapping[str, str], timeout_s: float = 5) -> ClusterView:
    """The admin's metadata (any broker that answers within ``timeout_s``)."""
    # Quiet: what fails is reported in the view, not as librdkafka's log lines on stderr.
    admin = AdminClient({**admin_config, "socket.timeout.ms": int(timeout_s * 1000), "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return ClusterView(False, error=exc.args[0].str())
    partitions = [(f"{t.topic}-{p.id}", p) for t in metadata.topics.values() for p in t.partitions.values()]
    return ClusterView(
        True,
        registered=tuple(sorted(metadata.brokers)),
        under_replicated=tuple(sorted(name for name, p in partitions if p.leader >= 0 and set(p.isrs) != set(p.replicas))),
        offline=tuple(sorted(name for name, p in partitions if p.leader < 0)),
    )


def quorum_role(log_text: str) -> str:
    """leader, follower, or what else a quorum node last said it was ("unknown": nothing yet)."""
    found = QUORUM_ROLE.findall(log_text)
    if not found:
        return "unknown"
    state = next(s for s in found[-1] if s)
    return _ROLE_NAMES.get(state, state.replace("State", "").lower())


def node_warnings(states: Mapping[str, tuple[str, str]]) -> list[str]:
    """``{node: (state, health)}`` of the containers that exist: one line per unhealthy one."""
    return [f"{node}: container {state}" + (f" ({health})" if state == "running" else "")
            for node, (state, health) in sorted(states.items()) if (state, health) != ("running", "healthy")]


def quorum_warnings(topology: Topology, healthy: Iterable[str]) -> list[str]:
    """The metadata quorum counted against its majority (``healthy``: names of healthy nodes)."""
    quorum = [n.name for n in topology.quorum]
    serving = [name for name in quorum if name in set(healthy)]
    what = "ZooKeeper ensemble" if topology.zookeepers else "KRaft controller quorum"
    majority = len(quorum) // 2 + 1
    if len(serving) < majority:
        return [f"the {what} has lost its majority ({len(serving)} of {len(quorum)} nodes healthy, {majority} needed): "
                "no broker can be added, elected leader or moved out of the in-sync replicas until it is back; "
                f"start the missing nodes (`secure-kafka up {topology.env}`)"]
    if len(serving) < len(quorum):
        return [f"the {what} runs on {len(serving)} of {len(quorum)} nodes: one more loss ends its majority"]
    return []


def cluster_warnings(view: ClusterView, topology: Topology) -> list[str]:
    """What the cluster's own metadata says is wrong, one line each."""
    if not view.answered:
        return [f"the cluster does not answer the admin client ({view.error}): no broker serves metadata"]
    warnings = []
    quorum = "ZooKeeper" if topology.zookeepers else "the controllers"
    for broker in topology.brokers:
        if topology.broker_id(broker) not in view.registered:
            warnings.append(f"{broker.name} (broker {topology.broker_id(broker)}) is not registered with the cluster: "
                            f"it is down, starting, or cut off from {quorum}; the other replicas serve its partitions")
    if view.offline:
        warnings.append(f"{_partitions(view.offline)} no leader ({_examples(view.offline)}): "
                        "they can be neither written nor read until one of their replicas is back")
    if view.under_replicated:
        warnings.append(f"{_partitions(view.under_replicated, 'is', 'are')} under-replicated "
                        f"({_examples(view.under_replicated)}): "
                        "a replica is down, behind or cut off")
    return warnings


def _partitions(partitions: tuple[str, ...], one: str = "has", many: str = "have") -> str:
    """"1 partition has", "3 partitions have": the count and its verb."""
    return f"1 partition {one}" if len(partitions) == 1 else f"{len(partitions)} partitions {many}"


def _examples(partitions: tuple[str, ...]) -> str:
    more = len(partitions) - EXAMPLES
    return ", ".join(partitions[:EXAMPLES]) + (f" and {more} more" if more > 0 else "")
