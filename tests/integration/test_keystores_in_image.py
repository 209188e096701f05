"""The runtime image's own JRE reads every generated store, as the container user, through the mounts.

This is what a broker or ZooKeeper node does at start: ``keytool -list`` with the image's Java
proves the PKCS12 algorithms, the trusted-certificate attribute and the file ownership all work
for uid 10001 with the node directory mounted read-only at ``/etc/kafka/tls``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from secure_kafka.model import profiles, settings
from secure_kafka.pki import certstore
from secure_kafka.pki.certstore import CertStore

pytestmark = pytest.mark.integration


@pytest.fixture
def prod_pki(tmp_path, monkeypatch) -> CertStore:
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, "integration test passphrase")
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    store = CertStore(settings.Project(tmp_path), settings.defaults("prod", profiles.PROD))
    store.init()
    return store


def password_dir(tmp_path: Path, name: str, password: str) -> Path:
    """A directory holding only the store password, readable by the container user.

    ``-storepass:file`` keeps the password off the command line and out of the
    container's environment (both visible in ``docker inspect`` and ``ps``).
    """
    directory = tmp_path / f"password-{name}"
    directory.mkdir(mode=0o700)
    (directory / "password").write_text(password)
    os.chmod(directory / "password", 0o400)
    if os.geteuid() == 0:
        for path in (directory, directory / "password"):
            os.chown(path, certstore.CONTAINER_UID, certstore.CONTAINER_UID)
    return directory


def keytool_in_image(docker_client, image: str, labels: dict, tls_dir: Path, secret_dir: Path, store: str) -> str:
    output = docker_client.containers.run(
        image,
        ["keytool", "-list", "-v", "-keystore", f"/etc/kafka/tls/{store}", "-storetype", "PKCS12",
         "-storepass:file", "/run/secret/password"],
        user=f"{certstore.CONTAINER_UID}:{certstore.CONTAINER_UID}",
        volumes={
            str(tls_dir): {"bind": "/etc/kafka/tls", "mode": "ro"},
            str(secret_dir): {"bind": "/run/secret", "mode": "ro"},
        },
        network_mode="none",
        labels=labels,
        remove=True,
    )
    return output.decode()


def test_every_node_store_loads_in_the_runtime_image(prod_pki, docker_client, runtime_image, session_label, tmp_path):
    for node in prod_pki.settings.topology.nodes:
        stores = prod_pki.node_stores(node.name)
        secret_dir = password_dir(tmp_path, node.name, stores.password)
        tls_dir = prod_pki.node_dir(node.name)
        keystore = keytool_in_image(docker_client, runtime_image, session_label, tls_dir, secret_dir, "keystore.p12")
        assert f"Alias name: {node.name}" in keystore
        assert "Entry type: PrivateKeyEntry" in keystore
        assert "Certificate chain length: 2" in keystore
        truststore = keytool_in_image(docker_client, runtime_image, session_label, tls_dir, secret_dir, "truststore.p12")
        assert "Entry type: trustedCertEntry" in truststore
        assert "Owner: CN=secure-kafka-prod-ca, OU=ca, O=secure-kafka, L=prod" in truststore
