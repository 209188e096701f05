"""The direct Docker engine: applies a ``ClusterPlan`` with the Docker SDK.

Idempotent: a container whose spec hash label matches the plan and that is running is
left alone; anything else of the environment is replaced. Objects are found by labels, so
``down`` and ``status`` need only the environment's labels (project id and name).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import docker.errors

import docker

from ..build.plan import (
    LABEL_NODE,
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    NANOS,
    QUORUM_ROLES,
    START_ORDER,
    ClusterPlan,
    ContainerSpec,
    spec_hash,
)
from ..errors import SecureKafkaError
from ..proc import Progress, quiet
from .shared import (
    LOG_DRIVER,
    STOP_TIMEOUT_S,
    TMPFS_OPTIONS,
    container_labels,
    write_rendered_files,
)

__all__ = ["ZOOKEEPER_SESSION_EXPIRY_S", "NodeStatus", "DockerEngine"]

# Kafka's zookeeper.session.timeout.ms (18 s, not overridden), plus a margin: how long the
# registration of a broker that was killed, not stopped, outlives it in ZooKeeper.
ZOOKEEPER_SESSION_EXPIRY_S = 18 + 4
SIGKILL_EXIT = 128 + 9
# Docker's userland proxy lets go of a removed container's host ports a moment after the removal.
PORT_RELEASE_WAIT_S = 10


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str
    container: str
    state: str  # running, exited, ...
    health: str  # healthy, starting, unhealthy, none

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.health == "healthy"


class DockerEngine:
    def __init__(self, client: docker.DockerClient, project_root: Path, progress: Progress = quiet):
        self.client = client
        self.api = client.api
        self.root = project_root
        self.progress = progress

    # --- apply ---------------------------------------------------------------------------

    def apply(self, plan: ClusterPlan, health_timeout_s: float = 180, restart: frozenset[str] = frozenset()) -> dict[str, str]:
        """Brings the environment to the plan; returns ``{node: "created"|"replaced"|"started"|"restarted"|"unchanged"}``.

        ``restart``: nodes to restart even where their container matches the plan (their
        volume was mounted again: a running container still holds the mount it started with).
        """
        self._ensure_network(plan)
        for volume in plan.volumes:
            self._ensure_volume(volume, plan.labels)
        outcome: dict[str, str] = {}
        # The quorum must answer before brokers start, or they exit on a connection timeout.
        for role in START_ORDER:
            specs = [s for s in plan.containers if s.role == role]
            for spec in specs:
                outcome[spec.node] = self.apply_container(plan, spec, spec.node in restart)
            self.wait_healthy([s.name for s in specs], health_timeout_s)
        return outcome

    def _ensure_network(self, plan: ClusterPlan) -> None:
        if not self.api.networks(names=[plan.network]):
            self.progress(f"network {plan.network}: creating")
            self.api.create_network(plan.network, driver="bridge", labels=plan.labels, check_duplicate=True)

    def _ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.api.inspect_volume(name)
        except docker.errors.NotFound:
            self.progress(f"volume {name}: creating")
            self.api.create_volume(name, labels=labels)

    def apply_container(self, plan: ClusterPlan, spec: ContainerSpec, restart: bool = False) -> str:
        want = spec_hash(spec)
        existing = self.inspect(spec.name)
        if existing is not None:
            same = existing["Config"]["Labels"].get(LABEL_SPEC_HASH) == want
            # Between two attempts of its restart policy (which waits longer after each failed
            # start, up to a minute): started now, it need not wait out the policy's delay.
            looping = existing["State"].get("Restarting", False)
            if same and existing["State"]["Running"] and (restart or looping):
                self.progress(f"{spec.node}: restarting, " + ("to mount its volume again" if restart else "it kept exiting"))
                self.stop(spec.name)
                self.api.start(spec.name)
                return "restarted"
            if same and existing["State"]["Running"]:
                self.progress(f"{spec.node}: unchanged")
                return "unchanged"
            self.progress(f"{spec.node}: {'starting' if same else 'plan changed, replacing'}")
            write_rendered_files(self.root, spec.files)
            if same:
                self.api.start(spec.name)
                return "started"
            self.stop(spec.name)
            self.api.remove_container(spec.name, force=True)
        else:
            write_rendered_files(self.root, spec.files)
        check_ports_free(spec, just_released=existing is not None)
        self._create(plan, spec)
        self.progress(f"{spec.node}: starting")
        self.api.start(spec.name)
        return "replaced" if existing is not None else "created"

    def _create(self, plan: ClusterPlan, spec: ContainerSpec) -> None:
        mounts, tmpfs = [], {}
        for m in spec.mounts:
            if m.kind == "tmpfs":
                tmpfs[m.target] = TMPFS_OPTIONS
            else:
                mounts.append(docker.types.Mount(m.target, m.source, type=m.kind, read_only=m.read_only))
        port_bindings = {f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in spec.ports}
        host_config = self.api.create_host_config(
            mounts=mounts,
            tmpfs=tmpfs or None,
            port_bindings=port_bindings or None,
            read_only=spec.read_only_rootfs,
            cap_drop=list(spec.cap_drop),
            security_opt=list(spec.security_opt),
            mem_limit=f"{spec.mem_limit_mb}m" if spec.mem_limit_mb else None,
            memswap_limit=f"{spec.memswap_limit_mb}m" if spec.memswap_limit_mb else None,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            restart_policy={"Name": spec.restart_policy},
            log_config=docker.types.LogConfig(type=LOG_DRIVER, config=spec.log_options),
            network_mode=plan.network,
        )
        healthcheck = None
        if hc := spec.healthcheck:
            healthcheck = {
                "test": list(hc.test),
                "interval": hc.interval_s * NANOS,
                "timeout": hc.timeout_s * NANOS,
                "retries": hc.retries,
                "start_period": hc.start_period_s * NANOS,
            }
        networking = self.api.create_networking_config(
            {plan.network: self.api.create_endpoint_config(aliases=[spec.node])}
        )
        try:
            self.api.create_container(
                spec.image,
                command=list(spec.command),
                name=spec.name,
                hostname=spec.hostname,
                user=spec.user,
                environment=spec.env,
                labels=container_labels(spec),
                ports=[p.container_port for p in spec.ports] or None,
                healthcheck=healthcheck,
                host_config=host_config,
                networking_config=networking,
            )
        except docker.errors.ImageNotFound:
            raise SecureKafkaError(f"image {spec.image} not found: run `secure-kafka image build`") from None

    # --- health --------------------------------------------------------------------------

    def inspect(self, name: str) -> dict | None:
        try:
            return self.api.inspect_container(name)
        except docker.errors.NotFound:
            return None

    def stop(self, name: str) -> None:
        """Stops a container gracefully: a broker that stops cleanly hands over leadership and
        closes its ZooKeeper session. One that had to be killed leaves its registration behind
        until the session expires, and a broker started meanwhile exits with NodeExists: wait."""
        self.api.stop(name, timeout=STOP_TIMEOUT_S)
        info = self.inspect(name) or {}
        if info.get("State", {}).get("ExitCode") == SIGKILL_EXIT and info["Config"]["Labels"].get(LABEL_ROLE) == "broker":
            self.progress(f"{name}: killed after {STOP_TIMEOUT_S} s; waiting {ZOOKEEPER_SESSION_EXPIRY_S} s "
                          "for its ZooKeeper session to expire")
            time.sleep(ZOOKEEPER_SESSION_EXPIRY_S)

    def logs_tail(self, name: str, lines: int = 20) -> str:
        try:
            return self.api.logs(name, tail=lines).decode(errors="replace")
        except docker.errors.APIError:
            return ""

    def wait_healthy(self, names: list[str], timeout_s: float, max_restarts: int = 3) -> None:
        """Waits until every container reports healthy.

        A broker may exit once while ZooKeeper still holds its previous session (its
        ephemeral registration lingers until the session times out); the restart policy
        brings it back, so a few restarts are tolerated before giving up.
        """
        deadline = time.monotonic() + timeout_s
        restarts_before = {name: (self.inspect(name) or {}).get("RestartCount", 0) for name in names}
        pending = list(names)
        while pending:
            for name in list(pending):
                info = self.inspect(name)
                if info is None:
                    raise SecureKafkaError(f"container {name} disappeared while starting")
                state = info["State"]
                restarts = info.get("RestartCount", 0) - restarts_before[name]
                if restarts > max_restarts or (not state["Running"] and not state.get("Restarting")):
                    raise self._failure(name, f"exited with status {state.get('ExitCode')} ({restarts} restarts)")
                if state.get("Health", {}).get("Status") == "healthy":
                    self.progress(f"{name}: healthy")
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise self._failure(pending[0], f"not healthy after {timeout_s:.0f} s")
            if pending:
                time.sleep(1)

    def _failure(self, name: str, what: str) -> SecureKafkaError:
        tail = " | ".join(line for line in self.logs_tail(name, 8).splitlines() if line.strip())
        return SecureKafkaError(f"{name} {what}; last log lines: {tail}")

    # --- status and teardown -------------------------------------------------------------

    @staticmethod
    def _filter(labels: dict[str, str]) -> dict:
        return {"label": [f"{key}={value}" for key, value in labels.items()]}

    def status(self, labels: dict[str, str]) -> list[NodeStatus]:
        """The containers that carry all of ``labels`` (``planner.environment_labels``)."""
        result = []
        for c in self.api.containers(all=True, filters=self._filter(labels)):
            info = self.api.inspect_container(c["Id"])
            labels = info["Config"]["Labels"]
            result.append(
                NodeStatus(
                    name=labels.get(LABEL_NODE, "?"),
                    role=labels.get(LABEL_ROLE, "?"),
                    container=info["Name"].lstrip("/"),
                    state=info["State"]["Status"],
                    health=info["State"].get("Health", {}).get("Status", "none"),
                )
            )
        return sorted(result, key=lambda s: (s.role not in QUORUM_ROLES, s.name))

    def down(self, labels: dict[str, str], purge: bool = False) -> None:
        """Removes the containers and networks that carry all of ``labels``; volumes too with ``purge``."""
        filters = self._filter(labels)
        containers = self.api.containers(all=True, filters=filters)
        # Brokers first, and gracefully: a broker that stops cleanly hands over leadership and
        # closes its ZooKeeper session, so its registration is gone before the next `up`.
        containers.sort(key=lambda c: c["Labels"].get(LABEL_ROLE) != "broker")
        for c in containers:
            name = c["Names"][0].lstrip("/")
            if c["State"] == "running":
                self.progress(f"container {name}: stopping")
                self.stop(name)
            self.progress(f"container {name}: removing")
            self.api.remove_container(c["Id"], force=True)
        for net in self.api.networks(filters=filters):
            self.progress(f"network {net['Name']}: removing")
            self.api.remove_network(net["Id"])
        if purge:
            for vol in self.api.volumes(filters=filters).get("Volumes") or []:
                self.progress(f"volume {vol['Name']}: removing")
                self.api.remove_volume(vol["Name"], force=True)


def check_ports_free(spec: ContainerSpec, just_released: bool = False) -> None:
    """A port is taken if it cannot be bound. Ports of a container removed a moment ago are
    released by Docker's proxy asynchronously, so those get a few seconds to come free."""
    deadline = time.monotonic() + (PORT_RELEASE_WAIT_S if just_released else 0)
    for port in spec.ports:
        while not _bindable(port.host_ip, port.host_port):
            if time.monotonic() >= deadline:
                raise SecureKafkaError(
                    f"port {port.host_ip}:{port.host_port} for {spec.node} is taken: free it or change portBase"
                )
            time.sleep(0.25)


def _bindable(host_ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except OSError:
            return False
        return True
