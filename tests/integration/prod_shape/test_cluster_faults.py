"""Faults of the cluster's own parts on the prod shape (3 quorum nodes + 3 brokers, RF 3, min
ISR 2), in each metadata mode: a broker's JVM killed, quorum nodes killed (a follower, the
leader, then the majority), a broker cut off from the network. Each runs under a steady
idempotent ``acks=all`` producer and a consumer (tests/steady_traffic.py) and checks that every
acknowledged record is consumed exactly once, that the producer acknowledges again within a
bound, that ``status`` names the fault while it lasts and is healthy after it.

The faults run one after the other on the package's environment of each mode (conftest.py):
each ends healed (a fixture heals what a failed test left behind), on a topic of its own. Each prints its row of the
README's fault table (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest
from steady_traffic import SteadyTraffic

from secure_kafka import verify
from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import kafka_admin

pytestmark = pytest.mark.prod_shape

PARTITIONS = 3
WARM_UP_RECORDS = 200
# The producer acknowledges again within this after a broker dies or is cut off: the controller
# notices its loss (ZooKeeper session 18 s, KRaft broker session 9 s), elects new leaders, and
# the producer's metadata refresh finds them.
BROKER_FAULT_STALL_S = 60
# A quorum fault does not touch the brokers' leaders: produce goes on.
QUORUM_FAULT_STALL_S = 15
CUT_OFF_S = 45  # longer than either mode's session timeout and Kafka's replica lag bound (30 s)


@pytest.fixture
def healed(prod_env, docker_client):
    """The environment, and after the test (also a failed one) every node running, connected and
    the cluster healthy again, so that the next fault starts from a sound cluster."""
    yield prod_env
    network = docker_client.networks.get(prod_env.settings.topology.network)
    attached = {c.name for c in network.containers}
    for node in prod_env.settings.topology.nodes:
        if node.container not in attached:
            network.connect(node.container, aliases=[node.name])
    for node in prod_env.settings.topology.nodes:
        if docker_client.containers.get(node.container).status != "running":
            docker_client.api.start(node.container)
    wait_for_status(prod_env, lambda r: r["healthy"], 180, "healthy again")


def wait_for_status(env, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        report = env.status()
        if predicate(report):
            return report
        assert time.monotonic() < deadline, f"status not {what} within {timeout_s:.0f} s: {report['warnings']}"
        time.sleep(1)


def traffic_on_new_topic(env, name: str) -> SteadyTraffic:
    topic = f"fault-{name}-{uuid.uuid4().hex[:6]}"
    kafka_admin.ensure_topic(env.admin_client(), topic, replication_factor=3, partitions=PARTITIONS)
    return SteadyTraffic(env.scram_config(ADMIN), env.admin_mtls_config(), topic, PARTITIONS)


def leader_of(env, topic: str, partition: int = 0):
    leader_id = env.admin_client().list_topics(topic, timeout=10).topics[topic].partitions[partition].leader
    return next(b for b in env.settings.topology.brokers if env.settings.topology.broker_id(b) == leader_id)


def quorum_node(env, role: str):
    roles = env.status()["quorum"]
    return next(env.settings.topology.node(name) for name, r in sorted(roles.items()) if r == role)


def check_outcome(fault: str, traffic: SteadyTraffic, started: float, stall_bound_s: float, status_said: str) -> None:
    outcome = traffic.outcome(started)
    print(f"\nFAULT {fault}: {outcome.row()}; status: {status_said}")
    assert not traffic.failed, traffic.failed[:3]
    outcome.assert_every_record_once()
    assert outcome.longest_stall_s < stall_bound_s, outcome


def test_a_broker_killed_with_sigkill_is_restarted_by_its_policy_and_loses_nothing(healed, docker_client):
    env = healed
    with traffic_on_new_topic(env, "sigkill") as traffic:
        traffic.wait_acked(WARM_UP_RECORDS, 60)
        victim = leader_of(env, traffic.topic)
        info = docker_client.api.inspect_container(victim.container)
        started = time.monotonic()
        # The JVM is the container's pid 1: killed from the host, as the kernel's OOM killer or a
        # crash would, not through Docker (whose `kill` counts as a deliberate stop).
        os.kill(info["State"]["Pid"], signal.SIGKILL)
        during = wait_for_status(env, lambda r: not r["healthy"] and any(victim.name in w for w in r["warnings"]),
                                 30, f"naming {victim.name}")
        wait_for_status(env, lambda r: r["healthy"], 180, "healthy again")
        recovered_s = time.monotonic() - started
        traffic.wait_acked(WARM_UP_RECORDS, 60)
    assert docker_client.api.inspect_container(victim.container)["RestartCount"] > info["RestartCount"]
    said = next(w for w in during["warnings"] if victim.name in w)
    check_outcome(f"broker SIGKILL [{env.settings.metadata_mode}]", traffic, started, BROKER_FAULT_STALL_S,
                  f"{said} (healthy again after {recovered_s:.0f} s)")


def test_quorum_follower_then_leader_killed(healed, docker_client):
    env = healed
    with traffic_on_new_topic(env, "quorum-node") as traffic:
        traffic.wait_acked(WARM_UP_RECORDS, 60)
        started = time.monotonic()
        said = []
        for role in ("follower", "leader"):
            victim = quorum_node(env, role)
            docker_client.containers.get(victim.container).kill()
            during = wait_for_status(env, lambda r, v=victim: r["quorum"].get(v.name) == "down" and not r["healthy"],
                                     30, f"naming {victim.name}")
            assert any("one more loss ends its majority" in w for w in during["warnings"]), during["warnings"]
            said.append(f"{role} {next(w for w in during['warnings'] if victim.name in w)}")
            if role == "leader":  # a new one is elected among the two left
                report = wait_for_status(env, lambda r: "leader" in r["quorum"].values(), 60, "with a new leader")
                said.append(f"new leader {next(n for n, r in report['quorum'].items() if r == 'leader')}")
            traffic.wait_acked(WARM_UP_RECORDS, 60)  # produce goes on with a node of the quorum down
            docker_client.api.start(victim.container)
            wait_for_status(env, lambda r: r["healthy"], 120, "healthy again")
    check_outcome(f"quorum follower, then leader killed [{env.settings.metadata_mode}]", traffic, started,
                  QUORUM_FAULT_STALL_S, "; ".join(said))


def test_quorum_majority_lost_and_regained(healed, docker_client):
    env = healed
    with traffic_on_new_topic(env, "quorum-majority") as traffic:
        traffic.wait_acked(WARM_UP_RECORDS, 60)
        victims = [quorum_node(env, "leader"), quorum_node(env, "follower")]
        started = time.monotonic()
        for victim in victims:
            docker_client.containers.get(victim.container).kill()
        during = wait_for_status(env, lambda r: any("lost its majority" in w for w in r["warnings"]), 30,
                                 "saying the quorum lost its majority")
        traffic.wait_acked(WARM_UP_RECORDS, 60)  # the brokers keep their leaders: produce goes on
        result = env.up()  # brings the two back
        assert sorted(n for n, outcome in result.nodes.items() if outcome != "unchanged") == sorted(v.name for v in victims)
        wait_for_status(env, lambda r: r["healthy"], 120, "healthy again")
        traffic.wait_acked(WARM_UP_RECORDS, 60)
    check_outcome(f"quorum majority lost, regained by up [{env.settings.metadata_mode}]", traffic, started,
                  QUORUM_FAULT_STALL_S, next(w for w in during["warnings"] if "majority" in w))


def test_a_broker_cut_off_from_the_network_loses_nothing_and_rejoins(healed, docker_client):
    env = healed
    network = docker_client.networks.get(env.settings.topology.network)
    with traffic_on_new_topic(env, "cut-off") as traffic:
        traffic.wait_acked(WARM_UP_RECORDS, 60)
        victim = leader_of(env, traffic.topic)
        started = time.monotonic()
        # Off the environment's network: no other node, no published port reaches it; it runs on.
        network.disconnect(victim.container)
        during = wait_for_status(env, lambda r: any(f"{victim.name} (broker" in w for w in r["warnings"]), CUT_OFF_S,
                                 f"saying {victim.name} is not registered")
        card = verify.run(env, quick=True)
        assert not card.passed, "verify passed with a broker cut off"
        traffic.wait_acked(WARM_UP_RECORDS, BROKER_FAULT_STALL_S)  # the other brokers took its partitions
        time.sleep(max(0.0, started + CUT_OFF_S - time.monotonic()))
        network.connect(victim.container, aliases=[victim.name])
        wait_for_status(env, lambda r: r["healthy"], 120, "healthy again")
        traffic.wait_acked(WARM_UP_RECORDS, 60)
    assert env.settings.profile.name == "prod"  # unclean leader election stays off (only dev may turn it on)
    check_outcome(f"broker cut off for {CUT_OFF_S} s [{env.settings.metadata_mode}]", traffic, started,
                  BROKER_FAULT_STALL_S, f"{next(w for w in during['warnings'] if victim.name in w)}; "
                  f"verify: {len(card.failed)} probes failed ({', '.join(r.probe for r in card.failed[:3])}, ...)")
