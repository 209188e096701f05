"""Faults of the host under a running environment: reported while they last, and `up` brings
the environment back with every acknowledged record.

Destructive, so the module has its own dev-shaped environment. One metadata mode (KRaft, the
supported line): what fails here is the host's storage under the broker, which both modes
mount alike (`storage/`), and the second mode's two minutes are what the suite's budget lacks.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from markers import mounted

from secure_kafka.model.topology import ADMIN, KRAFT
from secure_kafka.ops import kafka_admin
from secure_kafka.storage import volumes
from secure_kafka.testing import running_environment
from secure_kafka.verify import host
from secure_kafka.verify.target import Target

RECORDS = 300
pytestmark = pytest.mark.parametrize("metadata_mode", [KRAFT], indirect=True)


@pytest.fixture(scope="module")
def fault_env(metadata_mode, mode_image, tmp_path_factory):
    with running_environment(tmp_path_factory.mktemp(f"faults-{metadata_mode}-project"), metadata_mode=metadata_mode) as env:
        yield env


def produce(env, topic: str, prefix: str, count: int) -> list[bytes]:
    """``count`` records, acks=all and idempotent; returns those acknowledged."""
    acked: list[bytes] = []
    failed: list[str] = []
    producer = Producer({**env.scram_config(ADMIN), "acks": "all", "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, f"{prefix}-{i}".encode(),
                         on_delivery=lambda err, msg: failed.append(err.str()) if err else acked.append(msg.value()))
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed[:3]
    return acked


def consume_all(env, topic: str, expected: int, timeout_s: float = 60) -> list[bytes]:
    consumer = Consumer({**env.admin_mtls_config(), "group.id": f"faults-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and not message.error():
            seen.append(message.value())
        elif message is None and len(seen) >= expected:
            break  # a quiet second after the last expected record: a duplicate would have shown
    consumer.close()
    return seen


def test_a_killed_gocryptfs_daemon_is_reported_and_up_mounts_it_again_with_every_record(fault_env, docker_client, tmp_path):
    env = fault_env
    broker = env.settings.topology.brokers[0]
    topic = f"faults-{uuid.uuid4().hex[:6]}"
    kafka_admin.ensure_topic(kafka_admin.wait_for_admin(env.admin_mtls_config(), 1), topic, replication_factor=1)
    before = produce(env, topic, "before", RECORDS)
    assert len(before) == RECORDS

    volume = env.volumes.volume(broker.name)
    daemons = volumes.gocryptfs_processes(volume.mountpoint)
    assert len(daemons) == 1, daemons
    os.kill(daemons[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while volumes.gocryptfs_processes(volume.mountpoint) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounted(str(volume.mountpoint)), "the dead daemon's mount is expected to stay behind"

    # Reported, with the fix: status (not healthy, whatever the container's healthcheck says) and verify.
    report = env.status()
    assert report["encrypted_volumes"]["nodes"][broker.name] == volumes.UNSERVED
    assert not report["healthy"]
    assert any(w.startswith(f"volume of {broker.name}: mounted but unserved") and f"secure-kafka up {env.env}" in w
               for w in report["warnings"]), report["warnings"]
    encrypted = next(r for r in host.probe_volumes(Target(env, docker_client, tmp_path)) if r.probe == "volumes.encrypted")
    assert not encrypted.passed and f"{broker.name} unserved" in encrypted.observed, encrypted
    # No plaintext fallback: where the broker keeps its data, nothing can be written now.
    container = docker_client.containers.get(broker.container)
    if container.status == "running":
        assert container.exec_run(["sh", "-c", "echo x > /var/lib/kafka/probe"]).exit_code != 0

    result = env.up()
    assert result.nodes[broker.name] in ("restarted", "started"), result.nodes  # started: it had fallen over
    assert [n for n, outcome in result.nodes.items() if outcome != "unchanged"] == [broker.name], result.nodes
    report = env.status()
    assert report["healthy"] and report["encrypted_volumes"]["nodes"][broker.name] == volumes.UNLOCKED, report
    assert len(volumes.gocryptfs_processes(volume.mountpoint)) == 1
    after = produce(env, topic, "after", RECORDS)
    seen = consume_all(env, topic, len(before) + len(after))
    assert seen == before + after, f"{len(seen)} records read back, {len(before) + len(after)} acknowledged"
    assert all(r.passed for r in host.probe_volumes(Target(env, docker_client, tmp_path)))
