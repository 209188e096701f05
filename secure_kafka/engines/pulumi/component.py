"""``SecureKafkaCluster``: a ``ClusterPlan`` mapped onto ``pulumi_docker`` resources.

The plan is the one ``planner.build_plan`` makes for the direct Docker engine; this module
only translates it, one plan field to one resource input, so both engines ask Docker for the
same containers (``tests/integration/test_engine_parity.py`` proves it). Decisions:

* **Rendered files** (``RenderedFile``: configs holding store passwords) are written to the
  host by ``engines.shared.write_rendered_files`` — the Docker engine's own helper — while
  the program runs and before any container is declared, and only on a real update (a
  preview writes nothing). They reach the containers through read-only *directory* bind
  mounts, as with the Docker engine, so a rotated file replaced by rename is seen, and their
  content never enters Pulumi state. A changed file changes the container's spec-hash
  label, so Pulumi replaces the container, as the Docker engine does. (``uploads`` would
  copy the files into the container instead: no rename-rotation, secrets in state, and a
  different container from the Docker engine's.)
* **Image**: the runtime image is built locally (``secure-kafka image build``; the program
  builds it on ``pulumi up`` when missing). A ``RemoteImage`` with ``keep_locally`` refers
  to that local tag; the tag carries the content hash of ``docker/``, so a new image is a
  new tag and replaces the containers. Containers use the tag, exactly as the plan says.
* **Start order**: every container waits for health (``wait=True``); brokers
  ``depends_on`` all metadata-quorum nodes (ZooKeeper or KRaft controllers), the provisioning on all brokers.
* **Provisioning** (SCRAM users, the ACL file, a verified round-trip): a ``pulumi.dynamic.Resource``
  (``engines.pulumi.provision``) that runs ``ops.provision`` — the Docker engine
  path's code — so a bare ``pulumi up`` ends with a verified cluster like ``secure-kafka
  up``. Its inputs hold no secret: it reads them from ``certs/<env>/`` when it runs.
* **Encrypted volumes** (``engines.pulumi.volumes``): a dynamic resource every container
  depends on unlocks them (creates them on first use) before any container is created, so a
  bare ``pulumi up`` works, and locks them on ``pulumi destroy`` after the containers are
  gone. Docker volumes (``encryptedVolumes: false``) are retained on delete: ``pulumi
  destroy`` keeps data like the Docker engine's ``down``; ``down --purge`` removes them.
* **PIDs limit** (``engines.pulumi.pids``): the docker provider's ``Container`` has no
  pids-limit input, so a dynamic resource per container sets the plan's ``pids_limit``
  through Docker's update endpoint once the container is up.
* **No perpetual diff**: inputs are spelled as the provider reads them back (``cpus``
  "1.0", not "1"; ``memorySwap`` set, as the plan's no-swap limit), so a second
  ``pulumi up`` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from secure_kafka.build.plan import (
    NANOS,
    QUORUM_ROLES,
    ClusterPlan,
    ContainerSpec,
    Mount,
)
from secure_kafka.engines.pulumi.pids import PidsLimit
from secure_kafka.engines.pulumi.provision import ClusterProvisioning
from secure_kafka.engines.pulumi.volumes import UnlockedVolumes
from secure_kafka.engines.shared import (
    LOG_DRIVER,
    STOP_TIMEOUT_S,
    TMPFS_OPTIONS,
    container_labels,
    write_rendered_files,
)
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.settings import Settings

__all__ = ["SecureKafkaClusterArgs", "SecureKafkaCluster", "container_args", "cpus_input"]

TYPE_TOKEN = "secure-kafka:index:SecureKafkaCluster"
# How long `pulumi up` waits for one container to become healthy (the Docker engine: 180 s).
HEALTH_TIMEOUT_S = 180


@dataclass(frozen=True)
class SecureKafkaClusterArgs:
    """What the component needs.

    ``plan``: the environment's ``ClusterPlan`` (``Environment.prepare`` / ``planner.build_plan``).
    ``settings``: the settings the plan was built from (bootstrap servers; the provisioning
    resource rebuilds the environment from them). ``project_root``: where ``certs/<env>/``
    and the rendered files live. ``provision``: create SCRAM users, apply the ACL file and verify a round-trip
    after the brokers are healthy (off only for tests of the mapping alone).
    """

    plan: ClusterPlan
    settings: Settings
    project_root: Path
    provision: bool = True


class SecureKafkaCluster(pulumi.ComponentResource):
    network: docker.Network
    image: docker.RemoteImage
    volumes: dict[str, docker.Volume]
    unlocked_volumes: UnlockedVolumes | None
    containers: dict[str, docker.Container]  # node -> container, in start order
    provisioning: ClusterProvisioning | None

    def __init__(self, name: str, args: SecureKafkaClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self)

        if not pulumi.runtime.is_dry_run():
            # Before any container is declared, as the Docker engine does before it creates one.
            for spec in plan.containers:
                write_rendered_files(args.project_root, spec.files)

        self.network = docker.Network(
            f"{name}-network", name=plan.network, driver="bridge",
            labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(plan.labels.items())], opts=child,
        )
        self.volumes = {
            volume: docker.Volume(
                # Docker names carry the network's prefix already: sk-dev-<id>-zk-0-data yields child sk-dev-zk-0-data.
                f"{name}-{volume.removeprefix(plan.network + '-')}", name=volume,
                labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(plan.labels.items())],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            for volume in plan.volumes
        }
        # Encrypted data is a bind mount of each node's unlocked volume: unlocked before any
        # container is created, locked again by `pulumi destroy` after the containers are gone.
        self.unlocked_volumes = UnlockedVolumes(
            f"{name}-encrypted-volumes", args.project_root, args.settings, opts=child,
        ) if args.settings.encrypted_volumes else None
        images = {spec.image for spec in plan.containers}
        if len(images) != 1:
            raise SecureKafkaError(f"plan of {plan.env} names {len(images)} images: expected the one runtime image")
        self.image = docker.RemoteImage(f"{name}-image", name=images.pop(), keep_locally=True, opts=child)

        self.containers = {}
        quorum = [s for s in plan.containers if s.role in QUORUM_ROLES]
        brokers = [s for s in plan.containers if s.role == "broker"]
        for spec in quorum:
            self.containers[spec.node] = self._container(name, plan, spec, after=[])
        quorum_containers = [self.containers[s.node] for s in quorum]
        for spec in brokers:
            self.containers[spec.node] = self._container(name, plan, spec, after=quorum_containers)
        broker_containers = [self.containers[s.node] for s in brokers]

        self.bootstrap_servers = args.settings.topology.bootstrap_servers
        self.provisioning = None
        verification: pulumi.Input[dict] = {}
        if args.provision:
            self.provisioning = ClusterProvisioning(
                # Named -bootstrap since round one: a new name would replace it in every existing stack.
                f"{name}-bootstrap", args.project_root, args.settings,
                # A replaced broker (new id) runs the provisioning and verification again.
                containers=[c.id for c in broker_containers],
                opts=pulumi.ResourceOptions(parent=self, depends_on=broker_containers),
            )
            verification = pulumi.Output.all(
                self.provisioning.scram_users_created, self.provisioning.round_trip_s
            ).apply(lambda v: {"scramUsersCreated": v[0], "roundTripS": v[1]})
        self.verification = pulumi.Output.from_input(verification)
        self.register_outputs({
            "network": self.network.name,
            "containers": {node: c.name for node, c in self.containers.items()},
            "bootstrapServers": self.bootstrap_servers,
            "verification": self.verification,
        })

    def _container(self, name: str, plan: ClusterPlan, spec: ContainerSpec, after: list[pulumi.Resource]) -> docker.Container:
        volume_deps: list[pulumi.Resource] = [
            self.volumes[m.source] for m in spec.mounts if m.kind == "volume" and m.source in self.volumes]
        if self.unlocked_volumes is not None:
            volume_deps.append(self.unlocked_volumes)
        container = docker.Container(
            f"{name}-{spec.node}",
            docker.ContainerArgs(**container_args(plan, spec), image=self.image.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.network, *volume_deps, *after]),
        )
        if spec.pids_limit:
            PidsLimit(f"{name}-{spec.node}-pids-limit", container.id, spec.pids_limit,
                      opts=pulumi.ResourceOptions(parent=self, depends_on=[container]))
        return container


def container_args(plan: ClusterPlan, spec: ContainerSpec) -> dict[str, object]:
    """The ``docker.Container`` inputs of one ``ContainerSpec`` (all but the image resource).

    A pure function of the plan: the parity test compares it with what the Docker engine
    created from the same spec.
    """
    mounts = [_mount(m) for m in spec.mounts if m.kind != "tmpfs"]
    tmpfs = {m.target: TMPFS_OPTIONS for m in spec.mounts if m.kind == "tmpfs"}
    hc = spec.healthcheck
    return dict(
        name=spec.name,
        hostname=spec.hostname,
        command=list(spec.command),
        envs=[f"{k}={v}" for k, v in sorted(spec.env.items())],
        user=spec.user,
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(container_labels(spec).items())],
        mounts=mounts,
        tmpfs=tmpfs or None,
        ports=[docker.ContainerPortArgs(internal=p.container_port, external=p.host_port, ip=p.host_ip, protocol="tcp")
               for p in spec.ports],
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(hc.test), interval=f"{hc.interval_s}s", timeout=f"{hc.timeout_s}s",
            retries=hc.retries, start_period=f"{hc.start_period_s}s",
        ) if hc else None,
        read_only=spec.read_only_rootfs,
        capabilities=docker.ContainerCapabilitiesArgs(drops=list(spec.cap_drop)),
        security_opts=list(spec.security_opt),
        memory=spec.mem_limit_mb,
        memory_swap=spec.memswap_limit_mb,
        cpus=cpus_input(spec.nano_cpus) if spec.nano_cpus else None,
        restart=spec.restart_policy,
        log_driver=LOG_DRIVER,
        log_opts=spec.log_options,
        # Stopped, not killed, before it is removed (a replacement too), as the Docker engine does.
        destroy_grace_seconds=STOP_TIMEOUT_S,
        network_mode=plan.network,
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=plan.network, aliases=[spec.node])],
        # `up` returns only once every container is healthy, as with the Docker engine.
        wait=hc is not None,
        wait_timeout=HEALTH_TIMEOUT_S,
        must_run=True,
    )


def cpus_input(nano_cpus: int) -> str:
    """``cpus`` spelled as the docker provider reads it back from ``NanoCpus``.

    Any other spelling of the same number ("1" for "1.0") is a change on every ``pulumi up``,
    and ``cpus`` forces a replacement. The provider's rule (``nanoInt64ToDecimalString``):
    nine decimals, then one decimal, rounded, when the text holds exactly nine zeros, else
    the trailing zeros trimmed.
    """
    whole, fraction = divmod(nano_cpus, NANOS)
    text = f"{whole}.{fraction:09d}"
    if text.count("0") == 9:
        tenths = (nano_cpus * 10 + NANOS // 2) // NANOS  # halves away from zero, like big.Rat
        return f"{tenths // 10}.{tenths % 10}"
    return text.rstrip("0")


def _mount(mount: Mount) -> docker.ContainerMountArgs:
    if mount.kind not in ("bind", "volume"):
        raise SecureKafkaError(f"mount {mount.target}: kind {mount.kind!r} has no pulumi_docker mapping (bind, volume, tmpfs)")
    return docker.ContainerMountArgs(target=mount.target, type=mount.kind, source=mount.source, read_only=mount.read_only)
