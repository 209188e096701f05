"""The pure side of `migrate --to kraft`: the migrating topology, the four node shapes it
renders (KIP-866's settings), the cluster id setting and the stack file's in-place update."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from test_render import parse_properties

from secure_kafka.build import migration
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles
from secure_kafka.model.settings import Project, Settings, defaults, from_config
from secure_kafka.model.topology import kraft_cluster_id
from secure_kafka.ops.migration import PHASES, POINT_OF_NO_RETURN

ZK_CLUSTER_ID = "AKx6xpnwSNeV-CJQC-QcGA"


def migrating(**overrides) -> Settings:
    base = dataclasses.replace(defaults("prod", profiles.PROD), project_id="0a1b2c3d", cluster_id=ZK_CLUSTER_ID)
    return dataclasses.replace(base, migrating=True, **overrides)


def test_a_migrating_topology_has_both_quorums_and_stays_zookeeper_mode():
    topology = migrating().topology
    assert [n.name for n in topology.nodes] == ["zk-0", "zk-1", "zk-2", "controller-0", "controller-1", "controller-2",
                                                "kafka-0", "kafka-1", "kafka-2"]
    assert topology.metadata_mode == "zookeeper" and topology.cluster_id == ZK_CLUSTER_ID


def test_the_migration_controller_copies_from_zookeeper_over_tls_and_drives_brokers_over_mtls(secrets):
    settings = migrating()
    files = migration.migration_controller(settings, settings.topology.controllers[0], secrets)
    props = parse_properties(files["server.properties"])
    assert props["zookeeper.metadata.migration.enable"] == "true"
    assert props["process.roles"] == "controller" and props["node.id"] == "1000"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,INTERNAL:SSL"
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["zookeeper.connect"] == "zk-0:2182,zk-1:2182,zk-2:2182"
    assert props["zookeeper.ssl.client.enable"] == "true" and props["zookeeper.set.acl"] == "true"
    assert props["zookeeper.ssl.keystore.location"] == props["ssl.keystore.location"]
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert "Client {" in files["jaas.conf"] and files["cluster.id"] == f"{ZK_CLUSTER_ID}\n"
    assert "log4j.rootLogger" in files["log4j.properties"]  # the 3.9 line logs with reload4j


def test_a_migrating_broker_registers_with_the_controllers_and_trusts_them_as_super_users(secrets):
    settings = migrating()
    props = parse_properties(migration.migrating_broker(settings, settings.topology.brokers[1], secrets)["server.properties"])
    assert props["zookeeper.metadata.migration.enable"] == "true" and props["broker.id"] == "1"
    assert props["controller.quorum.voters"] == "1000@controller-0:9093,1001@controller-1:9093,1002@controller-2:9093"
    assert props["listener.security.protocol.map"].endswith(",CONTROLLER:SSL")
    assert props["authorizer.class.name"] == "kafka.security.authorizer.AclAuthorizer"
    assert {"User:controller-0", "User:controller-2", "User:kafka-0", "User:admin"} <= set(props["super.users"].split(";"))


def test_brokers_then_controllers_leave_zookeeper_behind(secrets):
    settings = migrating()
    broker = parse_properties(migration.zookeeper_line_kraft_broker(settings, settings.topology.brokers[0], secrets)["server.properties"])
    controller = parse_properties(migration.zookeeper_line_controller(settings, settings.topology.controllers[0], secrets)["server.properties"])
    for props in (broker, controller):
        assert not any(key.startswith("zookeeper.") for key in props), props
    assert broker["process.roles"] == "broker" and broker["node.id"] == "0"
    assert controller["listener.security.protocol.map"] == "CONTROLLER:SSL"


def test_finalize_is_the_named_point_of_no_return_after_the_brokers_left_zookeeper():
    assert PHASES.index(POINT_OF_NO_RETURN) == PHASES.index("brokers-kraft") + 1
    assert PHASES[-1] == "settings"  # the stack file says kraft only once every node is there


@pytest.mark.parametrize("value", ["-x6xpnwSNeV-CJQC-QcGA12", "short", "AKx6xpnwSNeV+CJQC/QcGA", "AKx6xpnwSNeV-CJQC-QcGAx"])
def test_a_bad_cluster_id_is_refused_naming_the_key(value):
    with pytest.raises(SecureKafkaError, match=r"Pulumi.dev.yaml: secure-kafka:clusterId must be a Kafka cluster id"):
        from_config("dev", {"profile": "dev", "clusterId": value}, "Pulumi.dev.yaml")


def test_the_cluster_id_setting_overrides_the_derived_one():
    settings = from_config("dev", {"profile": "dev", "metadataMode": "kraft", "clusterId": ZK_CLUSTER_ID}, "Pulumi.dev.yaml")
    assert settings.topology.cluster_id == ZK_CLUSTER_ID
    plain = from_config("dev", {"profile": "dev", "metadataMode": "kraft"}, "Pulumi.dev.yaml")
    assert plain.topology.cluster_id == kraft_cluster_id(plain.topology.network)


def test_the_stack_file_is_updated_in_place_keeping_comments(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: secure-kafka\n")
    project = Project(tmp_path)
    path = project.write(defaults("dev", profiles.DEV))
    text = path.read_text().replace("'secure-kafka:clusterId': ''\n", "")  # a stack file older than the key
    path.write_text(text + "  # my own note\n")
    project.update("dev", {"metadataMode": "kraft", "clusterId": ZK_CLUSTER_ID})
    updated = path.read_text()
    assert "# my own note" in updated and "  'secure-kafka:metadataMode': kraft\n" in updated
    config = yaml.safe_load(updated)["config"]
    assert config["secure-kafka:metadataMode"] == "kraft" and config["secure-kafka:clusterId"] == ZK_CLUSTER_ID
    assert project.load("dev").cluster_id == ZK_CLUSTER_ID


def test_a_stack_file_that_cannot_be_updated_in_place_is_left_alone(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: secure-kafka\n")
    project = Project(tmp_path)
    path = project.stack_file("dev")
    path.write_text("config:\n  'secure-kafka:profile': dev\nother: 1\n")
    with pytest.raises(SecureKafkaError, match="cannot set .* in place"):
        project.update("dev", {"clusterId": ZK_CLUSTER_ID})
    assert path.read_text() == "config:\n  'secure-kafka:profile': dev\nother: 1\n"


@pytest.mark.parametrize(("args", "refusal"), [
    ([], "choose one: --to kraft"),
    (["--to", "kraft", "--abort"], "choose one: --to kraft"),
    (["--resume", "--abort"], "choose one: --to kraft"),
    (["--resume"], "no migration of dev is in progress: nothing to resume (start one with --to kraft)"),
    (["--abort"], "no migration of dev is in progress: nothing to abort"),
    (["--to", "zookeeper"], "Invalid value for '--to'"),
])
def test_the_migrate_command_refuses_what_it_cannot_do_in_one_line(tmp_path, monkeypatch, args, refusal):
    from typer.testing import CliRunner

    from secure_kafka.cli import app

    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    Project(tmp_path).write(defaults("dev", profiles.DEV))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["migrate", "dev", *args])
    assert result.exit_code != 0 and refusal in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "a refusal writes nothing"


def test_the_feature_levels_are_read_from_kafka_features_describe():
    from secure_kafka.ops.kafka_tools import finalized_levels

    describe = ("Feature: group.version\tSupportedMinVersion: 0\tSupportedMaxVersion: 1\tFinalizedVersionLevel: 0\tEpoch: 32\n"
                "Feature: metadata.version\tSupportedMinVersion: 3.3-IV3\tSupportedMaxVersion: 4.4-IV0\t"
                "FinalizedVersionLevel: 3.9-IV0\tEpoch: 32\n")
    assert finalized_levels(describe) == {"group.version": ("0", "1"), "metadata.version": ("3.9-IV0", "4.4-IV0")}
    assert finalized_levels("Error while describing features: timed out") == {}


def test_the_feature_levels_are_raised_after_every_node_runs_the_new_line():
    assert PHASES.index("features") == PHASES.index("upgrade") + 1
