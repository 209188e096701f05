"""The runtime image: one image for ZooKeeper and Kafka, built locally and reused.

Inputs are ``docker/`` (Dockerfile, launchers, the Maven POM that pins Kafka). Their
content hash is the image tag and a label, so the image is rebuilt only when an input
changes. Where the Debian base cannot be pulled (no Docker Hub here), it is made with
``debootstrap`` from the machine's own apt mirror and imported under the tag the Dockerfile
names, so the Dockerfile is the same everywhere.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import docker.errors

import docker

from .. import KAFKA_VERSION
from ..errors import SecureKafkaError
from ..proc import Progress, quiet, run_step

__all__ = [
    "inputs_hash",
    "image_tag",
    "debian_mirror",
    "ensure_base",
    "resolve_jars",
    "ensure_image",
    "run_in_image",
]

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
IMAGE_REPOSITORY = "secure-kafka-runtime"
BASE_IMAGE = "debian:bookworm-slim"
LABEL_INPUTS_HASH = "io.secure-kafka.inputs-hash"
# Left out of the imported base: caches and docs nobody in a container reads.
BASE_EXCLUDES = ("./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*", "./usr/share/doc/*",
                 "./usr/share/man/*", "./usr/share/locale/*", "./usr/share/info/*")


def inputs_hash(docker_dir: Path = DOCKER_DIR) -> str:
    """SHA-256 over the paths and contents of every file under ``docker/``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in docker_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(docker_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode())  # launchers must stay executable
    return digest.hexdigest()


def image_tag(docker_dir: Path = DOCKER_DIR) -> str:
    return f"{IMAGE_REPOSITORY}:{KAFKA_VERSION}-{inputs_hash(docker_dir)[:12]}"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``.sources`` or one-line format)."""
    for path in sorted(sources_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            if re.search(r"^Suites:.*(?<![\w-])bookworm(?![\w-])", stanza, re.M):
                if match := re.search(r"^URIs:\s*(\S+)", stanza, re.M):
                    return match.group(1)
    for path in [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == "bookworm":
                    return parts[1]
    raise SecureKafkaError(
        f"no Debian bookworm mirror in {sources_dir}/sources.list*: add one, or pull {BASE_IMAGE} yourself"
    )


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base(client: docker.DockerClient, progress: Progress = quiet) -> None:
    if _has_image(client, BASE_IMAGE):
        progress(f"base image {BASE_IMAGE}: present")
        return
    try:
        progress(f"base image {BASE_IMAGE}: pulling")
        client.images.pull(BASE_IMAGE)
        return
    except docker.errors.APIError as exc:
        progress(f"base image {BASE_IMAGE}: cannot pull ({exc.explanation or exc}); building it with debootstrap")
    if shutil.which("debootstrap") is None:
        raise SecureKafkaError("debootstrap is not installed: run `apt-get install debootstrap` (the setup does)")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="sk-rootfs-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        run_step("debootstrap", ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], progress)
        excludes = [f"--exclude={pattern}" for pattern in BASE_EXCLUDES]
        run_step("pack rootfs", ["tar", "-C", str(rootfs), *excludes, "-cf", str(tarball), "."], progress)
        progress(f"base image {BASE_IMAGE}: importing")
        repository, tag = BASE_IMAGE.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)


def resolve_jars(dest: Path, progress: Progress = quiet) -> None:
    """Copies Kafka, its tools, ZooKeeper and their runtime dependencies into ``dest``."""
    if shutil.which("mvn") is None:
        raise SecureKafkaError("Maven is not installed: run `apt-get install maven` (the setup does)")
    run_step(
        "maven",
        ["mvn", "-B", "-ntp", "-f", str(DOCKER_DIR / "kafka-deps" / "pom.xml"),
         "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={dest}"],
        progress,
    )
    if not any(dest.glob("kafka_2.13-*.jar")):
        raise SecureKafkaError(f"maven resolved no Kafka broker jar into {dest}: check docker/kafka-deps/pom.xml")


def ensure_image(client: docker.DockerClient, progress: Progress = quiet, rebuild: bool = False) -> str:
    """The runtime image's tag, built first if no image has the current inputs' hash."""
    tag = image_tag()
    if not rebuild and _has_image(client, tag):
        progress(f"runtime image {tag}: up to date, reused")
        return tag
    ensure_base(client, progress)
    with tempfile.TemporaryDirectory(prefix="sk-image-") as tmp:
        context = Path(tmp)
        shutil.copy2(DOCKER_DIR / "Dockerfile", context / "Dockerfile")
        shutil.copytree(DOCKER_DIR / "bin", context / "bin")
        resolve_jars(context / "libs", progress)
        progress(f"runtime image {tag}: building")
        last: list[str] = []
        try:
            for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                          labels={LABEL_INPUTS_HASH: inputs_hash()}):
                if line := (chunk.get("stream") or "").strip():
                    last = (last + [line])[-15:]
                    progress(f"  docker build: {line}")
                if "error" in chunk:
                    raise SecureKafkaError(f"docker build failed: {chunk['error'].strip()}; last output: {' | '.join(last)}")
        except docker.errors.APIError as exc:
            raise SecureKafkaError(f"docker build failed: {exc.explanation or exc}") from None
    progress(f"runtime image {tag}: built")
    return tag


def run_in_image(client: docker.DockerClient, tag: str, *argv: str) -> str:
    """Output of a one-off command in the image (``image info``, tests)."""
    try:
        return client.containers.run(tag, list(argv), remove=True, stderr=True).decode()
    except docker.errors.ContainerError as exc:
        raise SecureKafkaError(f"`{' '.join(argv)}` failed in {tag} (exit {exc.exit_status})") from None
