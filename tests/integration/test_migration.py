"""`migrate --to kraft` on a real prod-shape ZooKeeper environment (3 ZooKeeper nodes, 3
brokers, RF 3, min ISR 2): Kafka's KIP-866 migration, then the 4.4 image, under a steady
idempotent `acks=all` producer and a consumer, killed midway and resumed. What the ZooKeeper
cluster held must hold after it: every acknowledged record once, a consumer group's
committed offsets, the SCRAM user's login, its ACL grants and refusals, the cluster id; the
migrated environment passes prod's full verify, and nothing of ZooKeeper is left running.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from interruption import Killed, kill_at
from steady_traffic import SteadyTraffic

from secure_kafka.build import image
from secure_kafka.build.plan import LABEL_NODE
from secure_kafka.environment import Environment
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.topology import ADMIN, KAFKA_VERSIONS, KRAFT
from secure_kafka.ops import acladmin, kafka_tools, migration, users
from secure_kafka.testing import running_environment

pytestmark = pytest.mark.integration

PARTITIONS = 3
# The producer's longest wait for an acknowledgement while nodes restart one at a time (a
# leader moves per broker restart; measured 2-4 s here, see the test's printed figures).
STALL_BOUND_S = 30


def produce_once(conf: dict, topic: str) -> str | None:
    """None when one record was written, else the error's name."""
    outcome: list = []
    producer = Producer({**conf, "message.timeout.ms": 15000, "acks": "all"})
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report within 30 s"
    return outcome[0].name() if outcome[0] else None


def committed(env, group: str, topic: str) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    admin = env.admin_client()  # referenced until the future resolves
    result = admin.list_consumer_group_offsets([request])[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def commit_some(conf: dict, group: str, topic: str, count: int) -> None:
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < count and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and not message.error():
            seen += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    assert seen >= count, f"read only {seen} records"


def test_a_prod_zookeeper_environment_moves_to_kraft_under_load_killed_and_resumed(tmp_path, docker_client):
    with running_environment(tmp_path / "project", profile="prod", metadata_mode="zookeeper") as env:
        app, topic, other, group = f"app-{uuid.uuid4().hex[:6]}", "orders", "payroll", "readers"
        users.add(env, app)
        acl_file = env.project.root / "acls" / f"{env.env}.yaml"
        acl_file.parent.mkdir(exist_ok=True)
        acl_file.write_text(
            f"acls:\n  - principal: User:{app}\n    topic: {topic}\n    allow: [Write, Read, Describe]\n"
            f"  - principal: User:{app}\n    group: {group}\n    allow: [Read]\n")
        acladmin.apply_file(env, env.admin_client())
        admin = env.admin_client()  # referenced until the futures resolve: a collected client cancels them
        for future in admin.create_topics([NewTopic(t, PARTITIONS, 3) for t in (topic, other)]).values():
            future.result(30)
        for _ in range(30):
            assert produce_once(env.scram_config(app), topic) is None
        commit_some(env.scram_config(app), group, topic, 20)
        offsets = committed(env, group, topic)
        zookeeper_cluster_id = migration.zookeeper_cluster_id(migration.Migration(env).engine, env.settings.topology.brokers[0])

        with SteadyTraffic(env.scram_config(app), env.scram_config(app), topic, PARTITIONS) as traffic:
            traffic.wait_acked(100, 60)
            started = time.monotonic()
            with pytest.raises(Killed):
                migration.migrate(env, KRAFT, progress=print, hook=kill_at("brokers-kraft:kafka-1"))
            with pytest.raises(SecureKafkaError, match="migration of .* has not finished"):
                env.up()
            report = migration.resume(env, progress=print)
            elapsed = time.monotonic() - started
            traffic.wait_acked(100, 60)
        outcome = traffic.outcome(started)
        print(f"migration (killed at brokers-kraft:kafka-1, resumed): {elapsed:.0f} s; {outcome.row()}")
        outcome.assert_every_record_once()
        assert outcome.longest_stall_s < STALL_BOUND_S, outcome.row()
        assert report.outcome == "done" and report.phases[0] == "brokers-kraft" and report.phases[-1] == "settings"
        assert report.cluster_id == zookeeper_cluster_id

        migrated = Environment(env.project, env.env, progress=print)
        assert migrated.settings.metadata_mode == KRAFT and migrated.settings.cluster_id == zookeeper_cluster_id
        labels = [f"{key}={value}" for key, value in env.labels.items()]
        running = {c.labels[LABEL_NODE]: c for c in docker_client.containers.list(filters={"label": labels})}
        assert sorted(running) == ["controller-0", "controller-1", "controller-2", "kafka-0", "kafka-1", "kafka-2"]
        for container in running.values():
            version = container.exec_run(["kafka-version"], user="kafka").output.decode()
            assert f"Kafka {KAFKA_VERSIONS[KRAFT]}\n" in version, f"{container.name} runs {version}"
        assert committed(migrated, group, topic) == offsets
        # The SCRAM user logs in as before; its ACLs still grant its topic and refuse another.
        assert produce_once(migrated.scram_config(app), topic) is None
        assert produce_once(migrated.scram_config(app), other) == "TOPIC_AUTHORIZATION_FAILED"
        assert produce_once(migrated.scram_config(ADMIN), other) is None
        # An ordinary KRaft environment now: `up` changes nothing and passes prod's full
        # verify (KRaft probes, no ZooKeeper ones); migrate has nothing left to do.
        result = migrated.up()
        assert set(result.nodes.values()) == {"unchanged"}, result.nodes
        assert result.verification["passed"], result.verification
        assert migration.migrate(migrated, KRAFT).outcome == "nothing-to-do"


def read_all(conf: dict, topic: str) -> list[bytes]:
    """Every record of the topic's one partition, read by a fresh consumer."""
    consumer = Consumer({**conf, "group.id": f"check-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, quiet_since = [], time.monotonic()
    while time.monotonic() - quiet_since < 5:
        message = consumer.poll(1)
        if message is not None and not message.error():
            values.append(message.value())
            quiet_since = time.monotonic()
    consumer.close()
    return values


def test_an_unfinished_migration_aborts_back_to_zookeeper_and_cannot_once_finalized(tmp_path, docker_client):
    """Dev shape: one broker, so clients wait while it restarts (the prod-shape test above
    is the one under load); here the records written before must all be there after."""
    with running_environment(tmp_path / "project", metadata_mode="zookeeper") as env:
        topic = "events"
        admin = env.admin_client()  # referenced until the futures resolve
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(30)
        written = [f"record-{n}".encode() for n in range(200)]
        producer = Producer({**env.scram_config(ADMIN), "acks": "all", "enable.idempotence": True})
        for value in written:
            producer.produce(topic, value)
        assert producer.flush(30) == 0
        labels = [f"{key}={value}" for key, value in env.labels.items()]

        with pytest.raises(Killed):  # every broker in KRaft mode, the controllers not finalized
            migration.migrate(env, KRAFT, progress=print, hook=kill_at("finalize"))
        report = migration.abort(env, progress=print)
        assert report.outcome == "aborted"
        assert sorted(c.labels[LABEL_NODE] for c in docker_client.containers.list(filters={"label": labels})) == ["kafka-0", "zk-0"]
        assert "controller-0" not in env.volumes.states(), "the controllers' volumes are destroyed"
        result = env.up()  # an ordinary ZooKeeper environment again: its own plan, unchanged, verified
        assert set(result.nodes.values()) == {"unchanged"}, result.nodes
        assert read_all(env.scram_config(ADMIN), topic) == written

        # Once finalize has begun there is no way back, only forward.
        with pytest.raises(Killed):
            migration.migrate(env, KRAFT, progress=print, hook=kill_at("finalize:controller-0"))
        with pytest.raises(SecureKafkaError, match=r"past the point of no return .* migrate .* --to kraft"):
            migration.abort(env, progress=print)
        assert migration.migrate(env, KRAFT, progress=print).outcome == "done"
        migrated = Environment(env.project, env.env)
        assert migrated.settings.metadata_mode == KRAFT
        assert read_all(migrated.scram_config(ADMIN), topic) == written
        # Kafka 4.4's feature levels, as a new KRaft environment starts with: metadata.version
        # no longer 3.9's, the new consumer group protocol (group.version 1) enabled, and the
        # controller quorum still static (kraft.version 0, controller.quorum.voters).
        config = migrated.client_config(ADMIN, "java", "mtls", tmp_path / "admin")
        kraft_line = image.ensure_image(docker_client, print, mode=KRAFT)
        levels = kafka_tools.finalized_levels(
            kafka_tools.features(kraft_line, config, ",".join(migrated.bootstrap_servers["ssl"]), "describe"))
        print(f"feature levels after the migration (finalized, highest): {levels}")
        assert levels["metadata.version"][0] == levels["metadata.version"][1] != "3.9-IV0", levels
        assert levels["group.version"][0] == "1" and levels["kraft.version"][0] == "0", levels
