"""``migrate ENV --to kraft``: a ZooKeeper environment (Kafka 3.9) onto KRaft, then onto the
KRaft mode's Kafka 4.x image, one node at a time, so clients keep producing and consuming.

The ZooKeeper → KRaft migration is Kafka 3.9's own (KIP-866); the phases, in order:

    controllers        the controllers get certificates and encrypted volumes, and start on the
                       3.9 image in migration mode, formatted with the ZooKeeper cluster's id
    brokers-register   each broker restarts with the migration settings and registers with the
                       controllers; once all have, the controllers copy the metadata (topics,
                       configs, SCRAM credentials, ACLs) and write every change to both
    brokers-kraft      each broker restarts in KRaft mode (StandardAuthorizer, same ACLs)
    finalize           each controller restarts without the migration settings: ZooKeeper is
                       no longer written. The point of no return
    retire-zookeeper   the ZooKeeper containers are stopped and removed (their volumes and
                       certificates stay until `down --purge`)
    upgrade            controllers, then brokers, restart on the 4.x image (the KRaft plan)
    settings           the stack file says metadataMode: kraft and the cluster's id

Every node step compares the node's container with the one its phase wants (the plan's
spec hash): a re-run after an interruption skips what is done and continues, so `migrate`
again is how a killed migration resumes. ``certs/<env>/migration/state.json`` records the
phase reached; ``up``, ``certs rotate`` and a second migration refuse while it is unfinished.
Going back (to ZooKeeper) is not offered: the phases before ``finalize`` could be reversed
by hand as Kafka's documentation describes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..build import image, migration
from ..build.plan import ClusterPlan, ContainerSpec, RenderedFile
from ..build.planner import build_plan
from ..dockerclient import connect
from ..engines.docker_engine import DockerEngine
from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.settings import Settings
from ..model.topology import KRAFT, ZOOKEEPER, Node
from ..proc import Progress, quiet
from . import health
from .context import EnvironmentContext

__all__ = ["PHASES", "POINT_OF_NO_RETURN", "MigrationReport", "migrate", "in_progress", "zookeeper_cluster_id"]

PHASES = ("controllers", "brokers-register", "brokers-kraft", "finalize", "retire-zookeeper", "upgrade", "settings")
POINT_OF_NO_RETURN = "finalize"
STATE_FILE = "migration/state.json"
COPIED = re.compile(r"Completed migration of metadata from ZooKeeper to KRaft")
BROKER_META = "/var/lib/kafka/data/meta.properties"
NODE_TIMEOUT_S = 240
COPY_TIMEOUT_S = 180

Hook = Callable[[str], None]  # called before each node step with "<phase>:<node>" (tests kill there)


@dataclass
class MigrationReport:
    env: str
    outcome: str  # done | nothing-to-do
    phases: list[str]  # the phases this run went through
    cluster_id: str
    elapsed_s: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _state_path(env: EnvironmentContext) -> Path:
    return env.certs.root / STATE_FILE


def in_progress(env: EnvironmentContext) -> bool:
    """Whether a migration of this environment started and has not finished."""
    path = _state_path(env)
    return path.exists() and json.loads(path.read_text()).get("phase") != "done"


def zookeeper_cluster_id(engine: DockerEngine, broker: Node) -> str:
    """The cluster id a ZooKeeper-mode broker's storage was made with (its meta.properties)."""
    result = engine.client.containers.get(broker.container).exec_run(["cat", BROKER_META], user="kafka")
    if result.exit_code != 0:
        raise SecureKafkaError(f"{broker.name}: cannot read {BROKER_META} ({result.output.decode(errors='replace').strip()}): "
                               "start the environment with `secure-kafka up` first")
    for line in result.output.decode().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    raise SecureKafkaError(f"{broker.name}: {BROKER_META} names no cluster.id")


def _with_files(spec: ContainerSpec, files: dict[str, str]) -> ContainerSpec:
    directory = spec.files[0].path.rsplit("/", 1)[0]
    rendered = tuple(RenderedFile(f"{directory}/{name}", content, mode=0o600, uid=spec.files[0].uid)
                     for name, content in files.items())
    return dataclasses.replace(spec, files=rendered)


class Migration:
    """One environment's migration: the settings of each stage and the node steps."""

    def __init__(self, env: EnvironmentContext, progress: Progress = quiet, hook: Hook = lambda _: None):
        self.env = env
        self.progress = progress
        self.hook = hook
        self.engine = DockerEngine(connect(), env.project.root, progress)
        self.state_path = _state_path(env)

    # -- state ----------------------------------------------------------------------------------

    def _load_state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def _save_state(self, state: dict) -> None:
        self.state_path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.state_path, json.dumps(state, indent=1) + "\n", mode=0o600)

    # -- the stages' settings -----------------------------------------------------------------

    def _stages(self, cluster_id: str) -> tuple[Settings, Settings]:
        """The migrating settings (both quorums, 3.9) and the final ones (KRaft, 4.x)."""
        base = dataclasses.replace(self.env.settings, cluster_id=cluster_id)
        return dataclasses.replace(base, migrating=True), dataclasses.replace(base, metadata_mode=KRAFT)

    def _plan(self, settings: Settings, image_tag: str) -> ClusterPlan:
        return build_plan(self.env.project.root, settings, self.env.secrets, image_tag,
                          revocation=self.env.certs.revocation_enabled())

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> MigrationReport:
        started = time.monotonic()
        state = self._load_state()
        if not state:
            broker = self.env.settings.topology.brokers[0]
            state = {"phase": PHASES[0], "cluster_id": zookeeper_cluster_id(self.engine, broker)}
            self._save_state(state)
        cluster_id = state["cluster_id"]
        migrating, final = self._stages(cluster_id)
        zookeeper_line = image.ensure_image(self.engine.client, self.progress, mode=ZOOKEEPER)
        context = EnvironmentContext(self.env.project, self.env.env, progress=self.progress, settings=migrating)
        hybrid = self._plan(migrating, zookeeper_line)
        done: list[str] = []
        if state["phase"] == "done":
            return MigrationReport(self.env.env, "nothing-to-do", [], cluster_id, time.monotonic() - started)
        for phase in PHASES[PHASES.index(state["phase"]):]:
            if phase == POINT_OF_NO_RETURN:
                self.progress(f"migration of {self.env.env}: phase {phase}, the point of no return: from here the "
                              "controllers no longer write to ZooKeeper")
            else:
                self.progress(f"migration of {self.env.env}: phase {phase}")
            if phase == "controllers":
                context.certs.add_nodes(migrating.topology.controllers)
                if migrating.encrypted_volumes:
                    context.volumes.open()
                self._roll(migrating, hybrid, phase, migrating.topology.controllers, migration.migration_controller)
            elif phase == "brokers-register":
                self._roll(migrating, hybrid, phase, migrating.topology.brokers, migration.migrating_broker)
                self._wait_copied(migrating.topology.controllers)
            elif phase == "brokers-kraft":
                self._roll(migrating, hybrid, phase, migrating.topology.brokers, migration.zookeeper_line_kraft_broker)
            elif phase == "finalize":
                self._roll(migrating, hybrid, phase, migrating.topology.controllers, migration.zookeeper_line_controller)
            elif phase == "retire-zookeeper":
                for node in migrating.topology.zookeepers:
                    self.hook(f"{phase}:{node.name}")
                    if self.engine.inspect(node.container) is not None:
                        self.progress(f"{node.name}: stopping and removing (its volume stays until `down --purge`)")
                        self.engine.stop(node.container)
                        self.engine.api.remove_container(node.container, force=True)
            elif phase == "upgrade":
                kraft_line = image.ensure_image(self.engine.client, self.progress, mode=KRAFT)
                plan = self._plan(final, kraft_line)
                for spec in plan.containers:  # controllers first: the plan's start order
                    self.hook(f"{phase}:{spec.node}")
                    self._replace(plan, spec, final)
            elif phase == "settings":
                self.env.project.update(self.env.env, {"metadataMode": KRAFT, "clusterId": cluster_id})
            done.append(phase)
            state = {**state, "phase": PHASES[PHASES.index(phase) + 1] if phase != PHASES[-1] else "done"}
            self._save_state(state)
        return MigrationReport(self.env.env, "done", done, cluster_id, time.monotonic() - started)

    def _roll(self, settings: Settings, plan: ClusterPlan, phase: str, nodes: Sequence[Node],
              render: Callable[..., dict[str, str]]) -> None:
        specs = {spec.node: spec for spec in plan.containers}
        for node in nodes:
            self.hook(f"{phase}:{node.name}")
            self._replace(plan, _with_files(specs[node.name], render(settings, node, self.env.secrets)), settings)

    def _replace(self, plan: ClusterPlan, spec: ContainerSpec, settings: Settings) -> None:
        """Brings one node to ``spec`` (unless it is there already), then waits until it is
        healthy and the cluster is in sync again."""
        started = time.monotonic()
        if self.engine.apply_container(plan, spec) == "unchanged":
            return
        self.engine.wait_healthy([spec.name], NODE_TIMEOUT_S)
        self._wait_in_sync(settings)
        self.progress(f"{spec.node}: back, cluster in sync ({time.monotonic() - started:.0f} s)")

    def _wait_in_sync(self, settings: Settings) -> None:
        deadline = time.monotonic() + NODE_TIMEOUT_S
        good = 0
        while good < 2:  # twice in a row: a broker just restarted may not be in the ISR yet
            try:
                view = health.read_cluster_view(self.env.admin_mtls_config(), timeout_s=10)
                lag = next(iter(health.cluster_warnings(view, settings.topology)), None)
            except SecureKafkaError as exc:
                lag = str(exc)
            good = good + 1 if lag is None else 0
            if good < 2 and time.monotonic() > deadline:
                raise SecureKafkaError(f"the cluster is not back in sync after {NODE_TIMEOUT_S} s: {lag}; "
                                       f"fix it, then run `secure-kafka migrate {self.env.env} --to kraft` again")
            time.sleep(1)

    def _wait_copied(self, controllers: Sequence[Node]) -> None:
        """Until a controller logs that it copied the metadata from ZooKeeper (the migration
        controllers' containers are this migration's own: their whole log is)."""
        deadline = time.monotonic() + COPY_TIMEOUT_S
        while True:
            for node in controllers:
                logs = self.engine.api.logs(node.container).decode(errors="replace")
                if COPIED.search(logs):
                    self.progress(f"{node.name}: copied the metadata from ZooKeeper")
                    return
            if time.monotonic() > deadline:
                raise SecureKafkaError(f"no controller copied the metadata from ZooKeeper within {COPY_TIMEOUT_S} s: "
                                       f"see `docker logs` of {controllers[0].container}")
            time.sleep(1)


def migrate(env: EnvironmentContext, to: str, progress: Progress = quiet, hook: Hook = lambda _: None) -> MigrationReport:
    if to != KRAFT:
        raise SecureKafkaError(f"cannot migrate to {to!r}: the only migration is --to kraft")
    if env.settings.metadata_mode == KRAFT and not in_progress(env):
        return MigrationReport(env.env, "nothing-to-do", [], env.settings.topology.cluster_id, 0.0)
    with env.trail.recorded("migrate", to=to) as changes:
        report = Migration(env, progress, hook).run()
        changes.update(phases=report.phases, cluster_id=report.cluster_id)
    return report
