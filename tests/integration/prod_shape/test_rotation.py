"""`certs rotate` on the prod shape (3 ZooKeeper nodes or KRaft controllers + 3 brokers, RF 3,
min ISR 2), for real, in each metadata mode.

The package's environment of each mode (conftest.py); the tests run in file order and each
leaves the cluster healthy for the next. While certificates rotate, an
idempotent acks=all producer and a consumer run non-stop (tests/steady_traffic.py): every
record sent is acknowledged and consumed exactly once, and no send failed.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from interruption import Killed, kill_at
from steady_traffic import SteadyTraffic
from tls_endpoints import client_certs, tls_endpoints

from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import kafka_admin, rotation
from secure_kafka.verify import probes

PARTITIONS = 3
pytestmark = pytest.mark.rotation_roll


@pytest.fixture(scope="module")
def topic(prod_env):
    admin = kafka_admin.wait_for_admin(prod_env.admin_mtls_config(), 3)
    name = f"rotation-{uuid.uuid4().hex[:6]}"
    kafka_admin.ensure_topic(admin, name, replication_factor=3, partitions=PARTITIONS)
    return name


def traffic(env, topic: str) -> SteadyTraffic:
    """Producer and consumer over SCRAM: no client certificate of the CA being dropped."""
    return SteadyTraffic(env.scram_config(ADMIN), env.scram_config(ADMIN), topic, PARTITIONS)


def presented(env, docker_client, ca_file: Path) -> dict[str, probes.HandshakeResult]:
    """A verified TLS handshake, with a certificate each accepts, with every TLS listener of every node."""
    endpoints = tls_endpoints(env, docker_client)
    with tempfile.TemporaryDirectory() as directory:
        certs = client_certs(env, endpoints, Path(directory))
        return {e.name: probes.tls_handshake(e.ip, e.port, ca_file, e.server_name, client_cert=certs[e.name])
                for e in endpoints}


def active_serials(env) -> dict[str, int]:
    return {r.name: int(r.serial, 16) for r in env.certs.list()}


def assert_presenting(results, serials):
    for where, result in results.items():
        assert result.ok, f"{where}: {result.detail}"
        node = where.split("/")[0]
        assert result.peer_serial == serials[node], f"{where} presents {result.peer_serial:x}, expected {serials[node]:x}"


def test_refuses_while_a_node_is_down(prod_env, docker_client):
    node = prod_env.settings.topology.quorum[-1]
    docker_client.api.stop(node.container, timeout=30)
    try:
        with pytest.raises(SecureKafkaError, match=rf"refusing to rotate .* while {node.name} is exited"):
            rotation.rotate_leaves(prod_env, progress=print)
        assert not (prod_env.certs.root / "rotation" / "state.json").exists()
    finally:
        # Starts it and waits until it serves again (a `docker start` first would only make the
        # restart stop a JVM in the middle of its start-up: a minute here).
        rotation.DockerCluster(prod_env, print).restart(node)


def test_abort_mid_roll_returns_the_cluster_to_the_old_leaves(prod_env, docker_client):
    ca = prod_env.certs.ca_cert_path
    before = active_serials(prod_env)
    assert_presenting(presented(prod_env, docker_client, ca), before)
    with pytest.raises(Killed):
        # Killed while rolling the second quorum node (zk-1 or controller-1).
        rotation.rotate_leaves(prod_env, progress=print,
                               hook=kill_at(f"new-leaves:roll:{prod_env.settings.topology.quorum[1].name}"))
    # Brokers reloaded before the roll: their listeners already present the new leaves.
    mid = presented(prod_env, docker_client, ca)
    assert mid["kafka-0/SSL_EXT"].ok and mid["kafka-0/SSL_EXT"].peer_serial != before["kafka-0"]
    report = rotation.abort(prod_env, progress=print)
    assert report.outcome == "aborted" and report.phases == ["restore-old-leaves"]
    assert active_serials(prod_env) == before
    assert_presenting(presented(prod_env, docker_client, ca), before)
    assert prod_env.certs.verify() == []


def test_ca_rotation_killed_and_resumed_loses_no_record_and_ends_trust_in_the_old_ca(prod_env, docker_client, topic, tmp_path):
    """A CA rotation walks every phase a leaf rotation does (new leaves for every node and
    client, reloaded, then rolled) between trusting both CAs and dropping the old one, so the
    kill in its new-leaves roll also proves what a killed and resumed leaf rotation must: every
    record once, every listener on its new leaf. One test for both: each roll costs minutes."""
    old_ca = tmp_path / "old-ca.crt"
    old_ca.write_bytes(prod_env.certs.ca_cert_path.read_bytes())
    before = active_serials(prod_env)
    # Clients load their CA bundle at start: one producer until both CAs are trusted ...
    with traffic(prod_env, topic) as first:
        paused = rotation.rotate_ca(prod_env, pause_after_trust=True, progress=print)
    assert paused.outcome == "paused"
    first.outcome().assert_every_record_once()
    bundle = (prod_env.certs.client_dir(ADMIN) / "ca.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 2
    # ... and one restarted with the two-CA bundle for the rest.
    with traffic(prod_env, topic) as second:
        # Killed as it was about to restart kafka-1 with its new leaf; the next run finds kafka-1
        # in an unknown state, rolls it again and goes on.
        with pytest.raises(Killed):
            rotation.resume(prod_env, progress=print, hook=kill_at("new-leaves:roll:kafka-1"))
        report = rotation.resume(prod_env, progress=print)
    assert report.outcome == "done" and report.phases == ["new-leaves", "drop-old-ca"]
    second.outcome().assert_every_record_once()
    after = active_serials(prod_env)
    assert all(after[name] != before[name] for name in before), "a certificate was not re-issued"

    new_ca = prod_env.certs.ca_cert_path
    assert new_ca.read_bytes() != old_ca.read_bytes()
    assert_presenting(presented(prod_env, docker_client, new_ca), active_serials(prod_env))
    # A client trusting only the old CA is refused by every listener; the control above passed.
    for where, result in presented(prod_env, docker_client, old_ca).items():
        assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in result.detail, f"{where}: {result.detail}"
    assert prod_env.certs.verify() == []
    assert kafka_admin.round_trip(prod_env.scram_config(ADMIN), prod_env.admin_mtls_config(), kafka_admin.VERIFY_TOPIC) < 60
    # Nothing is due for years, so the cron form does nothing.
    assert rotation.rotate_if_due(prod_env, rotation.parse_duration("30d")).outcome == "nothing-due"
