"""Integration fixtures: the Docker engine and the runtime image, owned for the session.

Nothing here skips for want of Docker: `./run test` installs and starts the engine, and a
test run without it must fail loudly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from pathlib import Path

import docker
import pytest

from secure_kafka import image as image_builder
from secure_kafka import settings as sk_settings
from secure_kafka.dockerclient import connect
from secure_kafka.environment import Environment
from secure_kafka.profiles import get_profile
from secure_kafka.settings import Project

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
    """Tag of the runtime image, built first if its inputs changed."""
    return image_builder.ensure_image(docker_client, print)


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


def free_port_base() -> int:
    """A port base whose 100 ports are all free on 127.0.0.1 (environments publish there)."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 60000, 100)
        try:
            for port in range(base, base + 100):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of 100 ports on 127.0.0.1")


@contextlib.contextmanager
def running_environment(root: Path, profile: str = "dev", **overrides):
    """A real environment in a fresh project dir, up and verified; purged afterwards, also on failure."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
    name = f"t{uuid.uuid4().hex[:6]}"
    settings = dataclasses.replace(
        sk_settings.defaults(name, get_profile(profile), port_base=free_port_base()), **overrides
    )
    project = Project(root)
    project.write(settings)
    env = Environment(project, name, progress=print)
    try:
        env.up()
        yield env
    finally:
        env.down(purge=True)


@pytest.fixture(scope="session")
def dev_env(runtime_image, tmp_path_factory):
    """The shared dev-shaped environment (1 ZooKeeper + 1 broker). Tests must not break it."""
    with running_environment(tmp_path_factory.mktemp("dev-project")) as env:
        yield env
