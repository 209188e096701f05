"""Rendered configuration: parsed back, the security-relevant keys asserted."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from secure_kafka.build import render
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles
from secure_kafka.model.settings import Settings, defaults
from secure_kafka.pki import secretstore


def parse_properties(text: str) -> dict[str, str]:
    """A ``java.util.Properties`` reader for what we render (no line continuations)."""
    escapes = {"n": "\n", "r": "\r", "t": "\t"}
    result: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]?(.*)$", stripped)
        assert match, line
        key, raw = match.group(1), match.group(2).lstrip(" \t")
        value, i = [], 0
        while i < len(raw):
            if raw[i] == "\\" and i + 1 < len(raw):
                value.append(escapes.get(raw[i + 1], raw[i + 1]))
                i += 2
            else:
                value.append(raw[i])
                i += 1
        assert key not in result, f"duplicate key {key}"
        result[key] = "".join(value)
    return result


def parse_conf(text: str) -> dict[str, str]:
    """librdkafka ``key=value`` lines, as ``kcat -F`` reads them."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def jaas_sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) \{\n(.*?)\n\};", text, flags=re.S | re.M))


def dev() -> Settings:
    return defaults("dev", profiles.DEV)


def prod() -> Settings:
    return defaults("prod", profiles.PROD)


# --- Brokers -------------------------------------------------------------------------------

SHAPES = [
    # settings, broker count, RF, min ISR, TLS versions
    pytest.param(dev, 1, "1", "1", "TLSv1.2,TLSv1.3", "TLSv1.3", id="dev-1+1"),
    pytest.param(prod, 3, "3", "2", "TLSv1.3", "TLSv1.3", id="prod-3+3"),
]


@pytest.mark.parametrize("make, brokers, rf, min_isr, enabled, protocol", SHAPES)
def test_broker_security_settings(secrets, make, brokers, rf, min_isr, enabled, protocol):
    settings = make()
    topology = settings.topology
    assert len(topology.brokers) == brokers
    for node in topology.brokers:
        props = parse_properties(render.render_broker(settings, node, secrets)["server.properties"])
        p1, p2 = topology.listener_port(node, "sasl_ssl"), topology.listener_port(node, "ssl")
        store_password = secrets.get(secretstore.store_password_name(node.name))
        expected = {
            "broker.id": str(node.index),
            "log.dirs": "/var/lib/kafka/data",
            "listeners": f"INTERNAL://0.0.0.0:9091,SASL_SSL_EXT://0.0.0.0:{p1},SSL_EXT://0.0.0.0:{p2}",
            "advertised.listeners": f"INTERNAL://{node.name}:9091,SASL_SSL_EXT://localhost:{p1},SSL_EXT://localhost:{p2}",
            "listener.security.protocol.map": "INTERNAL:SSL,SASL_SSL_EXT:SASL_SSL,SSL_EXT:SSL",
            "inter.broker.listener.name": "INTERNAL",
            "ssl.client.auth": "required",
            "listener.name.sasl_ssl_ext.ssl.client.auth": "none",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "security.providers": "io.securekafka.authentication.NamedScramFailures",
            "listener.name.sasl_ssl_ext.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": "/etc/kafka/tls/keystore.p12",
            "ssl.keystore.password": store_password,
            "ssl.key.password": store_password,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": "/etc/kafka/tls/truststore.p12",
            "ssl.truststore.password": store_password,
            "ssl.enabled.protocols": enabled,
            "ssl.protocol": protocol,
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+),OU=.*$/$1/,DEFAULT",
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join([f"User:kafka-{i}" for i in range(brokers)] + ["User:admin"]),
            "zookeeper.connect": topology.zookeeper_connect,
            "zookeeper.ssl.client.enable": "true",
            "zookeeper.clientCnxnSocket": "org.apache.zookeeper.ClientCnxnSocketNetty",
            "zookeeper.ssl.keystore.type": "PKCS12",
            "zookeeper.ssl.keystore.location": "/etc/kafka/tls/keystore.p12",
            "zookeeper.ssl.keystore.password": store_password,
            "zookeeper.ssl.truststore.type": "PKCS12",
            "zookeeper.ssl.truststore.location": "/etc/kafka/tls/truststore.p12",
            "zookeeper.ssl.truststore.password": store_password,
            "zookeeper.ssl.endpoint.identification.algorithm": "HTTPS",
            "zookeeper.ssl.enabled.protocols": enabled,
            "zookeeper.set.acl": "true",
            "auto.create.topics.enable": "false",
            "default.replication.factor": rf,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "transaction.state.log.min.isr": min_isr,
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }
        assert {key: props.get(key) for key in expected} == expected


def test_prod_zookeeper_connect_lists_the_ensemble_tls_port(secrets):
    props = parse_properties(render.render_broker(prod(), prod().topology.brokers[0], secrets)["server.properties"])
    assert props["zookeeper.connect"] == "zk-0:2182,zk-1:2182,zk-2:2182"


def test_replication_never_exceeds_the_broker_count(secrets):
    two_brokers = dataclasses.replace(prod(), brokers=2)
    props = parse_properties(render.render_broker(two_brokers, two_brokers.topology.brokers[0], secrets)["server.properties"])
    assert props["default.replication.factor"] == "2"
    assert props["min.insync.replicas"] == "2"


@pytest.mark.parametrize("make", [dev, prod], ids=["dev", "prod"])
def test_no_plaintext_listener_by_default(secrets, make):
    settings = make()
    for node in settings.topology.brokers:
        props = parse_properties(render.render_broker(settings, node, secrets)["server.properties"])
        protocols = [m.split(":")[1] for m in props["listener.security.protocol.map"].split(",")]
        assert "PLAINTEXT" not in protocols
        assert "PLAINTEXT" not in props["listeners"]


def test_dev_plaintext_loopback_opt_in(secrets):
    settings = dataclasses.replace(dev(), plaintext_loopback=True)
    node = settings.topology.brokers[0]
    props = parse_properties(render.render_broker(settings, node, secrets)["server.properties"])
    p3 = settings.topology.listener_port(node, "plaintext")
    assert props["listeners"].endswith(f",PLAINTEXT_LOOPBACK://0.0.0.0:{p3}")
    assert props["advertised.listeners"].endswith(f",PLAINTEXT_LOOPBACK://localhost:{p3}")
    assert props["listener.security.protocol.map"].endswith(",PLAINTEXT_LOOPBACK:PLAINTEXT")


@pytest.mark.parametrize("profile", [profiles.CI, profiles.PROD], ids=["ci", "prod"])
def test_plaintext_opt_in_refused_by_strict_profiles(secrets, profile):
    settings = dataclasses.replace(defaults(profile.name, profile), plaintext_loopback=True)
    with pytest.raises(SecureKafkaError, match=r"secure-kafka:plaintextLoopback .*profile " + profile.name):
        render.render_broker(settings, settings.topology.brokers[0], secrets)


def test_broker_jaas_shares_one_zookeeper_identity(secrets):
    settings = prod()
    password = secrets.get(secretstore.ZOOKEEPER_SASL)
    clients = set()
    for node in settings.topology.brokers:
        sections = jaas_sections(render.render_broker(settings, node, secrets)["jaas.conf"])
        assert set(sections) == {"Client"}
        clients.add(sections["Client"])
    assert len(clients) == 1  # the same identity for every broker
    (client,) = clients
    assert "org.apache.zookeeper.server.auth.DigestLoginModule required" in client
    assert 'username="kafka"' in client
    assert f'password="{password}";' in client


def test_broker_log4j_audits_authorizer_decisions(secrets):
    props = parse_properties(render.render_broker(dev(), dev().topology.brokers[0], secrets)["log4j.properties"])
    assert props["log4j.rootLogger"] == "INFO, stdout"
    assert props["log4j.logger.kafka.authorizer.logger"] == "DEBUG, audit"
    assert props["log4j.additivity.kafka.authorizer.logger"] == "false"
    assert props["log4j.appender.audit"] == "org.apache.log4j.RollingFileAppender"
    assert props["log4j.appender.audit.File"] == "/var/lib/kafka/audit/kafka-authorizer.log"
    assert props["log4j.appender.audit.MaxFileSize"] == "10MB"
    assert props["log4j.appender.audit.MaxBackupIndex"] == "5"
    # Failed logins: into the audit file too, and still on stdout (additivity left on).
    assert props["log4j.logger.org.apache.kafka.common.network.Selector"] == "INFO, audit"
    assert "log4j.additivity.org.apache.kafka.common.network.Selector" not in props


# --- ZooKeeper ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [dev, prod], ids=["dev", "prod"])
def test_zookeeper_client_port_is_tls_and_sasl_only(secrets, make):
    settings = make()
    for node in settings.topology.zookeepers:
        files = render.render_zookeeper(settings, node, secrets)
        assert set(files) == {"zoo.cfg", "jaas.conf", "log4j.properties", "myid", "store.pass"}
        assert files["myid"] == f"{node.index + 1}\n"
        cfg = parse_properties(files["zoo.cfg"])
        store_password = secrets.get(secretstore.store_password_name(node.name))
        assert files["store.pass"] == f"{store_password}\n"  # the healthcheck's openssl -pass file:
        assert cfg["ssl.context.supplier.class"] == "io.securekafka.zookeeper.NodeCertificatesOnly"
        assert "clientPort" not in cfg  # the plaintext client port stays closed
        expected = {
            "dataDir": "/var/lib/zookeeper",
            "secureClientPort": "2182",
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "authProvider.sasl": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "enforce.auth.enabled": "true",
            "enforce.auth.schemes": "sasl",
            "ssl.keyStore.location": "/etc/kafka/tls/keystore.p12",
            "ssl.keyStore.password": store_password,
            "ssl.keyStore.type": "PKCS12",
            "ssl.trustStore.location": "/etc/kafka/tls/truststore.p12",
            "ssl.trustStore.password": store_password,
            "ssl.trustStore.type": "PKCS12",
            "ssl.clientAuth": "need",
            "ssl.enabledProtocols": ",".join(settings.tls_versions),
            "ssl.hostnameVerification": "true",
            "admin.enableServer": "false",
        }
        assert {key: cfg.get(key) for key in expected} == expected
        server = jaas_sections(files["jaas.conf"])["Server"]
        assert f'user_kafka="{secrets.get(secretstore.ZOOKEEPER_SASL)}";' in server


def test_standalone_zookeeper_has_no_quorum(secrets):
    files = render.render_zookeeper(dev(), dev().topology.zookeepers[0], secrets)
    cfg = parse_properties(files["zoo.cfg"])
    assert not [key for key in cfg if key.startswith(("server.", "sslQuorum", "quorum"))]
    assert set(jaas_sections(files["jaas.conf"])) == {"Server"}
    assert not secrets.has(secretstore.QUORUM_SASL)  # a standalone node needs no quorum secret


def test_ensemble_quorum_is_tls_and_sasl(secrets):
    settings = prod()
    quorum_password = secrets.get(secretstore.QUORUM_SASL)
    for node in settings.topology.zookeepers:
        files = render.render_zookeeper(settings, node, secrets)
        cfg = parse_properties(files["zoo.cfg"])
        store_password = secrets.get(secretstore.store_password_name(node.name))
        expected = {
            "server.1": "zk-0:2888:3888",
            "server.2": "zk-1:2888:3888",
            "server.3": "zk-2:2888:3888",
            "quorumListenOnAllIPs": "true",
            "sslQuorum": "true",
            "ssl.quorum.keyStore.location": "/etc/kafka/tls/keystore.p12",
            "ssl.quorum.keyStore.password": store_password,
            "ssl.quorum.keyStore.type": "PKCS12",
            "ssl.quorum.trustStore.location": "/etc/kafka/tls/truststore.p12",
            "ssl.quorum.trustStore.password": store_password,
            "ssl.quorum.trustStore.type": "PKCS12",
            "ssl.quorum.hostnameVerification": "true",
            "ssl.quorum.enabledProtocols": "TLSv1.3",
            "quorum.auth.enableSasl": "true",
            "quorum.auth.learnerRequireSasl": "true",
            "quorum.auth.serverRequireSasl": "true",
            "quorum.auth.learner.loginContext": "QuorumLearner",
            "quorum.auth.server.loginContext": "QuorumServer",
        }
        assert {key: cfg.get(key) for key in expected} == expected
        sections = jaas_sections(files["jaas.conf"])
        assert set(sections) == {"Server", "QuorumServer", "QuorumLearner"}
        assert f'user_zkquorum="{quorum_password}";' in sections["QuorumServer"]
        assert 'username="zkquorum"' in sections["QuorumLearner"]
        assert f'password="{quorum_password}";' in sections["QuorumLearner"]


def test_zookeeper_logs_to_console_only(secrets):
    props = parse_properties(render.render_zookeeper(dev(), dev().topology.zookeepers[0], secrets)["log4j.properties"])
    appenders = {key.split(".")[2] for key in props if key.startswith("log4j.appender.")}
    assert appenders == {"stdout"}


# --- Escaping of supplied secrets ------------------------------------------------------------

HOSTILE = 'a\\b "c"\nzookeeper.set.acl=false'


def test_supplied_store_password_cannot_inject_properties(secrets):
    settings = dev()
    node = settings.topology.brokers[0]
    secrets.set(secretstore.store_password_name(node.name), " " + HOSTILE)
    props = parse_properties(render.render_broker(settings, node, secrets)["server.properties"])
    assert props["ssl.keystore.password"] == " " + HOSTILE
    assert props["zookeeper.set.acl"] == "true"


def test_supplied_sasl_password_is_quoted_in_jaas(secrets):
    secrets.set(secretstore.ZOOKEEPER_SASL, 'p"w\\')
    jaas = render.render_broker(dev(), dev().topology.brokers[0], secrets)["jaas.conf"]
    assert 'password="p\\"w\\\\";' in jaas


def test_multiline_sasl_password_is_refused(secrets):
    secrets.set(secretstore.ZOOKEEPER_SASL, "one\ntwo")
    with pytest.raises(SecureKafkaError, match="line break"):
        render.render_zookeeper(dev(), dev().topology.zookeepers[0], secrets)


# --- Strict rendering -----------------------------------------------------------------------


def test_undefined_variable_names_template_and_line(tmp_path):
    (tmp_path / "broken.j2").write_text("# line 1\nok={{ defined }}\nbad={{ missing }}\n")
    renderer = render.Renderer(tmp_path)
    with pytest.raises(SecureKafkaError, match=r"broken\.j2:3: 'missing' is undefined"):
        renderer.render("broken.j2", defined="x")


def test_syntax_error_names_template_and_line(tmp_path):
    (tmp_path / "broken.j2").write_text("a=1\nb={% if %}\n")
    with pytest.raises(SecureKafkaError, match=r"broken\.j2:2: syntax error"):
        render.Renderer(tmp_path).render("broken.j2")


def test_missing_template_is_named(tmp_path):
    with pytest.raises(SecureKafkaError, match="template nowhere.j2 not found"):
        render.Renderer(tmp_path).render("nowhere.j2")


def test_rendering_keeps_trailing_newline(secrets):
    for content in render.render_broker(dev(), dev().topology.brokers[0], secrets).values():
        assert content.endswith("\n") and not content.endswith("\n\n")


# --- Clients --------------------------------------------------------------------------------

CLIENT_DIR = Path("/home/user/out")


@pytest.mark.parametrize("auth, listener", [("scram", "sasl_ssl"), ("mtls", "ssl")])
def test_java_client_config(auth, listener):
    settings = prod()
    filename, text = render.render_client_config(
        settings, "java", auth, CLIENT_DIR, "admin", store_password="store-pw", scram_password="scram-pw"
    )
    assert filename == "client.properties"
    props = parse_properties(text)
    assert props["bootstrap.servers"] == ",".join(settings.topology.bootstrap(listener))
    assert props["ssl.truststore.type"] == "PKCS12"
    assert props["ssl.truststore.location"] == "/home/user/out/truststore.p12"
    assert props["ssl.truststore.password"] == "store-pw"
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    assert props["ssl.enabled.protocols"] == "TLSv1.3"
    if auth == "scram":
        assert props["security.protocol"] == "SASL_SSL"
        assert props["sasl.mechanism"] == "SCRAM-SHA-512"
        assert props["sasl.jaas.config"] == (
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="scram-pw";'
        )
        assert "ssl.keystore.location" not in props
    else:
        assert props["security.protocol"] == "SSL"
        assert props["ssl.keystore.type"] == "PKCS12"
        assert props["ssl.keystore.location"] == "/home/user/out/keystore.p12"
        assert props["ssl.keystore.password"] == props["ssl.key.password"] == "store-pw"
        assert "sasl.jaas.config" not in props


@pytest.mark.parametrize("auth, listener", [("scram", "sasl_ssl"), ("mtls", "ssl")])
def test_librdkafka_client_config(auth, listener):
    settings = dev()
    filename, text = render.render_client_config(
        settings, "librdkafka", auth, CLIENT_DIR, "alice", store_password="store-pw", scram_password="scram-pw"
    )
    assert filename == "librdkafka.conf"
    conf = parse_conf(text)
    assert conf["bootstrap.servers"] == ",".join(settings.topology.bootstrap(listener))
    assert conf["ssl.ca.location"] == "/home/user/out/ca.crt"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert "store-pw" not in text  # PEM files need no store password
    if auth == "scram":
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanisms"] == "SCRAM-SHA-512"
        assert (conf["sasl.username"], conf["sasl.password"]) == ("alice", "scram-pw")
    else:
        assert conf["security.protocol"] == "SSL"
        assert conf["ssl.certificate.location"] == "/home/user/out/client.crt"
        assert conf["ssl.key.location"] == "/home/user/out/client.key"
        assert "sasl.password" not in conf


@pytest.mark.parametrize("fmt", ["kafka-python", "aiokafka"])
@pytest.mark.parametrize("auth, listener", [("scram", "sasl_ssl"), ("mtls", "ssl")])
def test_python_client_configs_are_keyword_arguments(fmt, auth, listener):
    settings = dev()
    hostile = 'pa"ss\\word\n{}'  # quotes, a backslash, a line break: JSON escapes them all
    filename, text = render.render_client_config(
        settings, fmt, auth, CLIENT_DIR, "alice", store_password="store-pw", scram_password=hostile
    )
    assert filename == f"{fmt}.json"
    conf = json.loads(text)
    assert conf["bootstrap_servers"] == settings.topology.bootstrap(listener)
    assert "store-pw" not in text
    files = {"cafile": "/home/user/out/ca.crt"}
    if auth == "mtls":
        files.update(certfile="/home/user/out/client.crt", keyfile="/home/user/out/client.key")
    if fmt == "aiokafka":  # the arguments of aiokafka.helpers.create_ssl_context
        assert conf.pop("ssl_context") == files
    else:
        assert {k: conf.pop(f"ssl_{k}") for k in files} == files
        assert conf.pop("ssl_check_hostname") is True
    if auth == "scram":
        assert conf == {"bootstrap_servers": conf["bootstrap_servers"], "security_protocol": "SASL_SSL",
                        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", "sasl_plain_password": hostile}
    else:
        assert conf == {"bootstrap_servers": conf["bootstrap_servers"], "security_protocol": "SSL"}


@pytest.mark.parametrize("fmt, parse, tuning", [
    ("java", parse_properties, {"compression.type": "lz4", "linger.ms": "20", "batch.size": "262144"}),
    ("librdkafka", parse_conf, {"compression.type": "lz4", "linger.ms": "20", "batch.size": "1000000"}),
])
@pytest.mark.parametrize("producer_tuning", [True, False])
def test_java_and_librdkafka_configs_carry_the_producer_tuning_unless_opted_out(fmt, parse, tuning, producer_tuning):
    _, text = render.render_client_config(dev(), fmt, "scram", CLIENT_DIR, "alice", store_password="store-pw",
                                          scram_password="scram-pw", producer_tuning=producer_tuning)
    conf = parse(text)
    assert {key: conf.get(key) for key in tuning} == (tuning if producer_tuning else dict.fromkeys(tuning))
    assert conf["security.protocol"] == "SASL_SSL"  # the rest as before


def test_scram_client_config_needs_a_scram_password():
    with pytest.raises(SecureKafkaError, match="no SCRAM password"):
        render.render_client_config(dev(), "java", "scram", CLIENT_DIR, "bob", store_password="x")


def test_client_config_refuses_a_relative_directory():
    with pytest.raises(SecureKafkaError, match="relative"):
        render.render_client_config(dev(), "librdkafka", "mtls", Path("out"), "admin", store_password="x")


@pytest.mark.parametrize("fmt, auth", [("yaml", "scram"), ("java", "plain")])
def test_client_config_refuses_unknown_choices(fmt, auth):
    with pytest.raises(SecureKafkaError, match="unknown client"):
        render.render_client_config(dev(), fmt, auth, CLIENT_DIR, "admin", store_password="x", scram_password="y")


def test_librdkafka_value_with_line_break_is_refused():
    with pytest.raises(SecureKafkaError, match="line break"):
        render.render_client_config(
            dev(), "librdkafka", "scram", CLIENT_DIR, "admin", store_password="x", scram_password="a\nb"
        )


@pytest.mark.parametrize(
    "versions, protocol", [(("TLSv1.3", "TLSv1.2"), "TLSv1.3"), (("TLSv1.2",), "TLSv1.2")]
)
def test_ssl_protocol_is_the_highest_enabled_version(secrets, versions, protocol):
    settings = dataclasses.replace(dev(), tls_versions=versions)
    props = parse_properties(render.render_broker(settings, settings.topology.brokers[0], secrets)["server.properties"])
    assert props["ssl.protocol"] == protocol
    assert props["ssl.enabled.protocols"] == ",".join(sorted(versions))


def test_malformed_tls_version_names_the_setting(secrets):
    settings = dataclasses.replace(dev(), tls_versions=("TLS1.3",))
    with pytest.raises(SecureKafkaError, match="secure-kafka:tlsVersions"):
        render.render_broker(settings, settings.topology.brokers[0], secrets)
