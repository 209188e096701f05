"""Records and mounts that tests check for: a marker produced through Kafka and read back,
whether a path is mounted on the host, and what a project holds on this host."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from secure_kafka.build.plan import LABEL_PROJECT
from secure_kafka.environment import Environment
from secure_kafka.ops import kafka_admin
from secure_kafka.storage.volumes import RUN_ROOT


def produce_marker(env: Environment, topic: str) -> bytes:
    admin = AdminClient(env.admin_mtls_config())
    kafka_admin.ensure_topic(admin, topic, 1)
    marker = f"at-rest-marker-{uuid.uuid4().hex}".encode()
    producer = Producer({**env.admin_mtls_config(), "acks": "all"})
    producer.produce(topic, marker)
    assert producer.flush(30) == 0, "marker not delivered"
    return marker


def read_back(env: Environment, topic: str, timeout_s: float = 60) -> list[bytes]:
    consumer = Consumer({**env.admin_mtls_config(), "group.id": f"at-rest-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline, values = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                if values:
                    return values
                continue
            assert not message.error(), message.error().str()
            values.append(message.value())
        return values
    finally:
        consumer.close()


def mounted(path: str) -> bool:
    return any(line.split()[1] == path for line in Path("/proc/self/mounts").read_text().splitlines())


def host_objects(docker_client, project_id: str) -> list[str]:
    """Everything of one project on this host: containers, networks, mounts, gocryptfs daemons."""
    api, filters = docker_client.api, {"label": [f"{LABEL_PROJECT}={project_id}"]}
    found = [c["Names"][0] for c in api.containers(all=True, filters=filters)]
    found += [n["Name"] for n in api.networks(filters=filters)]
    found += [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{RUN_ROOT}/{project_id}/")]
    found += [f"gocryptfs {pid}" for pid in subprocess.run(["pgrep", "-f", f"{RUN_ROOT}/{project_id}/"],
                                                           capture_output=True, text=True).stdout.split()]
    return sorted(found)
