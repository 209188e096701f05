"""ZooKeeper refuses clients without SASL credentials, even with a valid TLS certificate.

The probe is ZooKeeper's own shell, run in a one-off container on the environment's network
with a broker's TLS stores. The control run adds the brokers' SASL login and must succeed,
so the refusals cannot pass because the probe is broken.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from secure_kafka import secretstore
from secure_kafka.topology import ZK_SECURE_CLIENT_PORT


def zookeeper_shell(env, runtime_image, probe_dir, *command, tls=True, sasl=False) -> str:
    broker = env.settings.topology.brokers[0]
    password = env.secrets.get(secretstore.store_password_name(broker.name))
    lines = [f"zookeeper.sasl.client={'true' if sasl else 'false'}"]
    if tls:
        lines += [
            "zookeeper.client.secure=true",
            "zookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
            "zookeeper.ssl.keyStore.location=/etc/kafka/tls/keystore.p12",
            f"zookeeper.ssl.keyStore.password={password}",
            "zookeeper.ssl.keyStore.type=PKCS12",
            "zookeeper.ssl.trustStore.location=/etc/kafka/tls/truststore.p12",
            f"zookeeper.ssl.trustStore.password={password}",
            "zookeeper.ssl.trustStore.type=PKCS12",
        ]
    (probe_dir / "client.properties").write_text("\n".join(lines) + "\n")
    jaas = ('Client { org.apache.zookeeper.server.auth.DigestLoginModule required username="kafka" '
            f'password="{env.secrets.get(secretstore.ZOOKEEPER_SASL)}"; }};\n')
    (probe_dir / "jaas.conf").write_text(jaas)
    for path in (probe_dir, *probe_dir.iterdir()):
        os.chown(path, 10001, 10001)
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    jvm = "-Xmx128m" + (" -Djava.security.auth.login.config=/probe/jaas.conf" if sasl else "")
    zk = env.settings.topology.zookeepers[0]
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", env.settings.topology.network, "--user", "10001:10001",
         "-e", f"JVM_OPTS={jvm}", "-v", f"{probe_dir}:/probe:ro",
         "-v", f"{env.certs.node_dir(broker.name)}:/etc/kafka/tls:ro", runtime_image,
         "timeout", "40", "zookeeper-shell", "-server", f"{zk.name}:{ZK_SECURE_CLIENT_PORT}",
         "-client-configuration", "/probe/client.properties", *command],
        capture_output=True, text=True, timeout=120,
    )
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("command, expected", [(("ls", "/brokers/ids"), "[0]"),
                                               (("get", "/config/users/admin"), "SCRAM-SHA-512")],
                         ids=["read", "read-scram"])
def test_control_brokers_sasl_identity_reads_znodes(dev_env, runtime_image, tmp_path, command, expected):
    out = zookeeper_shell(dev_env, runtime_image, tmp_path, *command, sasl=True)
    assert expected in out, out[-1500:]


@pytest.mark.parametrize("command", [("get", "/config/users/admin"), ("ls", "/brokers/ids"),
                                     ("create", "/intruder", "x")], ids=["read-scram", "read", "write"])
def test_tls_client_without_sasl_is_refused(dev_env, runtime_image, tmp_path, command):
    out = zookeeper_shell(dev_env, runtime_image, tmp_path, *command, sasl=False)
    assert "client failed to authenticate" in out, out[-1500:]
    assert "[0]" not in out and "Created /intruder" not in out and "SCRAM-SHA-512" not in out, out[-1500:]


def test_plaintext_client_is_refused(dev_env, runtime_image, tmp_path):
    out = zookeeper_shell(dev_env, runtime_image, tmp_path, "ls", "/brokers/ids", tls=False, sasl=True)
    assert "ConnectionLoss" in out and "[0]" not in out, out[-1500:]
