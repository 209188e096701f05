"""Revocation on a real cluster: the certificates of a removed user and of a leaked key are
refused by every broker, and a re-added name does not re-arm its old certificate. In
ZooKeeper mode, ZooKeeper refuses an application's certificate from the start.

Before revocation, each "refused" below was "accepted": `users remove` left the client
certificate valid until it expired, and a second `users add` of the name kept its old key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from cryptography import x509

from secure_kafka.model.topology import ZK_SECURE_CLIENT_PORT, ZOOKEEPER
from secure_kafka.ops import clients, users
from secure_kafka.verify import probes
from secure_kafka.verify.target import node_pem

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "secure-kafka"


def accepted(env, client_dir: Path) -> bool:
    """Whether every broker completes mTLS with the certificate in ``client_dir`` and answers a request."""
    conf = {**clients.mtls_config(env.settings, client_dir), "log_level": 0}
    for address in env.settings.topology.bootstrap("ssl"):
        try:
            AdminClient({**conf, "bootstrap.servers": address}).list_topics(timeout=5)
        except KafkaException:
            return False
    return True


def zookeeper_answers(env, docker_client, cert: tuple[Path, Path]) -> bool:
    """Whether every ZooKeeper node completes TLS with the certificate and answers ``srvr``."""
    network = env.settings.topology.network
    for zk in env.settings.topology.zookeepers:
        ip = docker_client.api.inspect_container(zk.container)["NetworkSettings"]["Networks"][network]["IPAddress"]
        if probes.zookeeper_four_letter_word(ip, ZK_SECURE_CLIENT_PORT, "srvr", cert) is None:
            return False
    return True


def serial(client_dir: Path) -> str:
    return format(x509.load_pem_x509_certificate((client_dir / "client.crt").read_bytes()).serial_number, "x")


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SECURE_KAFKA_PROJECT": str(env.project.root)})


def test_removed_and_leaked_certificates_are_refused_and_a_re_added_name_gets_a_new_one(dev_env, docker_client, tmp_path):
    zookeeper_mode = dev_env.settings.metadata_mode == ZOOKEEPER
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    users.add(dev_env, name)
    first = tmp_path / "kept-by-the-first-holder"
    shutil.copytree(dev_env.certs.client_dir(name), first)
    assert accepted(dev_env, first)  # control: the certificate works before it is revoked
    if zookeeper_mode:  # the audit finding: any certificate of the environment got srvr answered
        broker = dev_env.settings.topology.brokers[0].name
        assert zookeeper_answers(dev_env, docker_client, node_pem(dev_env.certs, broker, tmp_path))  # control
        assert not zookeeper_answers(dev_env, docker_client, (first / "client.crt", first / "client.key"))

    # `users remove` returns once every broker refuses the certificate (it checks on its own).
    result = users.remove(dev_env, name)
    assert result.certificate == "revoked" and result.files

    # The audit finding: the same name added again used to hand back the first certificate.
    users.add(dev_env, name)
    try:
        current = dev_env.certs.client_dir(name)
        assert serial(current) != serial(first)
        assert accepted(dev_env, current)
        assert not accepted(dev_env, first)

        # A leaked key: revoked, and a new certificate of the same principal beside it.
        leaked = tmp_path / "leaked"
        shutil.copytree(current, leaked)
        done = cli(dev_env, "certs", "revoke", dev_env.env, "--client", name, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["revoked_serial"] == serial(leaked) and report["new_serial"] == serial(current) != serial(leaked)
        assert accepted(dev_env, current)
        assert not accepted(dev_env, leaked)

        listed = cli(dev_env, "certs", "list", dev_env.env, "--json")
        assert listed.returncode == 0, listed.stderr[-2000:]
        document = json.loads(listed.stdout)
        assert document["revocation_checked"] is True
        assert {serial(first), serial(leaked)} <= {r["serial"] for r in document["revoked"]}
        assert serial(current) in {r["serial"] for r in document["certificates"]}
    finally:
        users.remove(dev_env, name, delete_files=True, prove_revoked=False)
    assert not dev_env.certs.archived_client_dir(dev_env.certs.latest_revoked(name)).exists()
