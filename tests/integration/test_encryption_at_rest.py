"""Encryption at rest: a record is readable through Kafka and absent from the raw storage.

The environment under test goes down and up again, so it is its own (``running_environment``),
not the shared ``dev_env``. The control beside it proves the scan finds a marker where data
is stored in plaintext (a Docker volume of an environment with ``encryptedVolumes: false``).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from secure_kafka import bootstrap, volumes
from secure_kafka.environment import Environment
from secure_kafka.errors import SecureKafkaError
from secure_kafka.profiles import DEV
from secure_kafka.testing import running_environment

CHUNK = 2**20


def contains(path: Path, needle: bytes) -> bool:
    """Whether ``needle`` occurs in the file, reading only its data extents (images are sparse)."""
    with open(path, "rb") as f:
        fd, size, offset = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                return False
            end = os.lseek(fd, start, os.SEEK_HOLE)
            os.lseek(fd, start, os.SEEK_SET)
            tail = b""
            for position in range(start, end, CHUNK):
                block = tail + os.read(fd, min(CHUNK, end - position))
                if needle in block:
                    return True
                tail = block[-len(needle):]
            offset = end
    return False


def tree_contains(root: Path, needle: bytes) -> bool:
    return any(contains(p, needle) for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def produce_marker(env: Environment, topic: str) -> bytes:
    admin = AdminClient(env.admin_mtls_config())
    bootstrap.ensure_topic(admin, topic, 1)
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


def loop_devices(image: Path) -> str:
    return subprocess.run(["losetup", "--associated", str(image)], capture_output=True, text=True).stdout.strip()


def test_marker_readable_through_kafka_and_absent_from_the_encrypted_images(runtime_image, tmp_path, monkeypatch):
    assert DEV.encrypted_volumes, "dev must default to encrypted volumes"
    with running_environment(tmp_path / "project") as env:
        assert env.settings.encrypted_volumes
        name, topic = env.env, "at-rest-probe"
        kafka, zookeeper = env.volumes.volume("kafka-0"), env.volumes.volume("zk-0")
        assert env.status()["encrypted_volumes"]["nodes"] == {"zk-0": "unlocked", "kafka-0": "unlocked"}

        marker = produce_marker(env, topic)
        os.sync()  # the broker's pages, encrypted at writeback, reach the image file
        assert tree_contains(kafka.plaintext, marker), "control: the marker is in the broker's (unlocked) log"
        for volume in (kafka, zookeeper):
            assert volume.image.stat().st_blocks > 0
            assert not contains(volume.image, marker), f"marker found in plaintext in {volume.image}"
        assert not contains(kafka.image, topic.encode()), "a topic's directory name is in plaintext in the image"
        assert marker in read_back(env, topic)

        env.down()  # not purged: data kept, volumes locked
        for volume in (kafka, zookeeper):
            assert not mounted(str(volume.mountpoint)) and not volume.plaintext.exists()
            assert volume.image.exists() and loop_devices(volume.image) == ""
        assert not Path(volumes.mountpoint(name, "")).exists()
        assert env.status()["encrypted_volumes"]["nodes"] == {"zk-0": "locked", "kafka-0": "locked"}

        # A wrong passphrase: a clear error, and nothing mounted.
        with monkeypatch.context() as patch:
            patch.setenv("SECURE_KAFKA_PASSPHRASE", "not-the-passphrase")
            with pytest.raises(SecureKafkaError, match="passphrase"):
                Environment(env.project, name).up()
        wrong = volumes.EncryptedVolumes(env.project.root, env.project.certs_dir(name), name, ("zk-0", "kafka-0"),
                                         2, lambda: "not-the-passphrase")
        with pytest.raises(SecureKafkaError, match="cannot unwrap the volume key: wrong passphrase"):
            wrong.open()
        assert not mounted(str(kafka.mountpoint)) and not mounted(str(zookeeper.mountpoint))

        env.up()  # the same volumes, unlocked again: the data survived
        assert marker in read_back(env, topic)
    # running_environment purged it: no image, no key, no mount, no loop device is left.
    for volume in (kafka, zookeeper):
        assert not volume.image.exists() and not mounted(str(volume.mountpoint)) and loop_devices(volume.image) == ""
    assert not (env.project.root / volumes.IMAGES_DIR / name).exists()
    assert not (env.project.certs_dir(name)).exists()
    assert not Path(volumes.RUN_ROOT, name).exists()


def test_control_marker_found_in_a_plain_docker_volume(runtime_image, docker_client, tmp_path):
    with running_environment(tmp_path / "project", encrypted_volumes=False) as env:
        assert env.status()["encrypted_volumes"]["enabled"] is False
        marker = produce_marker(env, "at-rest-control")
        volume = env.settings.topology.volume(env.settings.topology.brokers[0])
        backing = Path(docker_client.api.inspect_volume(volume)["Mountpoint"])
        assert tree_contains(backing, marker), "the scan did not find the marker in plaintext storage"
        assert not Path(volumes.RUN_ROOT, env.env).exists()
