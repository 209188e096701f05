"""The durable decisions trail on a real cluster: nothing the authorizer logged is lost or
collected twice while the broker's log rolls, the broker is SIGKILLed, and the collector
(`secure-kafka audit collect ENV --follow`) is killed and started again. Every denial the test
caused (a topic of its own each) is in the trail as often as the broker logged it, and the trail
holds every line each node wrote, exactly once and in order.

One metadata mode (KRaft: its controllers authorize too, one node more to collect from); an
environment of its own, since its broker is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from secure_kafka.build.render import AUDIT_LOG
from secure_kafka.model.topology import ADMIN, KRAFT
from secure_kafka.ops import audit, kafka_admin, users
from secure_kafka.testing import running_environment

CLI = [str(Path(sys.executable).with_name("secure-kafka"))]
ROLLS = 3  # the broker's audit log rolled at least this often while denials were made
FILE_MB = 1  # auditLogFileMb: rolls in seconds, not minutes (the mechanism is the same at 10 MB)
KILL_BROKER_AT_S, RESTART_COLLECTOR_AT_S = 5, 25
MAX_UNCOLLECTED = 20  # lines a node may write between the last collection and the check
pytestmark = pytest.mark.parametrize("metadata_mode", [KRAFT], indirect=True)


def collector(env) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "audit", "collect", env.env, "--follow"], cwd=env.project.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rolled_files(docker_client, container: str) -> int:
    """How many rolled backups of the audit log the broker holds now."""
    listing = docker_client.containers.get(container).exec_run(["ls", AUDIT_LOG.rpartition("/")[0]]).output.decode()
    return sum(1 for name in listing.split() if name.startswith("kafka-authorizer.log."))


def allowed_load(env, topic: str, stop: threading.Event) -> None:
    """One produce request per record (no batching), each an allowed decision in the log: the
    cheapest way to roll the files. A short queue, dropped at the stop: the load ends when asked."""
    producer = Producer({**env.scram_config(ADMIN), "linger.ms": 0, "batch.num.messages": 1, "acks": 1,
                         "queue.buffering.max.messages": 1000})
    while not stop.is_set():
        for _ in range(500):
            try:
                producer.produce(topic, b"x")
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.purge()
    producer.flush(10)


def denied(env, principal: str, topic: str) -> bool:
    """Asks for ``topic``'s metadata as ``principal``: True when the broker answered with a
    denial (it logs the decision before it answers); False when it could not answer (down)."""
    client = AdminClient({**env.scram_config(principal), "log_level": 0})  # a fresh client: no topic it refreshes later
    try:
        error = client.list_topics(topic=topic, timeout=5).topics[topic].error
    except KafkaException:
        return False
    return error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def collected_lines(env, node: str) -> list[str]:
    return [line for name, text in env.decisions.texts() if name == node for line in text.splitlines()]


def test_every_decision_is_collected_once_across_rolls_a_broker_kill_and_a_collector_restart(
        metadata_mode, mode_image, docker_client, tmp_path):
    with running_environment(tmp_path / "project", metadata_mode=metadata_mode, audit_log_file_mb=FILE_MB) as env:
        tag = uuid.uuid4().hex[:6]
        principal = f"deny-{tag}"
        users.add(env, principal)  # SCRAM, no ACL: every topic it asks for is denied
        load_topic = f"load-{tag}"
        kafka_admin.ensure_topic(env.admin_client(), load_topic, replication_factor=1, partitions=1)
        broker = env.settings.topology.brokers[0]

        stop = threading.Event()
        load = threading.Thread(target=allowed_load, args=(env, load_topic, stop), daemon=True)
        running = collector(env)
        load.start()
        denials: list[str] = []  # topics whose denial the client saw
        started, killed_broker, restarted_collector = time.monotonic(), False, False
        try:
            while not (stop.is_set() and restarted_collector):
                assert time.monotonic() - started < 180, f"{rolled_files(docker_client, broker.container)} rolls in 180 s"
                topic = f"denied-{tag}-{len(denials)}"
                if denied(env, principal, topic):
                    denials.append(topic)
                else:
                    time.sleep(0.5)
                if rolled_files(docker_client, broker.container) >= ROLLS:
                    stop.set()  # rolled enough; fewer rolls than the broker keeps, so it still holds every line
                if not killed_broker and time.monotonic() - started > KILL_BROKER_AT_S:
                    pid = docker_client.api.inspect_container(broker.container)["State"]["Pid"]
                    os.kill(pid, signal.SIGKILL)  # mid-stream; the restart policy brings it back
                    killed_broker = True
                elif killed_broker and not restarted_collector and time.monotonic() - started > RESTART_COLLECTOR_AT_S:
                    running.send_signal(signal.SIGKILL)
                    running.wait(10)
                    running = collector(env)
                    restarted_collector = True
        finally:
            stop.set()
            load.join(60)
            running.send_signal(signal.SIGINT)
            try:
                running.wait(15)
            except subprocess.TimeoutExpired:
                running.kill()
        rolled = rolled_files(docker_client, broker.container)
        print(f"\n{len(denials)} denials, {rolled} rolls of the broker's audit log in {time.monotonic() - started:.0f} s; "
              "the broker SIGKILLed, the collector SIGKILLed and started again")
        assert docker_client.api.inspect_container(broker.container)["RestartCount"] >= 1
        assert len(denials) > 50
        # Fewer rolled files than the profile keeps: none was deleted, so the broker still holds
        # every line it wrote since `up`, the truth the trail is held to.
        assert rolled < env.settings.profile.audit_log_backups, "the broker rolled its first lines away: slow the load"

        # The CLI's read collects what the collectors left, then reads the trail: every denial
        # the client saw is there, and each topic's denials as often as the broker logged them (a
        # client may send its Metadata request more than once).
        read = subprocess.run([*CLI, "audit", env.env, "--denied", "--principal", principal, "--json"],
                              cwd=env.project.root, capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, read.stderr
        in_trail = Counter(d["resource"] for d in json.loads(read.stdout)["decisions"])
        assert [t for t in denials if not in_trail[t]] == []
        held = audit.held_lines(docker_client.containers.get(broker.container), broker)
        logged = Counter(d.resource for d in audit.parse_log("\n".join(held), broker.name)
                         if not d.allowed and d.resource.startswith(f"denied-{tag}-"))
        assert in_trail == logged
        assert env.decisions.gaps() == []
        # Every line, not only the denials: the trail holds each node's log since `up`, once and
        # in order, the controller's too; a node may write a line or two after the last
        # collection (the controller authorizes each broker heartbeat): those are not in it yet.
        env.collect_decisions()
        for node in (broker, *env.settings.topology.controllers):
            held = audit.held_lines(docker_client.containers.get(node.container), node)
            trail = collected_lines(env, node.name)
            assert trail == held[:len(trail)] and len(held) - len(trail) < MAX_UNCOLLECTED, (node.name, len(trail), len(held))
        print(f"trail == each node's own log: {len(collected_lines(env, broker.name))} lines of the broker's; "
              f"decisions per denial: {sorted(Counter(in_trail.values()).items())}")

