"""``build_plan``: an environment's settings and secrets → its ``ClusterPlan``.

Pure: it renders every node's files into the plan and decides containers, mounts, ports
and limits, but touches neither Docker nor the disk (secrets are read through the
``SecretStore``, which creates a missing one on first use). Secrets appear only in the
content of ``RenderedFile``s, never in commands, environment or labels.
"""

from __future__ import annotations

from pathlib import Path

from ..model.settings import Settings
from ..model.topology import (
    BROKER_INTERNAL_PORT,
    CONTAINER_UID,
    CONTROLLER_PORT,
    KRAFT,
    ZK_SECURE_CLIENT_PORT,
    Node,
)
from ..pki import revocation as revocation_checks
from ..pki.secretstore import SecretStore
from ..storage import volumes
from . import kraft, plan, render
from .render import CONFIG_DIR, TLS_DIR, Renderer

__all__ = ["JVM_OVERHEAD_MB", "runtime_dir", "tls_dir", "environment_labels", "build_plan"]

# Memory a JVM needs beyond its heap (metaspace, threads, direct buffers, page-cache slack).
JVM_OVERHEAD_MB = 384
# Host address of the PLAINTEXT listener, whatever bindAddress says: it is a loopback opt-in.
PLAINTEXT_HOST_IP = "127.0.0.1"


def runtime_dir(env: str, node: Node) -> str:
    """Where a node's rendered files live, relative to the project root."""
    return f"certs/{env}/runtime/{node.name}"


def tls_dir(env: str, node: Node) -> str:
    """Where a node's keystore and truststore live, relative to the project root."""
    return f"certs/{env}/nodes/{node.name}"


def environment_labels(settings: Settings) -> dict[str, str]:
    """The labels every Docker object of the environment has, and the only way engines find
    them: the project id makes `dev` of one checkout invisible to another's `down` and `status`."""
    return {plan.LABEL_PROJECT: settings.project_id, plan.LABEL_ENV: settings.env}


def build_plan(
    project_root: Path, settings: Settings, secrets: SecretStore, image: str, renderer: Renderer | None = None,
    revocation: bool = True,
) -> plan.ClusterPlan:
    """``revocation``: whether the nodes check certificates against their CA's CRL; off only
    for a PKI that predates CRLs (``CertStore.revocation_enabled``)."""
    topology = settings.topology
    # Bind mounts need absolute host paths; absolute() only prefixes the working directory.
    root = project_root.absolute()
    containers = tuple(
        _container(root, settings, secrets, image, node, renderer, revocation) for node in topology.nodes
    )  # topology.nodes is in start order: the metadata quorum first, then brokers
    return plan.ClusterPlan(
        env=settings.env,
        network=topology.network,
        # Encrypted: each node's data is a bind mount of its unlocked volume, no Docker volume.
        volumes=() if settings.encrypted_volumes else tuple(topology.volume(node) for node in topology.nodes),
        containers=containers,
        labels=environment_labels(settings),
    )


def _container(
    root: Path, settings: Settings, secrets: SecretStore, image: str, node: Node, renderer: Renderer | None,
    revocation: bool,
) -> plan.ContainerSpec:
    ports: tuple[plan.PortBinding, ...] = ()  # only brokers are reached from the host
    if node.role == "zookeeper":
        files = render.render_zookeeper(settings, node, secrets, renderer)
        command = ("zookeeper-server-start", f"{CONFIG_DIR}/zoo.cfg")
        data_mount = render.ZOOKEEPER_DATA_DIR
        health_port = ZK_SECURE_CLIENT_PORT
    elif node.role == "controller":
        # A controller takes a ZooKeeper node's place in the shape, and its resources.
        files = kraft.render_controller(settings, node, secrets, renderer)
        command = ("kafka-server-start", f"{CONFIG_DIR}/server.properties")
        data_mount = render.BROKER_VOLUME_DIR  # holds data/ (the metadata log) and audit/
        health_port = CONTROLLER_PORT
    else:
        kraft_mode = settings.metadata_mode == KRAFT
        files = (kraft.render_kraft_broker if kraft_mode else render.render_broker)(settings, node, secrets, renderer)
        command = ("kafka-server-start", f"{CONFIG_DIR}/server.properties")
        data_mount = render.BROKER_VOLUME_DIR  # holds data/ and audit/
        health_port = BROKER_INTERNAL_PORT
        ports = _broker_ports(settings, node)

    heap_mb, cpus = settings.profile.resources(node.role)
    runtime = runtime_dir(settings.env, node)
    return plan.ContainerSpec(
        name=node.container,
        node=node.name,
        role=node.role,
        image=image,
        command=command,
        hostname=node.name,
        # JVM_OPTS reaches the node's JVM and, through `docker exec`, Kafka's tools beside it.
        env={
            "JVM_OPTS": " ".join((f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", *(revocation_checks.JVM_OPTIONS if revocation else ()))),
            # The start scripts refuse a volume with less free (docker/bin/storage-space-guard).
            "VOLUME_START_FLOOR_MIB": str(volumes.START_FLOOR_MIB),
        },
        mounts=(
            # Directories, never single files: a file replaced by rename (rotation) would not
            # reach the container through a single-file bind mount.
            plan.Mount("bind", str(root / runtime), CONFIG_DIR, read_only=True),
            plan.Mount("bind", str(root / tls_dir(settings.env, node)), TLS_DIR, read_only=True),
            _data_mount(settings, node, data_mount),
            plan.Mount("tmpfs", "", "/tmp"),
        ),
        ports=ports,
        healthcheck=plan.Healthcheck(
            # Kafka nodes: the node listens (bash's /dev/tcp needs no credential); ZooKeeper: serves.
            test=render.zookeeper_healthcheck(health_port) if node.role == "zookeeper"
            else ("CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{health_port}"),
            # `up` waits on health: a short interval keeps it fast; 45 retries allow 90 s.
            interval_s=2,
            retries=45,
        ),
        labels={
            **environment_labels(settings),
            plan.LABEL_ROLE: node.role,
            plan.LABEL_NODE: node.name,
        },
        files=tuple(
            plan.RenderedFile(f"{runtime}/{filename}", content, mode=0o600, uid=CONTAINER_UID)
            for filename, content in files.items()
        ),
        # Hardening of every profile, not just prod: dev and CI run the container shape prod
        # runs, so a write outside the mounts fails in CI first. Writable: the volume and /tmp.
        # Only dev may opt out of the read-only root (policy.check refuses it elsewhere); no
        # setting makes the user root.
        user=f"{CONTAINER_UID}:{CONTAINER_UID}",
        read_only_rootfs=settings.read_only_rootfs,
        cap_drop=("ALL",),
        security_opt=("no-new-privileges:true",),
        mem_limit_mb=heap_mb + JVM_OVERHEAD_MB,
        # No swap: a JVM paged out stalls past its ZooKeeper session and its peers' timeouts.
        memswap_limit_mb=heap_mb + JVM_OVERHEAD_MB,
        nano_cpus=int(cpus * plan.NANOS),
        pids_limit=settings.profile.pids_limit,
    )


def _data_mount(settings: Settings, node: Node, target: str) -> plan.Mount:
    """A node's data: its encrypted volume's plaintext dir (exists only while unlocked), else a Docker volume."""
    if settings.encrypted_volumes:
        return plan.Mount("bind", volumes.plaintext_dir(volumes.run_dir(settings.project_id, settings.env), node.name), target)
    return plan.Mount("volume", settings.topology.volume(node), target)


def _broker_ports(settings: Settings, broker: Node) -> tuple[plan.PortBinding, ...]:
    """Published listeners; host port == container port, so advertised ports are right."""
    topology = settings.topology
    bindings = [
        plan.PortBinding(settings.bind_address, port, port)
        for port in (topology.listener_port(broker, "sasl_ssl"), topology.listener_port(broker, "ssl"))
    ]
    if render.plaintext_loopback_enabled(settings):
        port = topology.listener_port(broker, "plaintext")
        bindings.append(plan.PortBinding(PLAINTEXT_HOST_IP, port, port))
    return tuple(bindings)
