"""The prod shape (3 ZooKeeper + 3 brokers, RF 3, min ISR 2): replication survives a leader kill.

This environment is destructive (a broker is killed), so it is the module's own, not shared.
"""

from __future__ import annotations

import os
import ssl
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from secure_kafka import bootstrap, probes
from secure_kafka.environment import ADMIN
from secure_kafka.testing import running_environment

RECORDS_BEFORE, RECORDS_AFTER = 200, 200


@pytest.fixture(scope="module")
def prod_env(runtime_image, tmp_path_factory):
    saved = os.environ.get("SECURE_KAFKA_PASSPHRASE")
    os.environ["SECURE_KAFKA_PASSPHRASE"] = uuid.uuid4().hex  # prod never generates one
    try:
        with running_environment(tmp_path_factory.mktemp("prod-project"), profile="prod") as env:
            yield env
    finally:
        if saved is None:
            os.environ.pop("SECURE_KAFKA_PASSPHRASE", None)
        else:
            os.environ["SECURE_KAFKA_PASSPHRASE"] = saved


def test_prod_listeners_refuse_tls_1_2(prod_env):
    ca = prod_env.certs.client_dir(ADMIN) / "ca.crt"
    topology = prod_env.settings.topology
    for broker in topology.brokers:
        port = topology.listener_port(broker, "sasl_ssl")
        assert probes.tls_handshake("127.0.0.1", port, ca, "localhost").detail == "TLSv1.3"
        tls12 = probes.tls_handshake("127.0.0.1", port, ca, "localhost", max_version=ssl.TLSVersion.TLSv1_2)
        assert not tls12.ok, f"{broker.name} accepted TLS 1.2"


def test_leader_kill_loses_no_acked_record(prod_env, docker_client):
    admin = bootstrap.wait_for_admin(prod_env.admin_mtls_config(), 3)
    topic = f"replicated-{uuid.uuid4().hex[:6]}"
    bootstrap.ensure_topic(admin, topic, replication_factor=3)
    acked: list[bytes] = []
    failed: list[str] = []

    def on_delivery(err, msg):
        (failed.append(err.str()) if err else acked.append(msg.value()))

    producer = Producer({**prod_env.scram_config(ADMIN), "acks": "all", "enable.idempotence": True,
                         "delivery.timeout.ms": 120000})
    for i in range(RECORDS_BEFORE):
        producer.produce(topic, f"before-{i}".encode(), on_delivery=on_delivery)
    assert producer.flush(60) == 0 and len(acked) == RECORDS_BEFORE, failed

    leader_id = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
    leader = next(b for b in prod_env.settings.topology.brokers if b.index == leader_id)
    docker_client.containers.get(leader.container).kill()

    for i in range(RECORDS_AFTER):
        producer.produce(topic, f"after-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(120) == 0, "records still unacknowledged two minutes after the leader was killed"
    assert not failed, failed[:5]
    assert len(acked) == RECORDS_BEFORE + RECORDS_AFTER

    new_leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
    assert new_leader != leader_id

    consumer = Consumer({**prod_env.admin_mtls_config(), "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(seen) < len(acked) and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.append(msg.value())
    consumer.close()
    assert sorted(seen) == sorted(acked), f"lost {len(set(acked) - set(seen))} acked records"
