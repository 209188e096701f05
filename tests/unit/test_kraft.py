"""KRaft mode: its settings, topology, rendered controller and broker configs, plan and image.

Parsed back and asserted key by key; what both modes share (TLS, SASL, durability) is
test_render.py's, run here against the KRaft templates too.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
from test_render import parse_properties

from secure_kafka.build import image, kraft, render
from secure_kafka.build.planner import build_plan
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles, settings
from secure_kafka.model.settings import Settings, defaults, from_config
from secure_kafka.model.topology import (
    CONTROLLER_PORT,
    RESERVED_CLIENT_NAME,
    is_super_user_name,
    kraft_cluster_id,
)
from secure_kafka.ops import audit
from secure_kafka.pki import revocation

ROOT = Path("/srv/project")


def kraft_settings(profile: profiles.Profile = profiles.PROD, **overrides) -> Settings:
    base = dataclasses.replace(defaults("prod" if profile is profiles.PROD else "dev", profile),
                               metadata_mode="kraft", project_id="0a1b2c3d")
    return dataclasses.replace(base, **overrides)


# --- settings and topology ----------------------------------------------------------------------


def test_a_stack_file_without_the_mode_is_zookeeper_mode():
    """Every stack file written before KRaft existed stays what it is."""
    assert from_config("dev", {"profile": "dev"}, "Pulumi.dev.yaml").metadata_mode == "zookeeper"


def test_mode_and_controllers_round_trip_through_the_stack_file():
    written = kraft_settings(controllers=5)
    read = from_config("prod", settings.to_values(written), "Pulumi.prod.yaml")
    assert (read.metadata_mode, read.controllers, read.kafka_version) == ("kraft", 5, "4.4.0")


@pytest.mark.parametrize("value", ["KRaft", "zk", "", "kraft "])
def test_an_unknown_mode_is_refused_naming_the_key(value):
    with pytest.raises(SecureKafkaError, match=r"secure-kafka:metadataMode must be zookeeper or kraft"):
        from_config("dev", {"profile": "dev", "metadataMode": value}, "Pulumi.dev.yaml")


def test_kraft_topology_has_controllers_in_place_of_zookeeper():
    topology = kraft_settings().topology
    assert [n.name for n in topology.nodes] == ["controller-0", "controller-1", "controller-2",
                                                 "kafka-0", "kafka-1", "kafka-2"]
    assert topology.zookeepers == () and topology.metadata_mode == "kraft"
    assert [topology.node_id(n) for n in topology.nodes] == [1000, 1001, 1002, 0, 1, 2]
    assert topology.controller_quorum_voters == (
        f"1000@controller-0:{CONTROLLER_PORT},1001@controller-1:{CONTROLLER_PORT},1002@controller-2:{CONTROLLER_PORT}")


def test_cluster_id_is_kafkas_form_and_one_per_environment():
    one, again, other = (kraft_settings().topology.cluster_id, kraft_settings().topology.cluster_id,
                         kraft_settings(env="staging").topology.cluster_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", one) and one == again != other


def test_cluster_ids_never_start_with_a_dash_and_keep_their_old_value_otherwise():
    """A leading '-' made `kafka-storage format --cluster-id <id>` fail (1 network name in 64)."""
    seeds = [f"sk-t{n:05x}-0123abcd" for n in range(2000)]
    ids = [kraft_cluster_id(seed) for seed in seeds]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
    old = {seed: base64.urlsafe_b64encode(hashlib.sha256(f"secure-kafka cluster {seed}".encode()).digest()[:16])
           .decode().rstrip("=") for seed in seeds}
    rederived = [seed for seed in seeds if old[seed].startswith("-")]
    assert len(rederived) > 10  # the case occurs in this sample
    assert all(kraft_cluster_id(seed) == old[seed] for seed in seeds if seed not in rederived)


@pytest.mark.parametrize("name", ["controller-0", "Controller-12", "CONTROLLER-3"])
def test_controller_names_are_reserved_super_users(name):
    assert RESERVED_CLIENT_NAME.match(name) and is_super_user_name(name)


# --- rendered configs -------------------------------------------------------------------------


def _rendered(settings: Settings, node_name: str, secrets) -> dict[str, str]:
    node = settings.topology.node(node_name)
    render = kraft.render_controller if node.role == "controller" else kraft.render_kraft_broker
    return render(settings, node, secrets)


def test_controller_listens_on_mtls_only_and_authorizes_deny_by_default(secrets):
    s = kraft_settings()
    files = _rendered(s, "controller-1", secrets)
    assert set(files) == {"server.properties", "log4j2.properties", "cluster.id"}
    config = parse_properties(files["server.properties"])
    assert config["process.roles"] == "controller" and config["node.id"] == "1001"
    assert config["listeners"] == f"CONTROLLER://0.0.0.0:{CONTROLLER_PORT}"
    assert config["listener.security.protocol.map"] == "CONTROLLER:SSL"
    assert config["controller.listener.names"] == "CONTROLLER"
    assert config["ssl.client.auth"] == "required"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert config["ssl.enabled.protocols"] == "TLSv1.3"
    assert config["authorizer.class.name"] == kraft.AUTHORIZER_CLASS
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"].split(";") == ["User:controller-0", "User:controller-1", "User:controller-2",
                                                "User:kafka-0", "User:kafka-1", "User:kafka-2", "User:admin"]
    assert config["unclean.leader.election.enable"] == "false"  # controllers run elections in KRaft
    assert config["metadata.log.max.snapshot.interval.ms"] == str(kraft.METADATA_SNAPSHOT_INTERVAL_MS)
    assert not [k for k in config if k.startswith(("zookeeper.", "sasl.", "listener.name."))]
    assert files["cluster.id"].strip() == s.topology.cluster_id


def test_kraft_broker_reaches_the_controllers_over_tls_and_keeps_the_client_listeners(secrets):
    s = kraft_settings()
    config = parse_properties(_rendered(s, "kafka-2", secrets)["server.properties"])
    assert config["process.roles"] == "broker" and config["node.id"] == "2"
    assert config["controller.quorum.voters"] == s.topology.controller_quorum_voters
    assert config["controller.listener.names"] == "CONTROLLER"
    assert "CONTROLLER" not in config["listeners"]  # the broker reaches it, does not serve it
    assert config["listener.security.protocol.map"].split(",") == [
        "INTERNAL:SSL", "SASL_SSL_EXT:SASL_SSL", "SSL_EXT:SSL", "CONTROLLER:SSL"]
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["listener.name.sasl_ssl_ext.ssl.client.auth"] == "none"
    assert config["security.providers"] == "io.securekafka.authentication.NamedScramFailures"
    assert config["authorizer.class.name"] == kraft.AUTHORIZER_CLASS
    assert config["auto.create.topics.enable"] == "false" and config["min.insync.replicas"] == "2"
    assert not [k for k in config if k.startswith("zookeeper.") or k == "broker.id"]


def test_kraft_logging_keeps_the_audit_trail_on_the_volume(secrets):
    config = parse_properties(_rendered(kraft_settings(), "controller-0", secrets)["log4j2.properties"])
    assert config["logger.audit.name"] == "kafka.authorizer.logger" and config["logger.audit.level"] == "DEBUG"
    assert config["logger.audit.additivity"] == "false"
    assert config["appender.audit.fileName"] == "/var/lib/kafka/audit/kafka-authorizer.log"
    assert config["appender.audit.strategy.max"] == str(profiles.PROD.audit_log_backups)
    # The timestamp form the audit reader parses, as ZooKeeper mode's log4j writes it.
    assert config["appender.audit.layout.pattern"].startswith("[%d{yyyy-MM-dd HH:mm:ss,SSS}]")
    assert config["logger.logins.name"] == "org.apache.kafka.common.network.Selector"
    assert config["logger.logins.level"] == "INFO" and config["logger.logins.appenderRef.audit.ref"] == "AUDIT"


# --- plan ----------------------------------------------------------------------------------------


def test_controllers_publish_nothing_and_format_with_the_cluster_id(secrets):
    plan = build_plan(ROOT, kraft_settings(), secrets, "img")
    for spec in plan.containers:
        assert spec.command == ("kafka-server-start", "/etc/kafka/config/server.properties")
        assert any(f.path.endswith(f"/{spec.node}/cluster.id") for f in spec.files)
    controllers = [c for c in plan.containers if c.role == "controller"]
    assert len(controllers) == 3 and all(c.ports == () for c in controllers)
    assert all(c.healthcheck.test[-1].endswith(f"/{CONTROLLER_PORT}") for c in controllers)
    heap, cpus = profiles.PROD.resources("controller")
    jvm_options = " ".join((f"-Xms{heap}m", f"-Xmx{heap}m", *revocation.JVM_OPTIONS))
    assert all(c.env == {"JVM_OPTS": jvm_options, "VOLUME_START_FLOOR_MIB": "32"} and c.nano_cpus == int(cpus * 1e9) for c in controllers)


# --- audit ---------------------------------------------------------------------------------------

STANDARD_AUTHORIZER_DENIED = (
    "[2026-12-04 02:10:28,147] INFO Principal = User:alice is Denied operation = DESCRIBE_CONFIGS from host = "
    "172.18.0.1 on resource = Topic:LITERAL:exp-a for request = DescribeConfigs with resourceRefCount = 1 "
    "based on rule DefaultRule(DENIED)")


def test_standard_authorizer_lines_parse_like_acl_authorizer_lines():
    decision = audit.parse_line(STANDARD_AUTHORIZER_DENIED, "controller-0")
    assert decision is not None
    assert (decision.node, decision.principal, decision.allowed, decision.operation, decision.resource_type,
            decision.resource, decision.request) == (
        "controller-0", "User:alice", False, "DescribeConfigs", "Topic", "exp-a", "DescribeConfigs")


# --- image ---------------------------------------------------------------------------------------


def test_each_mode_has_its_own_image_and_inputs():
    assert image.image_tag("zookeeper").startswith("secure-kafka-runtime:3.9.")
    assert image.image_tag("kraft").startswith("secure-kafka-runtime:4.4.0-")
    assert image.inputs_hash("zookeeper") != image.inputs_hash("kraft")
    kraft_bin = {name for name, _ in image.build_inputs("kraft") if name.startswith("bin/")}
    assert {"bin/kafka-server-start", "bin/kafka-storage", "bin/kafka-topics"} <= kraft_bin
    assert "bin/zookeeper-server-start" not in kraft_bin
    launcher = dict(image.build_inputs("kraft"))["bin/kafka-server-start"]
    assert launcher.parent.parent.name == "kafka-4.4" and "StorageTool format" in launcher.read_text()


def test_the_jdk_21_image_is_built_apart_from_trixie_and_never_under_the_default_tag():
    assert image.base_image() == image.BASE_IMAGE == "debian:bookworm-slim"
    assert image.base_image(21) == "debian:trixie-slim"
    assert image.image_tag("zookeeper", 21) == image.image_tag("zookeeper") + "-jdk21"
    with pytest.raises(SecureKafkaError, match="no runtime image with JDK 11: choose one of 17, 21"):
        image.base_image(11)
    dockerfile = (image.DOCKER_DIR / "Dockerfile").read_text()
    assert "FROM debian:${DEBIAN_SUITE}-slim" in dockerfile and "openjdk-${JDK}-jre-headless" in dockerfile


@pytest.mark.parametrize("allowed, level, file_mb", [(True, "DEBUG", 10), (False, "INFO", 1)])
def test_audit_settings_decide_what_is_logged_and_when_it_rolls_in_either_mode(secrets, allowed, level, file_mb):
    """The authorizers log allowed decisions at DEBUG and denied ones at INFO (auditAllowed);
    the file rolls at auditLogFileMb."""
    settings = kraft_settings(audit_allowed=allowed, audit_log_file_mb=file_mb)
    config = parse_properties(_rendered(settings, "kafka-0", secrets)["log4j2.properties"])
    assert config["logger.audit.level"] == level
    assert config["appender.audit.policies.size.size"] == f"{file_mb}MB"
    zookeeper_mode = dataclasses.replace(settings, metadata_mode="zookeeper")
    broker = zookeeper_mode.topology.node("kafka-0")
    log4j = parse_properties(render.render_broker(zookeeper_mode, broker, secrets)["log4j.properties"])
    assert log4j["log4j.logger.kafka.authorizer.logger"] == f"{level}, audit"
    assert log4j["log4j.appender.audit.MaxFileSize"] == f"{file_mb}MB"
