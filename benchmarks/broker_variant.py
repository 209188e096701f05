"""A benchmark's broker changed where a dynamic config cannot reach: another image (JDK 21, a
profiler's) or static ``server.properties`` keys (socket buffers). The environment's own plan,
changed there only, applied again by the Docker engine, which replaces the broker's container
and keeps its volume (its topics, SCRAM credentials and ACLs stay)."""

from __future__ import annotations

import dataclasses

from secure_kafka.build.plan import ContainerSpec
from secure_kafka.dockerclient import connect
from secure_kafka.engines.docker_engine import DockerEngine


def runtime_tag(env) -> str:
    """The image the environment's broker runs now."""
    return connect().api.inspect_container(env.settings.topology.brokers[0].container)["Config"]["Image"]


def changed_broker(spec: ContainerSpec, image: str, properties: dict[str, str]) -> ContainerSpec:
    """``spec`` on ``image``, its ``server.properties`` with ``properties`` set (last one wins)."""
    extra = "".join(f"{key}={value}\n" for key, value in properties.items())
    files = tuple(dataclasses.replace(f, content=f.content.rstrip("\n") + "\n" + extra)
                  if extra and f.path.endswith("/server.properties") else f for f in spec.files)
    return dataclasses.replace(spec, image=image, files=files)


def move_broker(env, image: str, properties: dict[str, str] | None = None) -> None:
    """Replaces the environment's brokers with the same containers on ``image``, with
    ``properties`` added to their ``server.properties``."""
    plan = env.prepare(build_image=False)
    containers = tuple(changed_broker(spec, image, properties or {}) if spec.role == "broker" else spec
                       for spec in plan.containers)
    DockerEngine(connect(), env.project.root, env.progress).apply(dataclasses.replace(plan, containers=containers))
