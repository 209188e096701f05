"""Faults of the host under a running environment: a volume daemon killed, the Docker engine
restarted, a volume filling up. Each is reported while it lasts, and the environment comes back
with every acknowledged record.

Destructive, so the module has its own dev-shaped environments. One metadata mode (KRaft, the
supported line): what fails here is the host (its storage, its engine) under the nodes, which
both modes use alike (`storage/`, the restart policy), and the second mode's minutes are what
the suite's budget lacks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

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


def _restart_dockerd() -> float:
    """Stops the Docker engine and starts it again as it was started; returns how long the
    engine was unreachable. systemd's unit when one runs it, else the same command line with
    its output to the same file (as ./run starts it), in a session of its own."""
    started = time.monotonic()
    if subprocess.run(["systemctl", "is-active", "--quiet", "docker"], capture_output=True).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=180)
    else:
        pid = int(subprocess.run(["pidof", "-s", "dockerd"], capture_output=True, text=True, check=True).stdout)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        log = os.readlink(f"/proc/{pid}/fd/2")
        os.kill(pid, signal.SIGTERM)  # dockerd stops its containers (their stop timeout), then exits
        deadline = time.monotonic() + 120
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, "dockerd did not exit within 120 s of SIGTERM"
            time.sleep(0.2)
        with open(log if log.startswith("/") else os.devnull, "ab") as output:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "dockerd did not answer within 60 s of its restart"
        time.sleep(0.5)
    return time.monotonic() - started


def _running_healthy(docker_client) -> set[str]:
    return {c.name for c in docker_client.containers.list()
            if c.attrs["State"].get("Health", {}).get("Status", "healthy") == "healthy"}


def test_a_restarted_docker_engine_brings_the_environment_back_with_every_record(fault_env, docker_client, tmp_path):
    """dockerd stopped and started: the containers come back by their restart policy
    (unless-stopped) onto the volumes that stayed unlocked (the volume daemons are the host's,
    not Docker's), and every acknowledged record is there. Every other environment on this
    host comes back the same way; the test waits for all of them before it ends."""
    env = fault_env
    topic = f"dockerd-{uuid.uuid4().hex[:6]}"
    kafka_admin.ensure_topic(kafka_admin.wait_for_admin(env.admin_mtls_config(), 1), topic, replication_factor=1)
    before = produce(env, topic, "before", RECORDS)
    healthy_before = _running_healthy(docker_client)
    volume_states = env.status()["encrypted_volumes"]["nodes"]

    unreachable_s = _restart_dockerd()

    answered = time.monotonic()
    while not healthy_before <= _running_healthy(docker_client):
        assert time.monotonic() < answered + 240, f"not back within 240 s: {sorted(healthy_before - _running_healthy(docker_client))}"
        time.sleep(1)
    back_s = time.monotonic() - answered
    report = env.status()
    assert report["healthy"], report["warnings"]
    assert report["encrypted_volumes"]["nodes"] == volume_states  # still unlocked: no key was asked for, none needed
    assert all(r.passed for r in host.probe_volumes(Target(env, docker_client, tmp_path)))
    after = produce(env, topic, "after", RECORDS)
    assert consume_all(env, topic, len(before) + len(after)) == before + after
    print(f"\nFAULT dockerd restarted: engine unreachable {unreachable_s:.0f} s, every container healthy again "
          f"{back_s:.0f} s later; {len(before)} records acked before, all read back once")


def test_a_volume_filling_up_is_warned_of_then_named_full_and_up_recovers_it(mode_image, docker_client, tmp_path):
    """An fscrypt volume (a fixed-size image; gocryptfs grows with the host's filesystem) filled
    from the host beside the broker: `status` warns from 85 %, names the full volume once the
    broker can write nothing, the restart policy's starts are refused before Kafka touches the
    full volume, and after space is freed `up` brings the broker back with every record
    acknowledged before."""
    with running_environment(tmp_path / "project", volume_backend="fscrypt", volume_size_gib=1,
                             metadata_mode=KRAFT) as env:
        broker = env.settings.topology.brokers[0]
        topic = f"full-{uuid.uuid4().hex[:6]}"
        kafka_admin.ensure_topic(kafka_admin.wait_for_admin(env.admin_mtls_config(), 1), topic, replication_factor=1)
        before = produce(env, topic, "before", RECORDS)
        plaintext = env.volumes.volume(broker.name).plaintext
        filler = plaintext / "filler"  # root's, beside the broker's data; fallocate: no bytes to encrypt

        def fill_until(free_bytes: int) -> None:
            stats = os.statvfs(plaintext)
            with open(filler, "ab") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size + stats.f_bavail * stats.f_frsize - free_bytes)

        stats = os.statvfs(plaintext)
        fill_until(stats.f_blocks * stats.f_frsize // 10)  # 90 % used
        warnings = env.status()["warnings"]
        assert any(w.startswith(f"volume of {broker.name} is 9") and "% full" in w for w in warnings), warnings

        fill_until(0)
        producer = Producer({**env.scram_config(ADMIN), "acks": "all", "message.timeout.ms": 20000})
        for i in range(RECORDS):
            producer.produce(topic, f"into-a-full-volume-{i}".encode())
        producer.flush(30)
        deadline = time.monotonic() + 90
        while True:
            report = env.status()
            full = [w for w in report["warnings"] if w.startswith(f"volume of {broker.name} is full")]
            if full and not report["healthy"]:
                break
            assert time.monotonic() < deadline, f"a full volume not named within 90 s: {report['warnings']}"
            time.sleep(2)
        print(f"\nFAULT volume full: status said {full[0]!r}; nodes: {[(n['name'], n['state'], n['health']) for n in report['nodes']]}")

        # The restart policy keeps starting the broker; on the full volume its start script
        # must refuse before Kafka's log recovery runs there (which can empty a segment).
        refusal = "storage-space-guard: not starting"
        deadline = time.monotonic() + 90
        while (log_while_full := docker_client.api.logs(broker.container).decode(errors="replace")).count(refusal) < 2:
            assert time.monotonic() < deadline, "the broker's start was not refused twice on the full volume within 90 s"
            time.sleep(2)
        since_refused = log_while_full[log_while_full.index(refusal):].splitlines()
        assert all(line.startswith(refusal) for line in since_refused), since_refused[:10]  # no Kafka start
        filler.unlink()
        env.up()
        assert env.status()["healthy"]
        watermarks = Consumer({**env.admin_mtls_config(), "group.id": "watermarks"}).get_watermark_offsets(
            TopicPartition(topic, 0), timeout=30)
        log = docker_client.api.logs(broker.container).decode(errors="replace")
        restarted = log[log.rindex(refusal):].splitlines()  # the Kafka that `up` started, space freed
        said = [line for line in restarted if any(w in line.lower() for w in ("corrupt segment", "invalid offset", "internalerror"))]
        assert not said, said[:10]
        assert watermarks[1] >= len(before), watermarks
        seen = consume_all(env, topic, len(before))
        assert seen[:len(before)] == before, f"{len(seen)} records read back, the first {len(before)} must be those acked before"
