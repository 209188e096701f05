"""ZooKeeper refuses clients without SASL credentials, even with a valid TLS certificate.

The probe is ZooKeeper's own shell, run in a one-off container on the environment's network
with a broker's TLS stores. The control run adds the brokers' SASL login and must succeed,
so the refusals cannot pass because the probe is broken.
"""

from __future__ import annotations

import pytest

from secure_kafka.model.topology import ZK_SECURE_CLIENT_PORT, ZOOKEEPER
from secure_kafka.pki import secretstore
from secure_kafka.verify import probes

# ZooKeeper mode only: a KRaft environment has no ZooKeeper (its controllers' refusals are
# test_verify's and the verify probes').
pytestmark = pytest.mark.parametrize("metadata_mode", [ZOOKEEPER], indirect=True)


def zookeeper_shell(env, runtime_image, probe_dir, *command, tls=True, sasl=False) -> str:
    """The library's ZooKeeper shell probe (secure_kafka.verify.probes), with a broker's TLS stores."""
    broker = env.settings.topology.brokers[0]
    zk = env.settings.topology.zookeepers[0]
    return probes.zookeeper_shell(
        runtime_image, env.settings.topology.network, f"{zk.name}:{ZK_SECURE_CLIENT_PORT}",
        env.certs.node_dir(broker.name), env.secrets.get(secretstore.store_password_name(broker.name)), probe_dir,
        *command, tls=tls, sasl_password=env.secrets.get(secretstore.ZOOKEEPER_SASL) if sasl else None,
    )


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
