"""The runtime images: one per metadata mode's Kafka line, built locally and reused.

ZooKeeper mode runs Kafka 3.9 and ZooKeeper from one image, KRaft mode Kafka 4.4. A line's
inputs are ``docker/Dockerfile``, the launchers of ``docker/bin`` and its own directory
``docker/kafka-<line>/`` (the Maven POM that pins its jars, the launchers that differ, and
Java sources of its own, compiled against those jars into ``libs/secure-kafka.jar``).
Their content hash is the image tag and a label, so an image is rebuilt only when one of
its inputs changes. Where the Debian base cannot be pulled (no Docker Hub here), it is made with
``debootstrap`` from the machine's own apt mirror and imported under the tag the Dockerfile
names, so the Dockerfile is the same everywhere.

An image carries JDK 17 (Debian bookworm's). JDK 21 (trixie's) can be built beside it, under a
tag of its own, for the benchmarks to measure (``--jdk 21``); nothing deploys it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import docker.errors

import docker

from ..errors import SecureKafkaError
from ..model.topology import KAFKA_VERSIONS, ZOOKEEPER
from ..proc import Progress, quiet, run_step

__all__ = [
    "line_dir",
    "build_inputs",
    "inputs_hash",
    "image_tag",
    "base_image",
    "debian_mirror",
    "ensure_base",
    "resolve_jars",
    "java_sources",
    "compile_java",
    "ensure_image",
    "run_in_image",
]

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
IMAGE_REPOSITORY = "secure-kafka-runtime"
DEFAULT_JDK = 17
JDK_SUITES = {17: "bookworm", 21: "trixie"}  # JDK -> the Debian suite that ships it
BASE_IMAGE = "debian:bookworm-slim"  # DEFAULT_JDK's
LABEL_INPUTS_HASH = "io.secure-kafka.inputs-hash"
# Left out of the imported base: caches and docs nobody in a container reads.
BASE_EXCLUDES = ("./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*", "./usr/share/doc/*",
                 "./usr/share/man/*", "./usr/share/locale/*", "./usr/share/info/*")


def line_dir(mode: str = ZOOKEEPER) -> Path:
    """``docker/kafka-<major.minor>``: what is a metadata mode's Kafka line's own."""
    return DOCKER_DIR / f"kafka-{'.'.join(KAFKA_VERSIONS[mode].split('.')[:2])}"


def build_inputs(mode: str) -> list[tuple[str, Path]]:
    """``(path in the build context, file)`` of every input, the line's launchers over the common ones."""
    files = {"Dockerfile": DOCKER_DIR / "Dockerfile"}
    for base in (DOCKER_DIR, line_dir(mode)):
        for path in sorted((base / "bin").glob("*")):
            files[f"bin/{path.name}"] = path
    files["pom.xml"] = line_dir(mode) / "pom.xml"
    for path in java_sources(mode):
        files[str(path.relative_to(DOCKER_DIR))] = path
    return sorted(files.items())


def java_sources(mode: str) -> list[Path]:
    """The Java of a mode's image: what every line runs (``docker/java``), then the line's own."""
    return [path for base in (DOCKER_DIR, line_dir(mode)) for path in sorted((base / "java").rglob("*.java"))]


def inputs_hash(mode: str = ZOOKEEPER) -> str:
    """SHA-256 over the context paths and contents of a mode's image inputs."""
    digest = hashlib.sha256()
    for name, path in build_inputs(mode):
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode())  # launchers must stay executable
    return digest.hexdigest()


def image_tag(mode: str = ZOOKEEPER, jdk: int = DEFAULT_JDK) -> str:
    suffix = "" if jdk == DEFAULT_JDK else f"-jdk{jdk}"
    return f"{IMAGE_REPOSITORY}:{KAFKA_VERSIONS[mode]}-{inputs_hash(mode)[:12]}{suffix}"


def base_image(jdk: int = DEFAULT_JDK) -> str:
    """The Debian image a runtime image with ``jdk`` starts from (the Dockerfile's FROM)."""
    if jdk not in JDK_SUITES:
        raise SecureKafkaError(f"no runtime image with JDK {jdk}: choose one of {', '.join(map(str, JDK_SUITES))}")
    return f"debian:{JDK_SUITES[jdk]}-slim"


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


def ensure_base(client: docker.DockerClient, progress: Progress = quiet, jdk: int = DEFAULT_JDK) -> None:
    base = base_image(jdk)
    if _has_image(client, base):
        progress(f"base image {base}: present")
        return
    try:
        progress(f"base image {base}: pulling")
        client.images.pull(base)
        return
    except docker.errors.APIError as exc:
        progress(f"base image {base}: cannot pull ({exc.explanation or exc}); building it with debootstrap")
    if shutil.which("debootstrap") is None:
        raise SecureKafkaError("debootstrap is not installed: run `apt-get install debootstrap` (the setup does)")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="sk-rootfs-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        # The mirror that serves bookworm serves every suite.
        run_step("debootstrap", ["debootstrap", "--variant=minbase", JDK_SUITES[jdk], str(rootfs), mirror], progress)
        excludes = [f"--exclude={pattern}" for pattern in BASE_EXCLUDES]
        run_step("pack rootfs", ["tar", "-C", str(rootfs), *excludes, "-cf", str(tarball), "."], progress)
        progress(f"base image {base}: importing")
        repository, tag = base.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)


def resolve_jars(pom: Path, dest: Path, progress: Progress = quiet) -> None:
    """Copies the jars ``pom`` pins (Kafka, its tools, ZooKeeper in 3.9, logging) into ``dest``."""
    if shutil.which("mvn") is None:
        raise SecureKafkaError("Maven is not installed: run `apt-get install maven` (the setup does)")
    # --strict-checksums: a jar whose checksum does not match the repository's fails the build.
    run_step(
        "maven",
        ["mvn", "-B", "-ntp", "--strict-checksums", "-f", str(pom),
         "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={dest}"],
        progress,
    )
    if not any(dest.glob("kafka_2.13-*.jar")):
        raise SecureKafkaError(f"maven resolved no Kafka broker jar into {dest}: check {pom}")


def compile_java(sources: list[Path], libs: Path, classes: Path, progress: Progress = quiet) -> None:
    """Compiles Java sources (if any) against a line's jars into ``libs/secure-kafka.jar``."""
    files = [str(p) for p in sources]
    if not files:
        return
    for tool in ("javac", "jar"):
        if shutil.which(tool) is None:
            raise SecureKafkaError(f"{tool} is not installed: run `apt-get install openjdk-17-jdk-headless` (the setup does)")
    # --release 17: the image runs Java 17, whatever JDK compiles.
    run_step("javac", ["javac", "--release", "17", "-Xlint:all", "-Werror", "-cp", f"{libs}/*", "-d", str(classes), *files],
             progress)
    run_step("jar", ["jar", "--create", "--file", str(libs / "secure-kafka.jar"), "-C", str(classes), "."], progress)


def ensure_image(
    client: docker.DockerClient, progress: Progress = quiet, rebuild: bool = False, mode: str = ZOOKEEPER,
    jdk: int = DEFAULT_JDK,
) -> str:
    """The tag of ``mode``'s runtime image with ``jdk``, built first if no image has its inputs' hash."""
    tag = image_tag(mode, jdk)
    if not rebuild and _has_image(client, tag):
        progress(f"runtime image {tag}: up to date, reused")
        return tag
    ensure_base(client, progress, jdk)
    with tempfile.TemporaryDirectory(prefix="sk-image-") as tmp:
        context = Path(tmp)
        (context / "bin").mkdir()
        for name, path in build_inputs(mode):
            if name.startswith("bin/") or name == "Dockerfile":
                shutil.copy2(path, context / name)
        resolve_jars(line_dir(mode) / "pom.xml", context / "libs", progress)
        compile_java(java_sources(mode), context / "libs", Path(tmp) / "classes", progress)
        progress(f"runtime image {tag}: building")
        last: list[str] = []
        try:
            for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                          buildargs={"DEBIAN_SUITE": JDK_SUITES[jdk], "JDK": str(jdk)},
                                          labels={LABEL_INPUTS_HASH: inputs_hash(mode)}):
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
