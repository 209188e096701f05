"""`migrate --to kraft` on a real ZooKeeper environment: Kafka's KIP-866 migration, then the
4.x image, under a steady producer and consumer. What the ZooKeeper cluster held must hold
after it: every acknowledged record once, the SCRAM user's login, its ACL grants and
refusals, the cluster id; and nothing of ZooKeeper may be left running.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from secure_kafka.build.plan import LABEL_NODE
from secure_kafka.environment import Environment
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.topology import KAFKA_VERSIONS, KRAFT
from secure_kafka.ops import acladmin, migration, users
from secure_kafka.testing import running_environment
from steady_traffic import SteadyTraffic

pytestmark = pytest.mark.integration


def produce_once(conf: dict, topic: str) -> str | None:
    """None when one record was written, else the error's name."""
    outcome: list = []
    producer = Producer({**conf, "message.timeout.ms": 15000, "acks": "all"})
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report within 30 s"
    return outcome[0].name() if outcome[0] else None


def test_a_zookeeper_environment_moves_to_kraft_keeping_records_users_and_acls(tmp_path, docker_client):
    with running_environment(tmp_path / "project", metadata_mode="zookeeper") as env:
        app, topic, other = f"app-{uuid.uuid4().hex[:6]}", "orders", "payroll"
        users.add(env, app)
        acl_file = env.project.root / "acls" / f"{env.env}.yaml"
        acl_file.parent.mkdir(exist_ok=True)
        acl_file.write_text(
            f"acls:\n  - principal: User:{app}\n    topic: {topic}\n    allow: [Write, Read, Describe]\n"
            f"  - principal: User:{app}\n    group: faults-\n    pattern: prefixed\n    allow: [Read]\n"
            f"  - principal: User:{app}\n    cluster: kafka-cluster\n    allow: [IdempotentWrite]\n")
        acladmin.apply_file(env, env.admin_client())
        admin = env.admin_client()
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in (topic, other)]).values():
            future.result(30)
        zookeeper_cluster_id = migration.zookeeper_cluster_id(migration.Migration(env).engine, env.settings.topology.brokers[0])

        with SteadyTraffic(env.scram_config(app), env.scram_config(app), topic, 1) as traffic:
            with pytest.raises(SecureKafkaError, match="interrupted at brokers-kraft:kafka-0"):
                migration.migrate(env, KRAFT, progress=print, hook=_interrupt_at("brokers-kraft:kafka-0"))
            with pytest.raises(SecureKafkaError, match="migration of .* has not finished"):
                env.up()
            report = migration.migrate(env, KRAFT, progress=print)
        traffic.outcome().assert_every_record_once()
        assert report.outcome == "done" and report.phases[0] == "brokers-kraft" and report.phases[-1] == "settings"
        assert report.cluster_id == zookeeper_cluster_id

        migrated = Environment(env.project, env.env, progress=print)
        assert migrated.settings.metadata_mode == KRAFT and migrated.settings.cluster_id == zookeeper_cluster_id
        running = {c.labels[LABEL_NODE]: c for c in docker_client.containers.list(filters={"label": [f"{k}={v}" for k, v in env.labels.items()]})}
        assert sorted(running) == ["controller-0", "kafka-0"], "ZooKeeper is retired, the controller runs"
        for container in running.values():
            version = container.exec_run(["kafka-version"], user="kafka").output.decode()
            assert f"Kafka {KAFKA_VERSIONS[KRAFT]}\n" in version, f"{container.name} runs {version}"
        # The SCRAM user logs in as before; its ACL still grants its topic and refuses another.
        assert produce_once(migrated.scram_config(app), topic) is None
        assert produce_once(migrated.scram_config(app), other) == "TOPIC_AUTHORIZATION_FAILED"
        # The migrated environment is an ordinary KRaft one: `up` changes nothing, migrate has nothing to do.
        result = migrated.up()
        assert set(result.nodes.values()) == {"unchanged"}, result.nodes
        assert migration.migrate(migrated, KRAFT).outcome == "nothing-to-do"


class _Interrupted(SecureKafkaError):
    pass


def _interrupt_at(point: str):
    """A hook that stops the migration once, where ``point`` (``<phase>:<node>``) is next."""
    def hook(event: str) -> None:
        if event == point:
            raise _Interrupted(f"interrupted at {event}: the migration of the environment has not finished")
    return hook
