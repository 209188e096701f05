"""The connection to the Docker engine."""

from __future__ import annotations

import docker.errors

import docker

from .errors import SecureKafkaError

__all__ = ["connect"]


def connect() -> docker.DockerClient:
    """A client for the local engine; a clear error when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise SecureKafkaError(
            f"Docker engine not reachable ({exc.__class__.__name__}): start dockerd, e.g. `./run setup` as root"
        ) from None
