"""ops/health.py: what `status` says of a cluster beyond its containers (pure parts)."""

from __future__ import annotations

import pytest

from secure_kafka.model.topology import Topology
from secure_kafka.ops import health
from secure_kafka.ops.health import ClusterView

ZK_PROD = Topology("prod", zookeeper_count=3, broker_count=3, port_base=50000, bind_address="127.0.0.1", project_id="p")
KRAFT_PROD = Topology("prod", zookeeper_count=0, broker_count=3, port_base=50000, bind_address="127.0.0.1",
                      project_id="p", controller_count=3)
KRAFT_DEV = Topology("dev", zookeeper_count=0, broker_count=1, port_base=50000, bind_address="127.0.0.1",
                     project_id="p", controller_count=1)


@pytest.mark.parametrize(("log", "role"), [
    ("", "unknown"),
    ("... Peer state changed: looking\n... Peer state changed: following - broadcast\n", "follower"),
    ("Peer state changed: following\nPeer state changed: looking\nPeer state changed: leading - discovery\n", "leader"),
    ("Peer state changed: leading\nPeer state changed: looking\n", "looking"),
    ("[RaftManager id=1000] Completed transition to Leader(localId=1000, epoch=1, ...) from CandidateState(...)", "leader"),
    ("Completed transition to Leader(...)\nCompleted transition to ResignedState(...)\n"
     "Completed transition to UnattachedState(...)", "unattached"),
    ("Completed transition to ProspectiveState(...)\nCompleted transition to FollowerState(...)", "follower"),
    ("Completed transition to CandidateState(localId=1001)", "candidate"),
])
def test_quorum_role_is_the_last_one_the_node_logged(log, role):
    assert health.quorum_role(log) == role


def test_node_warnings_name_every_unhealthy_container():
    states = {"kafka-0": ("running", "healthy"), "kafka-1": ("exited", "unhealthy"), "zk-0": ("running", "starting"),
              "zk-1": ("restarting", "none")}
    assert health.node_warnings(states) == ["kafka-1: container exited", "zk-0: container running (starting)",
                                            "zk-1: container restarting"]


@pytest.mark.parametrize(("topology", "healthy", "expected"), [
    (ZK_PROD, {"zk-0", "zk-1", "zk-2"}, None),
    (ZK_PROD, {"zk-0", "zk-2", "kafka-0"}, "the ZooKeeper ensemble runs on 2 of 3 nodes: one more loss ends its majority"),
    (ZK_PROD, {"zk-2", "kafka-0", "kafka-1"}, "the ZooKeeper ensemble has lost its majority (1 of 3 nodes healthy, 2 needed)"),
    (KRAFT_PROD, set(), "the KRaft controller quorum has lost its majority (0 of 3 nodes healthy, 2 needed)"),
    (KRAFT_DEV, {"controller-0"}, None),
    (KRAFT_DEV, {"kafka-0"}, "the KRaft controller quorum has lost its majority (0 of 1 nodes healthy, 1 needed)"),
])
def test_quorum_warnings_count_the_majority(topology, healthy, expected):
    warnings = health.quorum_warnings(topology, healthy)
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(expected), warnings


def test_a_sound_cluster_has_no_warning():
    assert health.cluster_warnings(ClusterView(True, registered=(0, 1, 2)), KRAFT_PROD) == []


def test_cluster_warnings_name_missing_brokers_and_count_partitions():
    view = ClusterView(True, registered=(0, 2), under_replicated=("a-0", "a-1", "b-0", "c-4"), offline=("d-0",))
    warnings = health.cluster_warnings(view, ZK_PROD)
    assert warnings[0].startswith("kafka-1 (broker 1) is not registered with the cluster: it is down, starting, "
                                  "or cut off from ZooKeeper")
    assert warnings[1].startswith("1 partition has no leader (d-0)")
    assert warnings[2].startswith("4 partitions are under-replicated (a-0, a-1, b-0 and 1 more)")
    assert len(warnings) == 3
    one_behind = health.cluster_warnings(ClusterView(True, registered=(0, 1, 2), under_replicated=("a-0",)), ZK_PROD)
    assert one_behind[0].startswith("1 partition is under-replicated (a-0)")


def test_a_cluster_that_does_not_answer_says_why():
    view = ClusterView(False, error="Local: Timed out")
    assert health.cluster_warnings(view, KRAFT_PROD) == [
        "the cluster does not answer the admin client (Local: Timed out): no broker serves metadata"]
    assert view.to_json() == {"answered": False, "error": "Local: Timed out", "registered_brokers": [],
                              "under_replicated": 0, "offline": 0}
