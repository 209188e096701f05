"""A benchmark's broker changed where a dynamic config cannot reach: another image (JDK 21, a
profiler's) or static ``server.properties`` keys (socket buffers). The environment's own plan,
changed there only, applied again by the Docker engine, which replaces the broker's container
and keeps its volume (its topics, SCRAM credentials and ACLs stay)."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

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


def variant_image(api, tag: str, dockerfile: str, files: dict[str, Path]) -> str:
    """Image ``tag`` built once from ``dockerfile`` (its ``FROM`` a runtime image), with
    ``files`` (name in the build context -> path here) beside it."""
    if api.images(name=tag):
        return tag
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
        for name, path in files.items():
            tar.add(str(path), arcname=name)
    context.seek(0)
    for chunk in api.build(fileobj=context, custom_context=True, tag=tag, rm=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"building {tag}: {chunk['error'].strip()}")
    return tag


def from_maven(artifact: str, cache: Path, member: str | None = None) -> Path:
    """A Maven artifact's jar (or, with ``member``, that file inside it), fetched once with
    Maven (like the image's jars) into ``cache``; the jar is fetched once for all its members."""
    jar = cache / f"{artifact.split(':')[1]}.jar"
    target = cache / Path(member).name if member else jar
    if target.exists():
        return target
    if not jar.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["mvn", "-B", "-q", "-ntp", "dependency:copy", f"-Dartifact={artifact}",
                            f"-DoutputDirectory={tmp}"], check=True, timeout=600)
            partial = jar.with_suffix(".part")
            shutil.move(next(Path(tmp).glob("*.jar")), partial)  # the cache may be on another filesystem
            partial.rename(jar)
    if member:
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(jar) as archive:
            partial.write_bytes(archive.read(member))
        partial.rename(target)
    return target


def collector_image(api, runtime_tag: str, collector: str) -> str:
    """``runtime_tag`` with every JVM on another garbage collector (``ParallelGC``, ``SerialGC``):
    the image's launcher names G1, and a second collector option would conflict with it."""
    dockerfile = (f"FROM {runtime_tag}\nUSER root\n"
                  f"RUN sed -i 's/-XX:+UseG1GC/-XX:+Use{collector}/' /opt/kafka/bin/kafka-run-class "
                  f"&& grep -q -- '-XX:+Use{collector}' /opt/kafka/bin/kafka-run-class\nUSER 10001:10001\n")
    return variant_image(api, f"{runtime_tag}-{collector.lower()}", dockerfile, {})
