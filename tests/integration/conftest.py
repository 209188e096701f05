"""Integration fixtures: the Docker engine and the runtime image, owned for the session.

Nothing here skips for want of Docker: `./run test` installs and starts the engine, and a
test run without it must fail loudly.
"""

from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from tls_server import serve_tls

import docker
from secure_kafka.build import image as image_builder
from secure_kafka.dockerclient import connect
from secure_kafka.model.topology import METADATA_MODES
from secure_kafka.pki import CA
from secure_kafka.testing import running_environment

# Every object a test creates carries this label, so a session can sweep up after itself.
TEST_LABEL = "io.secure-kafka.test-session"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return connect()


@pytest.fixture(scope="session")
def runtime_image(docker_client) -> str:
    """Tag of ZooKeeper mode's runtime image, built first if its inputs changed."""
    return image_builder.ensure_image(docker_client, print)


@pytest.fixture(scope="session", params=METADATA_MODES)
def metadata_mode(request) -> str:
    """Each metadata mode in turn: the suites that take it run against ZooKeeper and KRaft
    environments alike. A module about one mode only narrows it with
    ``pytest.mark.parametrize("metadata_mode", [ZOOKEEPER], indirect=True)``."""
    return request.param


@pytest.fixture(scope="session")
def mode_image(docker_client, metadata_mode) -> str:
    """Tag of the runtime image of ``metadata_mode`` (Kafka 3.9 or 4.4), its tools included."""
    return image_builder.ensure_image(docker_client, print, mode=metadata_mode)


@pytest.fixture(scope="session")
def session_label(docker_client):
    """A label value unique to this test session; everything labelled with it is removed at the end."""
    value = uuid.uuid4().hex[:12]
    yield {TEST_LABEL: value}
    api = docker_client.api
    filters = {"label": [f"{TEST_LABEL}={value}"]}
    for c in api.containers(all=True, filters=filters):
        api.remove_container(c["Id"], force=True)
    for n in api.networks(filters=filters):
        api.remove_network(n["Id"])
    for v in api.volumes(filters=filters).get("Volumes") or []:
        api.remove_volume(v["Name"], force=True)


@pytest.fixture(scope="session")
def dev_env(metadata_mode, mode_image, tmp_path_factory):
    """The shared dev-shaped environment of each mode (1 ZooKeeper node or KRaft controller,
    1 broker); one runs at a time. Tests must not break it."""
    with running_environment(tmp_path_factory.mktemp(f"dev-{metadata_mode}-project"), metadata_mode=metadata_mode) as env:
        yield env


@pytest.fixture
def weak_tls_server(tmp_path):
    """Starts deliberately weak TLS servers on loopback (``start(version, ciphers) -> port``):
    they prove that a legacy-TLS or weak-cipher probe succeeds where the server allows it."""
    ca = CA.create("weak-ca", "rsa-3072", 30, env="weak")
    cert = ca.issue_cert("localhost", kind="broker", sans=["localhost", "127.0.0.1"], validity_days=7,
                         key_algorithm="rsa-3072", server=True, client=False)
    pem = cert.write_pem(tmp_path, "server")
    listeners: list[socket.socket] = []

    def start(version: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pem.cert), str(pem.key))
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers(ciphers)
        listener = serve_tls(ctx)
        listeners.append(listener)
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()
