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
  ``depends_on`` all ZooKeeper nodes, the bootstrap on all brokers.
* **Bootstrap** (SCRAM users, verified round-trip): a ``pulumi.dynamic.Resource``
  (``engines.pulumi_bootstrap``) that runs ``Environment.bootstrap`` — the Docker engine
  path's code — so a bare ``pulumi up`` ends with a verified cluster like ``secure-kafka
  up``. Its inputs hold no secret: it reads them from ``certs/<env>/`` when it runs.
* **Data volumes** are retained on delete: ``pulumi destroy`` (``secure-kafka down``) keeps
  data like the Docker engine's ``down``; ``down --purge`` removes them.
* **PIDs limit**: pulumi-docker's ``Container`` has no pids-limit input, so the plan's
  ``pids_limit`` is not applied by this engine (the one difference the parity test allows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
from pulumi.runtime import config as runtime_config

from secure_kafka import settings as settings_mod
from secure_kafka.engines.pulumi_bootstrap import ClusterBootstrap
from secure_kafka.engines.shared import TMPFS_OPTIONS, container_labels, write_rendered_files
from secure_kafka.errors import SecureKafkaError
from secure_kafka.plan import ClusterPlan, ContainerSpec, Mount
from secure_kafka.settings import NAMESPACE, Settings

TYPE_TOKEN = "secure-kafka:index:SecureKafkaCluster"
# How long `pulumi up` waits for one container to become healthy (the Docker engine: 180 s).
HEALTH_TIMEOUT_S = 180
NANOS = 1_000_000_000


def load_settings(env: str) -> Settings:
    """The stack's ``secure-kafka:*`` config, read through ``pulumi.Config``, as ``Settings``.

    Validated by ``settings.from_config`` (the CLI's own reader), before any resource is
    declared: an unknown key or a wrong type fails the run with the key's name.
    """
    config = pulumi.Config(NAMESPACE)
    present = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, object] = {}
    for full_key in sorted(present):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if key not in settings_mod.KEYS:
            values[key] = None  # from_config names it as unknown
            continue
        values[key] = _typed(key, config.require(key))
    return settings_mod.from_config(env, values, f"Pulumi.{env}.yaml")


def _typed(key: str, raw: str) -> object:
    """Pulumi hands every config value over as a string; numbers, booleans and lists as JSON."""
    _, expected = settings_mod.KEYS[key]
    if expected is str:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # not JSON: from_config reports the wrong type with the key's name


@dataclass(frozen=True)
class SecureKafkaClusterArgs:
    """What the component needs.

    ``plan``: the environment's ``ClusterPlan`` (``Environment.plan`` / ``planner.build_plan``).
    ``settings``: the settings the plan was built from (bootstrap servers; the bootstrap
    resource rebuilds the environment from them). ``project_root``: where ``certs/<env>/``
    and the rendered files live. ``bootstrap``: create SCRAM users and verify a round-trip
    after the brokers are healthy (off only for tests of the mapping alone).
    """

    plan: ClusterPlan
    settings: Settings
    project_root: Path
    bootstrap: bool = True


class SecureKafkaCluster(pulumi.ComponentResource):
    network: docker.Network
    image: docker.RemoteImage
    volumes: dict[str, docker.Volume]
    containers: dict[str, docker.Container]  # node -> container, in start order
    bootstrap: ClusterBootstrap | None

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
                # Docker names carry the network's prefix already: sk-dev-zk-0-data, not sk-dev-sk-dev-zk-0-data.
                f"{name}-{volume.removeprefix(plan.network + '-')}", name=volume,
                labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(plan.labels.items())],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            for volume in plan.volumes
        }
        images = {spec.image for spec in plan.containers}
        if len(images) != 1:
            raise SecureKafkaError(f"plan of {plan.env} names {len(images)} images: expected the one runtime image")
        self.image = docker.RemoteImage(f"{name}-image", name=images.pop(), keep_locally=True, opts=child)

        self.containers = {}
        zookeepers = [s for s in plan.containers if s.role == "zookeeper"]
        brokers = [s for s in plan.containers if s.role == "broker"]
        for spec in zookeepers:
            self.containers[spec.node] = self._container(name, plan, spec, after=[])
        zookeeper_containers = [self.containers[s.node] for s in zookeepers]
        for spec in brokers:
            self.containers[spec.node] = self._container(name, plan, spec, after=zookeeper_containers)
        broker_containers = [self.containers[s.node] for s in brokers]

        topology = args.settings.topology
        self.bootstrap_servers = {"sasl_ssl": topology.bootstrap("sasl_ssl"), "ssl": topology.bootstrap("ssl")}
        self.bootstrap = None
        verification: pulumi.Input[dict] = {}
        if args.bootstrap:
            self.bootstrap = ClusterBootstrap(
                f"{name}-bootstrap", args.project_root, args.settings,
                # A replaced broker (new id) runs the bootstrap and verification again.
                containers=[c.id for c in broker_containers],
                opts=pulumi.ResourceOptions(parent=self, depends_on=broker_containers),
            )
            verification = pulumi.Output.all(
                self.bootstrap.scram_users_created, self.bootstrap.round_trip_s
            ).apply(lambda v: {"scramUsersCreated": v[0], "roundTripS": v[1]})
        self.verification = pulumi.Output.from_input(verification)
        self.register_outputs({
            "network": self.network.name,
            "containers": {node: c.name for node, c in self.containers.items()},
            "bootstrapServers": self.bootstrap_servers,
            "verification": self.verification,
        })

    def _container(self, name: str, plan: ClusterPlan, spec: ContainerSpec, after: list[pulumi.Resource]) -> docker.Container:
        volume_deps = [self.volumes[m.source] for m in spec.mounts if m.kind == "volume" and m.source in self.volumes]
        return docker.Container(
            f"{name}-{spec.node}",
            docker.ContainerArgs(**container_args(plan, spec), image=self.image.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.network, *volume_deps, *after]),
        )


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
        cpus=f"{spec.nano_cpus / NANOS:g}" if spec.nano_cpus else None,
        restart=spec.restart_policy,
        network_mode=plan.network,
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=plan.network, aliases=[spec.node])],
        # `up` returns only once every container is healthy, as with the Docker engine.
        wait=hc is not None,
        wait_timeout=HEALTH_TIMEOUT_S,
        must_run=True,
    )


def _mount(mount: Mount) -> docker.ContainerMountArgs:
    if mount.kind not in ("bind", "volume"):
        raise SecureKafkaError(f"mount {mount.target}: kind {mount.kind!r} has no pulumi_docker mapping (bind, volume, tmpfs)")
    return docker.ContainerMountArgs(target=mount.target, type=mount.kind, source=mount.source, read_only=mount.read_only)


def stack_env(stack: str | None = None) -> str:
    """The environment a stack deploys: the stack's name (``Pulumi.<env>.yaml``)."""
    return settings_mod.check_env_name(stack or pulumi.get_stack())

