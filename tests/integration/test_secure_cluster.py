"""The dev-shaped secure cluster of each mode (1 ZooKeeper node or KRaft controller + 1
broker): what works, and what is refused.

Every refusal has a control beside it that succeeds, so a refusal cannot pass by accident
(for example because the probe itself is broken).
"""

from __future__ import annotations

import ssl
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import kafka_admin, kafka_tools
from secure_kafka.pki import CA
from secure_kafka.verify import probes

LOCAL = "127.0.0.1"


def published_ports(env) -> list[int]:
    topology = env.settings.topology
    return [topology.listener_port(b, listener) for b in topology.brokers for listener in ("sasl_ssl", "ssl")]


def admin_pem(env):
    d = env.certs.client_dir(ADMIN)
    return d / "ca.crt", (d / "client.crt", d / "client.key")


def test_second_up_changes_nothing(dev_env):
    result = dev_env.up()
    assert set(result.nodes.values()) == {"unchanged"}, result.nodes
    assert result.scram_users_created == []


def test_status_reports_healthy_nodes_and_bootstrap(dev_env):
    report = dev_env.status()
    assert report["healthy"] is True
    quorum = ("zk-0", "zookeeper") if dev_env.settings.metadata_mode == "zookeeper" else ("controller-0", "controller")
    assert {(n["name"], n["role"]) for n in report["nodes"]} == {quorum, ("kafka-0", "broker")}
    assert (report["metadata_mode"], report["kafka_version"]) == (dev_env.settings.metadata_mode, dev_env.settings.kafka_version)
    assert report["bootstrap"]["sasl_ssl"] == dev_env.settings.topology.bootstrap("sasl_ssl")


@pytest.mark.parametrize("producer_auth, consumer_auth", [("scram", "scram"), ("mtls", "mtls"), ("scram", "mtls")])
def test_round_trip_with_confluent_kafka(dev_env, producer_auth, consumer_auth):
    configs = {"scram": dev_env.scram_config(ADMIN), "mtls": dev_env.admin_mtls_config()}
    assert kafka_admin.round_trip(configs[producer_auth], configs[consumer_auth], kafka_admin.VERIFY_TOPIC) < 60


@pytest.mark.parametrize("auth", ["scram", "mtls"])
def test_console_tools_round_trip_with_generated_java_config(dev_env, mode_image, tmp_path, auth):
    """Kafka's own tools of the environment's Kafka line (3.9 or 4.4: its console clients take
    the config as --command-config, 3.9's as --producer.config / --consumer.config)."""
    kraft = dev_env.settings.metadata_mode == "kraft"
    config = dev_env.client_config(ADMIN, "java", auth, tmp_path / auth)
    bootstrap_servers = ",".join(dev_env.bootstrap_servers["sasl_ssl" if auth == "scram" else "ssl"])
    topic = f"console-{auth}-{uuid.uuid4().hex[:6]}"
    created = kafka_tools.run_tool(mode_image, config.parent, "kafka-topics", "--bootstrap-server",
                                 bootstrap_servers, "--command-config", str(config), "--create", "--topic", topic,
                                 "--partitions", "1", "--replication-factor", "1")
    assert created.returncode == 0, created.stderr[-800:]
    records = [f"{auth}-record-{i}" for i in range(3)]
    produced = kafka_tools.run_tool(mode_image, config.parent, "kafka-console-producer", "--bootstrap-server",
                                  bootstrap_servers, "--command-config" if kraft else "--producer.config", str(config), "--topic", topic,
                                  stdin="\n".join(records) + "\n")
    assert produced.returncode == 0, produced.stderr[-800:]
    consumed = kafka_tools.run_tool(mode_image, config.parent, "kafka-console-consumer", "--bootstrap-server",
                                  bootstrap_servers, "--command-config" if kraft else "--consumer.config", str(config), "--topic", topic,
                                  "--from-beginning", "--max-messages", "3", "--timeout-ms", "60000")
    assert consumed.returncode == 0, consumed.stderr[-800:]
    assert consumed.stdout.split() == records


# --- refusals ------------------------------------------------------------------------------


def test_plaintext_kafka_request_refused_on_every_published_port(dev_env):
    for port in published_ports(dev_env):
        assert not probes.kafka_answers_plaintext(LOCAL, port), f"port {port} answered plaintext Kafka"


def test_mtls_listener_accepts_the_admin_certificate(dev_env):
    ca, admin_cert = admin_pem(dev_env)
    port = dev_env.settings.topology.bootstrap("ssl")[0].split(":")[1]
    result = probes.tls_handshake(LOCAL, int(port), ca, "localhost", client_cert=admin_cert, speak_kafka=True)
    assert result.ok, result.detail


def test_mtls_listener_refuses_a_client_certificate_from_another_ca(dev_env, tmp_path):
    ca, _ = admin_pem(dev_env)
    foreign = CA.create("foreign-ca", "ec-p256", 30, env="foreign")
    impostor = foreign.issue_cert(ADMIN, kind="client", sans=[], validity_days=7, key_algorithm="ec-p256",
                                  server=False, client=True)
    pem = impostor.write_pem(tmp_path)
    port = int(dev_env.settings.topology.bootstrap("ssl")[0].split(":")[1])
    result = probes.tls_handshake(LOCAL, port, ca, "localhost", client_cert=(pem.cert, pem.key), speak_kafka=True)
    assert not result.ok and result.answered, f"a certificate from a foreign CA was not refused: {result.detail}"


def test_mtls_listener_refuses_a_client_without_certificate(dev_env):
    ca, _ = admin_pem(dev_env)
    port = int(dev_env.settings.topology.bootstrap("ssl")[0].split(":")[1])
    result = probes.tls_handshake(LOCAL, port, ca, "localhost", speak_kafka=True)
    assert not result.ok and result.answered, f"the mTLS listener did not refuse a client without a certificate: {result.detail}"


def test_client_trusting_another_ca_refuses_the_broker(dev_env, tmp_path):
    foreign = CA.create("foreign-ca", "ec-p256", 30, env="foreign")
    (tmp_path / "foreign.crt").write_bytes(foreign.cert_pem())
    for port in published_ports(dev_env):
        result = probes.tls_handshake(LOCAL, port, tmp_path / "foreign.crt", "localhost")
        assert not result.ok and result.answered, f"port {port}: {result.detail}"


@pytest.mark.parametrize("user, password", [(ADMIN, "wrong-password"), ("nobody", "whatever")],
                         ids=["wrong-password", "unknown-user"])
def test_bad_scram_credentials_refused(dev_env, user, password):
    good = dev_env.scram_config(ADMIN)
    assert AdminClient(good).list_topics(timeout=20).topics  # control: the right password works
    bad = {**good, "sasl.username": user, "sasl.password": password}
    with pytest.raises(KafkaException):
        AdminClient(bad).list_topics(timeout=15)


LEGACY_TLS = probes.legacy_offer(ssl.TLSVersion.TLSv1_1)


def test_tls_1_1_probe_succeeds_against_a_weak_server(weak_tls_server):
    result = probes.tls_handshake(LOCAL, weak_tls_server(ssl.TLSVersion.TLSv1_1), None, **LEGACY_TLS)
    assert result.ok and result.detail == "TLSv1.1", result.detail


def test_tls_1_1_refused_on_every_published_port(dev_env):
    for port in published_ports(dev_env):
        result = probes.tls_handshake(LOCAL, port, None, **LEGACY_TLS)
        assert not result.ok and result.answered, f"port {port} did not refuse TLS 1.1: {result.detail}"
