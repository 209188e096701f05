"""A benchmark's broker on another image: the environment's own plan, changed there only, applied
again by the Docker engine, which replaces the broker's container and keeps its volume (its
topics, SCRAM credentials and ACLs stay). A lever to measure (JDK 21) or a profiler's image."""

from __future__ import annotations

import dataclasses

from secure_kafka.dockerclient import connect
from secure_kafka.engines.docker_engine import DockerEngine


def runtime_tag(env) -> str:
    """The image the environment's broker runs now."""
    return connect().api.inspect_container(env.settings.topology.brokers[0].container)["Config"]["Image"]


def move_broker(env, image: str) -> None:
    """Replaces the environment's brokers with the same containers on ``image``."""
    plan = env.prepare(build_image=False)
    containers = tuple(dataclasses.replace(spec, image=image) if spec.role == "broker" else spec
                       for spec in plan.containers)
    DockerEngine(connect(), env.project.root, env.progress).apply(dataclasses.replace(plan, containers=containers))
