"""Encryption at rest: a record is readable through Kafka and absent from the raw storage.

Once per backend (gocryptfs, the default, and fscrypt) in ZooKeeper mode, and with the default
backend in KRaft mode, whose controller keeps the metadata log (topic names, ACLs, SCRAM
credentials) on its volume. The environment under test goes down
and up again, so it is its own (``running_environment``), not the shared ``dev_env``. The
control beside it proves the scan finds a marker where data is stored in plaintext (a Docker
volume of an environment with ``encryptedVolumes: false``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from markers import mounted, produce_marker, read_back

from secure_kafka.environment import Environment
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.profiles import DEV
from secure_kafka.model.topology import KRAFT, ZOOKEEPER
from secure_kafka.storage import volumes
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


def storage_contains(storage: Path, needle: bytes) -> bool:
    """In a volume's raw storage: an image's bytes, or every file's bytes and every name in a ciphertext dir."""
    if storage.is_file():
        return contains(storage, needle)
    return tree_contains(storage, needle) or any(needle.decode() in p.name for p in storage.rglob("*"))


def storage_bytes(storage: Path) -> int:
    paths = [storage] if storage.is_file() else [p for p in storage.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks for p in paths) * 512


def loop_devices(image: Path) -> str:
    return subprocess.run(["losetup", "--associated", str(image)], capture_output=True, text=True).stdout.strip()


def released(volume: volumes.Volume) -> bool:
    """Nothing of an unlocked volume is left: no loop device on an image, no gocryptfs daemon."""
    if volume.storage.is_file():
        return loop_devices(volume.storage) == ""
    return volumes.gocryptfs_processes(volume.mountpoint) == []


@pytest.mark.parametrize("backend, mode", [*((b, ZOOKEEPER) for b in volumes.BACKENDS), (volumes.DEFAULT_BACKEND, KRAFT)])
def test_marker_readable_through_kafka_and_absent_from_the_ciphertext(runtime_image, tmp_path, monkeypatch, backend, mode):
    assert DEV.encrypted_volumes, "dev must default to encrypted volumes"
    with running_environment(tmp_path / "project", volume_backend=backend, metadata_mode=mode) as env:
        assert env.settings.encrypted_volumes
        name, topic = env.env, "at-rest-probe"
        quorum_node = env.settings.topology.quorum[0].name  # zk-0 or controller-0
        kafka, quorum = env.volumes.volume("kafka-0"), env.volumes.volume(quorum_node)
        report = env.status()["encrypted_volumes"]
        assert report["backend"] == backend and report["nodes"] == {quorum_node: "unlocked", "kafka-0": "unlocked"}

        marker = produce_marker(env, topic)
        assert marker in read_back(env, topic)
        os.sync()  # the broker's pages reach the storage (fscrypt encrypts at writeback)
        assert tree_contains(kafka.plaintext, marker), "control: the marker is in the broker's (unlocked) log"
        # What the container wrote is the container user's, seen from the host too.
        assert {p.stat().st_uid for p in kafka.plaintext.rglob("*")} == {volumes.CONTAINER_UID}
        for volume in (kafka, quorum):
            assert storage_bytes(volume.storage) > 0
            assert not storage_contains(volume.storage, marker), f"marker found in plaintext in {volume.storage}"
        assert not storage_contains(kafka.storage, topic.encode()), f"topic name {topic} in plaintext in {kafka.storage}"
        if mode == KRAFT:  # the controller's metadata log names the topic: in the plaintext only
            assert tree_contains(quorum.plaintext, topic.encode()), "control: the topic is in the metadata log"
            assert not storage_contains(quorum.storage, topic.encode()), f"topic name in plaintext in {quorum.storage}"

        env.down()  # not purged: data kept, volumes locked
        for volume in (kafka, quorum):
            assert not mounted(str(volume.mountpoint)) and not volume.plaintext.exists()
            assert volume.storage.exists() and released(volume)
        assert not Path(env.volumes.run_dir).exists()
        assert env.status()["encrypted_volumes"]["nodes"] == {quorum_node: "locked", "kafka-0": "locked"}

        # Another key (a key file restored from the wrong backup): refused, nothing mounted, nothing re-made.
        before = sorted(p.name for p in kafka.storage.parent.iterdir())
        with pytest.raises(SecureKafkaError, match="the key of kafka-0 does not open this volume"):
            volumes.make_backend(backend).unlock(kafka, os.urandom(volumes.MASTER_KEY_BYTES))
        assert not mounted(str(kafka.mountpoint)) and released(kafka)
        assert sorted(p.name for p in kafka.storage.parent.iterdir()) == before

        # A wrong passphrase: a clear error, and nothing mounted.
        with monkeypatch.context() as patch:
            patch.setenv("SECURE_KAFKA_PASSPHRASE", "not-the-passphrase")
            with pytest.raises(SecureKafkaError, match="passphrase"):
                Environment(env.project, name).up()
        wrong = volumes.EncryptedVolumes(env.project.root, env.project.certs_dir(name), name, env.volumes.run_dir,
                                         (quorum_node, "kafka-0"), 2, lambda: "not-the-passphrase", backend=volumes.make_backend(backend))
        with pytest.raises(SecureKafkaError, match="cannot unwrap the volume key: wrong passphrase"):
            wrong.open()
        assert not mounted(str(kafka.mountpoint)) and not mounted(str(quorum.mountpoint))

        env.up()  # the same volumes, unlocked again: the data survived
        assert marker in read_back(env, topic)
    # running_environment purged it: no storage, no key, no mount, no loop device or daemon is left.
    for volume in (kafka, quorum):
        assert not volume.storage.exists() and not mounted(str(volume.mountpoint))
        assert loop_devices(volume.storage) == "" and volumes.gocryptfs_processes(volume.mountpoint) == []
    assert not (env.project.root / volumes.STORAGE_DIR / name).exists()
    assert not (env.project.certs_dir(name)).exists()
    assert not Path(env.volumes.run_dir).exists()


def test_control_marker_found_in_a_plain_docker_volume(runtime_image, docker_client, tmp_path):
    with running_environment(tmp_path / "project", encrypted_volumes=False) as env:
        assert env.status()["encrypted_volumes"]["enabled"] is False
        marker = produce_marker(env, "at-rest-control")
        volume = env.settings.topology.volume(env.settings.topology.brokers[0])
        backing = Path(docker_client.api.inspect_volume(volume)["Mountpoint"])
        assert tree_contains(backing, marker), "the scan did not find the marker in plaintext storage"
        assert not Path(env.volumes.run_dir).exists()


# What a broker does when it becomes a replica of many partitions at once (the 50 of the
# offsets topic): directories and their files created from many threads. gocryptfs 2.3 run as
# root failed this with EPERM (a credential switch that hits every thread); as the container
# user it must not.
CONCURRENT_CREATES = """
import os, sys, threading
base, errors = sys.argv[1], []
def partitions(thread):
    for partition in range(40):
        directory = f"{base}/topic-{thread}-{partition}"
        try:
            os.mkdir(directory)
            for suffix in ("log", "index", "timeindex", "snapshot"):
                fd = os.open(f"{directory}/00000000000000000000.{suffix}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                os.write(fd, b"x" * 512)
                os.close(fd)
        except OSError as exc:
            errors.append(f"{directory}: {exc}")
threads = [threading.Thread(target=partitions, args=(t,)) for t in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(errors), errors[:3])
"""


def gocryptfs_volume(tmp_path: Path, env: str | None = None) -> volumes.Volume:
    """A gocryptfs volume of a throwaway environment, its storage under ``tmp_path``."""
    env = env or f"t{uuid.uuid4().hex[:6]}"
    run_dir = volumes.run_dir("tests", env)
    return volumes.Volume(env, "kafka-0", tmp_path / "kafka-0.gocryptfs", Path(volumes.mountpoint(run_dir, "kafka-0")),
                          Path(volumes.plaintext_dir(run_dir, "kafka-0")), 0)


def test_gocryptfs_volume_takes_concurrent_creates_from_the_container_user(tmp_path):
    backend = volumes.GocryptfsBackend()
    volume = gocryptfs_volume(tmp_path)
    key = os.urandom(volumes.MASTER_KEY_BYTES)
    backend.create(volume, key)
    try:
        backend.unlock(volume, key)
        done = subprocess.run(["/usr/bin/python3", "-c", CONCURRENT_CREATES, str(volume.plaintext)], capture_output=True,
                              text=True, user=volumes.CONTAINER_UID, group=volumes.CONTAINER_UID, extra_groups=[])
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("0 "), f"failed creates: {done.stdout}"
        created = [p for p in volume.plaintext.rglob("*")]
        assert len(created) == 16 * 40 * 5 and {p.stat().st_uid for p in created} == {volumes.CONTAINER_UID}
        # The daemon serving it is not root.
        daemons = volumes.gocryptfs_processes(volume.mountpoint)
        assert daemons and {Path(f"/proc/{pid}").stat().st_uid for pid in daemons} == {volumes.CONTAINER_UID}
    finally:
        backend.destroy(volume)
    assert not mounted(str(volume.mountpoint)) and not volume.mountpoint.parent.exists()


# Unlocks a volume (key in hex on stdin), says so, and waits to be killed.
UNLOCK_AND_WAIT = """
import sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]  # this module, and tests/ (markers)
from test_encryption_at_rest import gocryptfs_volume
from secure_kafka.storage import volumes
volume = gocryptfs_volume(Path(sys.argv[1]), sys.argv[2])
volumes.GocryptfsBackend().unlock(volume, bytes.fromhex(sys.stdin.readline()))
print("unlocked", flush=True)
time.sleep(600)
"""


def test_a_gocryptfs_volume_outlives_the_process_group_that_unlocked_it(tmp_path):
    """Pulumi ends its provider plugins by killing their process group (the volumes are unlocked
    in one), and a Ctrl-C kills a CLI's. The daemon must need nothing of that group: once it is
    killed, a request the daemon logs about (FUSE_STATX, which it does not implement, from
    `stat %W`) must find it still serving. Seen failing before `-nosyslog`: its `logger` child
    died with the group and the daemon with SIGPIPE at its next log line."""
    backend = volumes.GocryptfsBackend()
    volume = gocryptfs_volume(tmp_path)
    key = os.urandom(volumes.MASTER_KEY_BYTES)
    backend.create(volume, key)
    try:
        unlocker = subprocess.Popen(
            [sys.executable, "-c", UNLOCK_AND_WAIT, str(tmp_path), volume.env, str(Path(__file__).parent)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        unlocker.stdin.write(key.hex() + "\n")
        unlocker.stdin.flush()
        assert unlocker.stdout.readline().strip() == "unlocked"
        os.killpg(unlocker.pid, signal.SIGKILL)
        unlocker.wait()
        (volume.plaintext / "record").write_text("acknowledged")
        subprocess.run(["stat", "--format=%W", str(volume.plaintext / "record")], check=True, capture_output=True)
        time.sleep(1)  # the daemon's log line, and its death if it had no one to write to
        assert backend.state(volume) == volumes.UNLOCKED
        assert (volume.plaintext / "record").read_text() == "acknowledged"
    finally:
        backend.destroy(volume)
    assert not mounted(str(volume.mountpoint)) and not volume.mountpoint.parent.exists()
