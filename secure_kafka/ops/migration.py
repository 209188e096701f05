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
    features           the feature levels (metadata.version first) are raised to the 4.x
                       release's, Kafka's last upgrade step: the cluster stayed at 3.9's until
                       here, and a new KRaft environment starts at 4.x's
    settings           the stack file says metadataMode: kraft and the cluster's id

Every node step compares the node's container with the one its phase wants (the plan's
spec hash): a re-run after an interruption skips what is done and continues, so `migrate`
again is how a killed migration resumes. ``certs/<env>/migration/state.json`` records the
phase reached; ``up``, ``certs rotate`` and a second migration refuse while it is unfinished.
``abort`` goes back to ZooKeeper mode until ``finalize`` begins (``Migration.abort``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..build import image, migration
from ..build.plan import LABEL_SPEC_HASH, ClusterPlan, ContainerSpec, RenderedFile, spec_hash
from ..build.planner import build_plan
from ..build.render import ZOOKEEPER_SASL_USER
from ..dockerclient import connect
from ..engines.docker_engine import DockerEngine
from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.settings import Settings
from ..model.topology import ADMIN, CONTROLLER_ID_BASE, KRAFT, ZK_SECURE_CLIENT_PORT, ZOOKEEPER, Node
from ..pki.secretstore import ZOOKEEPER_SASL
from ..proc import Progress, quiet
from ..verify import probes
from . import health, kafka_tools
from .context import EnvironmentContext

__all__ = ["PHASES", "POINT_OF_NO_RETURN", "Migration", "MigrationReport", "abort", "migrate", "resume", "in_progress",
           "zookeeper_cluster_id"]

PHASES = ("controllers", "brokers-register", "brokers-kraft", "finalize", "retire-zookeeper", "upgrade", "features", "settings")
POINT_OF_NO_RETURN = "finalize"
STATE_FILE = "migration/state.json"
METADATA_VERSION = "metadata.version"
KRAFT_VERSION = "kraft.version"
COPIED = re.compile(r"Completed migration of metadata from ZooKeeper to KRaft")
BROKER_CONTROLLER = re.compile(r'"brokerid":(\d+)')  # /controller's content: who holds the role
BROKER_META = "/var/lib/kafka/data/meta.properties"
NODE_TIMEOUT_S = 240
COPY_TIMEOUT_S = 180

Hook = Callable[[str], None]  # called before each node step with "<phase>:<node>" (tests kill there)


@dataclass
class MigrationReport:
    env: str
    outcome: str  # done | nothing-to-do | aborted
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


def _last_lines(output: str) -> str:
    return " | ".join(output.strip().splitlines()[-3:])


def _poll(pending: Callable[[], str | None], interval_s: float, failure: Callable[[str], str]) -> None:
    """Calls ``pending`` every ``interval_s`` until it returns None (done); after
    COPY_TIMEOUT_S, refuses with ``failure`` of what it last returned."""
    deadline = time.monotonic() + COPY_TIMEOUT_S
    while (seen := pending()) is not None:
        if time.monotonic() > deadline:
            raise SecureKafkaError(failure(seen))
        time.sleep(interval_s)


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
        if state["phase"] == "done":
            return MigrationReport(self.env.env, "nothing-to-do", [], cluster_id, time.monotonic() - started)
        migrating, final = self._stages(cluster_id)
        zookeeper_line = image.ensure_image(self.engine.client, self.progress, mode=ZOOKEEPER)
        context = EnvironmentContext(self.env.project, self.env.env, progress=self.progress, settings=migrating)
        hybrid = self._plan(migrating, zookeeper_line)
        done: list[str] = []
        for phase in PHASES[PHASES.index(state["phase"]):]:
            self.hook(phase)
            if phase == POINT_OF_NO_RETURN:
                self.progress(f"migration of {self.env.env}: phase {phase}, the point of no return: from here the "
                              "controllers no longer write to ZooKeeper, and --abort is refused")
                state = {**state, "crossed": True}
                self._save_state(state)
            else:
                self.progress(f"migration of {self.env.env}: phase {phase}")
            if phase == "controllers":
                # ZooKeeper nodes on an older image first: the current one admits controllers' certificates.
                plain = self._plan(self.env.settings, zookeeper_line)
                for spec in (spec for spec in plain.containers if spec.role == "zookeeper"):
                    self._replace(plain, spec, self.env.settings)
                context.certs.add_nodes(migrating.topology.controllers)
                if migrating.encrypted_volumes:
                    context.volumes.open()
                self._start_together(migrating, hybrid, phase, migrating.topology.controllers, migration.migration_controller)
            elif phase == "brokers-register":
                self._roll(migrating, hybrid, phase, migrating.topology.brokers, migration.migrating_broker)
                self._wait_copied(migrating.topology.controllers)
            elif phase == "brokers-kraft":
                self._roll(migrating, hybrid, phase, migrating.topology.brokers, migration.zookeeper_line_kraft_broker)
            elif phase == "finalize":
                self._roll(migrating, hybrid, phase, migrating.topology.controllers, migration.zookeeper_line_controller)
            elif phase == "retire-zookeeper":
                self._remove(phase, migrating.topology.zookeepers, "its volume stays, locked, until `down --purge`")
                if migrating.encrypted_volumes:
                    context.volumes.close([node.name for node in migrating.topology.zookeepers])
            elif phase == "upgrade":
                kraft_line = image.ensure_image(self.engine.client, self.progress, mode=KRAFT)
                plan = self._plan(final, kraft_line)
                for spec in plan.containers:  # controllers first: the plan's start order
                    self.hook(f"{phase}:{spec.node}")
                    self._replace(plan, spec, final)
            elif phase == "features":
                self._raise_feature_levels(final, image.ensure_image(self.engine.client, self.progress, mode=KRAFT))
            elif phase == "settings":
                self.env.project.update(self.env.env, {"metadataMode": KRAFT, "clusterId": cluster_id})
            done.append(phase)
            state = {**state, "phase": PHASES[PHASES.index(phase) + 1] if phase != PHASES[-1] else "done"}
            self._save_state(state)
        return MigrationReport(self.env.env, "done", done, cluster_id, time.monotonic() - started)

    def _raise_feature_levels(self, settings: Settings, kraft_line: str) -> None:
        """``kafka-features upgrade`` to the levels of the 4.x release, as the admin over mTLS;
        refuses unless metadata.version then stands at the highest level the nodes support.
        kraft.version stays 0, as in a new environment: its controller quorum is static
        (controller.quorum.voters), and kraft.version 1 is KIP-853's dynamic quorum, which
        `--release-version` would switch on."""
        release = ".".join(settings.kafka_version.split(".")[:2])
        bootstrap = ",".join(settings.topology.bootstrap("ssl"))
        wanted = {name: level for name, level in kafka_tools.release_levels(kraft_line, release).items()
                  if name != KRAFT_VERSION}
        updates = [part for name, level in wanted.items() for part in ("--feature", f"{name}={level}")]
        with tempfile.TemporaryDirectory(dir=self.env.certs.root, prefix=".features-") as scratch:
            config = self.env.client_config(ADMIN, "java", "mtls", Path(scratch) / "admin", producer_tuning=False)
            upgraded = kafka_tools.features(kraft_line, config, bootstrap, "upgrade", *updates)
            self.progress(f"feature levels: {'; '.join(upgraded.strip().splitlines())}")
            levels = kafka_tools.finalized_levels(kafka_tools.features(kraft_line, config, bootstrap, "describe"))
        finalized, highest = levels.get(METADATA_VERSION, ("none", "?"))
        if finalized != highest:
            raise SecureKafkaError(f"{METADATA_VERSION} is {finalized} after the upgrade to {release}, not {highest}: "
                                   f"run `secure-kafka migrate {self.env.env} --resume` again")

    def abort(self) -> MigrationReport:
        """Back to ZooKeeper mode, as Kafka's documentation reverts a migration that is not
        finalized: brokers in KRaft mode return to ZooKeeper mode (still registered with the
        controllers); the controllers go, and ``/controller`` and ``/migration`` are deleted, so
        that a broker takes the controller role again and a later migration starts afresh; the
        brokers restart without the migration settings.
        The controllers' volumes are destroyed (a new migration formats them again)."""
        started = time.monotonic()
        state = self._load_state()
        if state.get("crossed"):
            raise SecureKafkaError(
                f"the migration of {self.env.env} is past the point of no return ({POINT_OF_NO_RETURN} has begun): "
                f"finish it with `secure-kafka migrate {self.env.env} --to kraft`")
        self._save_state({**state, "aborting": True})
        migrating, _ = self._stages(state["cluster_id"])
        zookeeper_line = image.ensure_image(self.engine.client, self.progress, mode=ZOOKEEPER)
        hybrid, plain = self._plan(migrating, zookeeper_line), self._plan(self.env.settings, zookeeper_line)
        context = EnvironmentContext(self.env.project, self.env.env, progress=self.progress, settings=migrating)
        brokers, controllers = migrating.topology.brokers, migrating.topology.controllers

        self.progress(f"abort of the migration of {self.env.env}: phase restore-zookeeper-brokers")
        specs = {spec.node: spec for spec in hybrid.containers}
        for broker in brokers:
            self.hook(f"restore-zookeeper-brokers:{broker.name}")
            in_kraft = spec_hash(_with_files(specs[broker.name], migration.zookeeper_line_kraft_broker(migrating, broker, self.env.secrets)))
            info = self.engine.inspect(broker.container)
            if info is None or info["Config"]["Labels"].get(LABEL_SPEC_HASH) == in_kraft:
                self._replace(hybrid, _with_files(specs[broker.name], migration.migrating_broker(migrating, broker, self.env.secrets)), migrating)

        self.progress(f"abort of the migration of {self.env.env}: phase remove-controllers")
        self._remove("remove-controllers", controllers, "its volume is destroyed")
        self._hand_back_controller_role(migrating)
        if migrating.encrypted_volumes:
            context.volumes.close([node.name for node in controllers])
            context.volumes.destroy([node.name for node in controllers])

        self.progress(f"abort of the migration of {self.env.env}: phase zookeeper-brokers")
        for spec in (spec for spec in plain.containers if spec.role == "broker"):
            self.hook(f"zookeeper-brokers:{spec.node}")
            self._replace(plain, spec, self.env.settings)
        self.state_path.unlink()
        return MigrationReport(self.env.env, "aborted", ["restore-zookeeper-brokers", "remove-controllers", "zookeeper-brokers"],
                               state["cluster_id"], time.monotonic() - started)

    def _remove(self, phase: str, nodes: Sequence[Node], what_stays: str) -> None:
        for node in nodes:
            self.hook(f"{phase}:{node.name}")
            if self.engine.inspect(node.container) is not None:
                self.progress(f"{node.name}: stopping and removing ({what_stays})")
                self.engine.stop(node.container)
                self.engine.api.remove_container(node.container, force=True)

    def _hand_back_controller_role(self, settings: Settings) -> None:
        """Deletes ``/migration`` (the migration's state: a later migration would otherwise
        take it for done and write its empty metadata over ZooKeeper's) and ``/controller`` (a
        KRaft controller holds it), then waits until a ZooKeeper-mode broker holds the role."""
        for znode in ("/migration", "/controller"):
            output = self._zookeeper_shell(settings, "deleteall", znode)
            if "NoAuth" in output or "failed to authenticate" in output:
                raise SecureKafkaError(f"ZooKeeper refused to delete {znode} ({_last_lines(output)}): run --abort again")
        def no_broker_holds_it() -> str | None:
            output = self._zookeeper_shell(settings, "get", "/controller")
            holder = BROKER_CONTROLLER.search(output)
            if holder and int(holder.group(1)) < CONTROLLER_ID_BASE:
                self.progress(f"broker {holder.group(1)} holds the controller role again")
                return None
            return output

        _poll(no_broker_holds_it, 2, lambda output: f"no broker took the controller role within {COPY_TIMEOUT_S} s "
                                                    f"(ZooKeeper's shell: {_last_lines(output)}): run --abort again")

    def _zookeeper_shell(self, settings: Settings, *command: str) -> str:
        """ZooKeeper's shell on the environment network, with a broker's certificate and the
        brokers' SASL login (the owner of the znodes Kafka writes): what it printed."""
        broker, zookeeper = settings.topology.brokers[0], settings.topology.zookeepers[0]
        tls = settings.tls
        with tempfile.TemporaryDirectory(dir=self.env.certs.root, prefix=".zookeeper-shell-") as scratch:
            work_dir = Path(scratch) / "shell"
            work_dir.mkdir(mode=0o700)
            return probes.zookeeper_shell(
                self.engine.inspect(zookeeper.container)["Config"]["Image"], settings.topology.network,
                f"{zookeeper.name}:{ZK_SECURE_CLIENT_PORT}", self.env.certs.node_dir(broker.name),
                self.env.certs.store_password(broker.name), work_dir, *command,
                sasl_password=self.env.secrets.get(ZOOKEEPER_SASL), sasl_user=ZOOKEEPER_SASL_USER,
                tls_properties={"zookeeper.ssl.protocol": tls.protocol, "zookeeper.ssl.enabledProtocols": tls.enabled_protocols,
                                "zookeeper.ssl.ciphersuites": tls.cipher_suites})

    def _start_together(self, settings: Settings, plan: ClusterPlan, phase: str, nodes: Sequence[Node],
                        render: Callable[..., dict[str, str]]) -> None:
        """New nodes no client depends on yet (the migration's controllers): started at once,
        as a quorum must be, then waited for together."""
        specs = {spec.node: spec for spec in plan.containers}
        outcomes = set()
        for node in nodes:
            self.hook(f"{phase}:{node.name}")
            outcomes.add(self.engine.apply_container(plan, _with_files(specs[node.name], render(settings, node, self.env.secrets))))
        if outcomes != {"unchanged"}:
            self.engine.wait_healthy([node.container for node in nodes], NODE_TIMEOUT_S)
            self._wait_in_sync(settings)

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
        def none_copied() -> str | None:
            for node in controllers:
                if COPIED.search(self.engine.api.logs(node.container).decode(errors="replace")):
                    self.progress(f"{node.name}: copied the metadata from ZooKeeper")
                    return None
            return ""

        _poll(none_copied, 1, lambda _: f"no controller copied the metadata from ZooKeeper within {COPY_TIMEOUT_S} s: "
                                        f"see `docker logs` of {controllers[0].container}")


def abort(env: EnvironmentContext, progress: Progress = quiet, hook: Hook = lambda _: None) -> MigrationReport:
    """Undoes the migration in progress until it is finalized; refuses when there is none."""
    if not in_progress(env):
        raise SecureKafkaError(f"no migration of {env.env} is in progress: nothing to abort")
    with env.trail.recorded("migrate --abort") as changes:
        report = Migration(env, progress, hook).abort()
        changes.update(phases=report.phases)
    return report


def resume(env: EnvironmentContext, progress: Progress = quiet, hook: Hook = lambda _: None) -> MigrationReport:
    """Continues the migration in progress from its last finished step; refuses when there is none."""
    if not in_progress(env):
        raise SecureKafkaError(f"no migration of {env.env} is in progress: nothing to resume (start one with --to kraft)")
    return migrate(env, KRAFT, progress, hook)


def migrate(env: EnvironmentContext, to: str, progress: Progress = quiet, hook: Hook = lambda _: None) -> MigrationReport:
    if to != KRAFT:
        raise SecureKafkaError(f"cannot migrate to {to!r}: the only migration is --to kraft")
    if env.settings.metadata_mode == KRAFT and not in_progress(env):
        return MigrationReport(env.env, "nothing-to-do", [], env.settings.topology.cluster_id, 0.0)
    with env.trail.recorded("migrate", to=to) as changes:
        report = Migration(env, progress, hook).run()
        changes.update(phases=report.phases, cluster_id=report.cluster_id)
    return report
