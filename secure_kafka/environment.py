"""An environment's life: ``up``, ``down``, ``status``, ``client-config``.

Ties the pieces together in one place: settings → PKI → plan → engine → provisioning →
verification. The CLI only parses arguments and calls these. The operations it calls
(``ops``, ``ops.rotation``, ``verify``) take the ``EnvironmentContext`` it is.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from . import verify
from .build import image
from .build.plan import QUORUM_ROLES, ClusterPlan
from .build.planner import build_plan
from .dockerclient import connect
from .engines.docker_engine import DockerEngine
from .engines.pulumi.engine import PulumiEngine
from .engines.pulumi.program import declare
from .errors import SecureKafkaError
from .model import policy
from .ops import acladmin, health, migration, provision
from .ops.context import EnvironmentContext
from .storage.volumes import UNSERVED, fullness_warning

__all__ = ["UpResult", "Environment"]


@dataclass
class UpResult:
    env: str
    nodes: dict[str, str]  # node -> created | replaced | unchanged | started
    scram_users_created: list[str]
    round_trip_s: float
    elapsed_s: float
    bootstrap: dict[str, list[str]]
    verification: dict | None = None  # verify.Scorecard.to_json() of the probes `up` ran last


class Environment(EnvironmentContext):
    """The lifecycle of one environment of one project: its context, and ``up``/``down``/``status``."""

    def ensure_pki(self) -> None:
        if not self.certs.exists():
            self.progress(f"PKI of {self.env}: creating")
            self.certs.init()
        else:
            self.certs.load()  # fails early on a wrong passphrase or a corrupt CA

    def prepare(self, build_image: bool = True) -> ClusterPlan:
        """What comes before either engine applies anything, in this order: the profile's policy
        (a failing environment gets nothing, not even its PKI), the runtime image (built when
        missing, else only its tag), the ACL file, the PKI (created on first use); then the plan."""
        policy.enforce(self.settings)
        if migration.in_progress(self):
            raise SecureKafkaError(f"a migration of {self.env} to KRaft has not finished: continue it with "
                                   f"`secure-kafka migrate {self.env} --to kraft`")
        mode = self.settings.metadata_mode
        tag = image.ensure_image(connect(), self.progress, mode=mode) if build_image else image.image_tag(mode)
        acladmin.load_desired(self)  # a bad ACL file fails before anything is applied
        self.ensure_pki()
        return build_plan(self.project.root, self.settings, self.secrets, tag, revocation=self.certs.revocation_enabled())

    def up(self, engine: str = "docker") -> UpResult:
        started = time.monotonic()
        plan = self.prepare()
        with self.trail.recorded("up", engine=engine, overrides=policy.overrides(self.settings)) as changes:
            result = self._apply(plan, engine, started, changes)
            changes.update(nodes=result.nodes, scram_users_created=result.scram_users_created)
        self.collect_decisions()  # the probes' own denials among them
        return result

    def _apply(self, plan: ClusterPlan, engine: str, started: float, changes: dict[str, object]) -> UpResult:
        """Applies ``plan``; what it changed goes into ``changes`` as it happens (the trail entry's)."""
        if engine == "pulumi":
            # The program maps this plan, unlocks the volumes and provisions the cluster (engines/pulumi).
            stack = PulumiEngine(self.project.root, self.env, self.progress)
            outputs = stack.up(self.pulumi_passphrase(), program=lambda: declare(self, plan)).outputs
            nodes = {node.name: "applied" for node in self.settings.topology.nodes}
            provisioned = provision.Provisioned(outputs["verification"]["scramUsersCreated"],
                                                outputs["verification"]["roundTripS"])
        else:
            opened = self.open_volumes()
            changes["volumes"] = opened  # created, unlocked or remounted, per node
            remounted = frozenset(node for node, outcome in opened.items() if outcome == "remounted")
            nodes = DockerEngine(connect(), self.project.root, self.progress).apply(plan, restart=remounted)
            provisioned = provision.provision(self)
        verification = self.verify_after_up()
        return UpResult(self.env, nodes, provisioned.scram_users_created, provisioned.round_trip_s,
                        time.monotonic() - started, self.bootstrap_servers, verification)

    def verify_after_up(self) -> dict:
        """``up``'s last step: prod runs every probe and fails on any failure; dev and ci run
        the quick set (no ZooKeeper shells) and report one line (`secure-kafka verify` runs all)."""
        prod = self.settings.profile.name == "prod"
        self.progress("cluster: running the security probes" + ("" if prod else " (quick set)"))
        card = verify.run(self, quick=not prod)
        self.progress(card.summary())
        for failure in card.failed:
            self.progress(f"  {failure.probe}: expected {failure.expected}, observed {failure.observed}")
        if prod and not card.passed:
            raise SecureKafkaError(f"{card.summary()}: the environment is up but not verified; "
                                   f"`secure-kafka verify {self.env}` shows the scorecard")
        return card.to_json()

    def open_volumes(self) -> dict[str, str]:
        """Unlocks (on first use: creates) the nodes' encrypted volumes, before any container
        starts; ``EncryptedVolumes.open``'s outcome per node (none with plain volumes)."""
        return self.volumes.open() if self.settings.encrypted_volumes else {}

    def pulumi_passphrase(self) -> str:
        """Pulumi's secrets passphrase: $PULUMI_CONFIG_PASSPHRASE, else the environment's own."""
        return os.environ.get("PULUMI_CONFIG_PASSPHRASE") or self.certs.passphrase()

    def preview(self) -> str:
        """What `pulumi preview` would change (the Pulumi engine only: the Docker engine has no preview)."""
        plan = self.prepare(build_image=False)
        engine = PulumiEngine(self.project.root, self.env, self.progress)
        return engine.preview(self.pulumi_passphrase(), program=lambda: declare(self, plan)).summary

    def down(self, purge: bool = False, engine: str = "docker") -> None:
        # With --purge the trail goes with the environment; with no PKI there is none to keep.
        if purge or not self.certs.root.exists():
            self._down(purge, engine)
            return
        with self.trail.recorded("down", engine=engine):
            self.collect_decisions()  # while the containers that hold the logs exist
            self._down(purge, engine)

    def _down(self, purge: bool, engine: str) -> None:
        if engine == "pulumi":
            PulumiEngine(self.project.root, self.env, self.progress).destroy(self.pulumi_passphrase())
        # Also after `pulumi destroy`: sweeps what the other engine made, and (purge) the volumes Pulumi retains.
        DockerEngine(connect(), self.project.root, self.progress).down(self.labels, purge=purge)
        # Once no container holds them: the plaintext paths go, the keys leave the kernel.
        self.volumes.close()
        if purge:
            self.volumes.destroy()
        if purge:
            certs_dir = self.project.certs_dir(self.env)
            if certs_dir.exists():
                self.progress(f"PKI and secrets of {self.env}: removing {certs_dir}")
                shutil.rmtree(certs_dir)

    def status(self) -> dict:
        engine = DockerEngine(connect(), self.project.root)
        nodes = engine.status(self.labels)
        topology = self.settings.topology
        expected = {n.name for n in topology.nodes}
        present = {n.name for n in nodes}
        warnings = [f"{name}: not running (no container)" for name in sorted(expected - present)]
        warnings += health.node_warnings({n.name: (n.state, n.health) for n in nodes})
        quorum_roles, cluster, cluster_issues = {}, None, []
        if nodes:  # an environment that is down gets no word on its quorum or its metadata
            warnings += health.quorum_warnings(topology, {n.name for n in nodes if n.healthy})
            quorum_roles = {n.name: health.quorum_role(engine.logs_tail(n.container, 5000)) if n.state == "running" else "down"
                            for n in nodes if n.role in QUORUM_ROLES}
            if any(n.role == "broker" and n.state == "running" for n in nodes) and self.certs.exists():
                cluster = health.read_cluster_view(self.admin_mtls_config())
                cluster_issues = health.cluster_warnings(cluster, topology)
                warnings += cluster_issues
        if self.certs.exists():
            window = self.settings.profile.expiry_warning_days
            for entry in self.certs.list():
                if entry.days_left <= window:
                    warnings.append(f"certificate {entry.name} expires in {entry.days_left} days: run `secure-kafka certs rotate {self.env}`")
        else:
            warnings.append(f"no PKI yet: run `secure-kafka certs init {self.env}` or `secure-kafka up {self.env}`")
        volume_states = self.volumes.states()
        unserved = [node for node, state in volume_states.items() if state == UNSERVED]
        if self.settings.encrypted_volumes:
            for node, (total, free) in self.volumes.fullness(volume_states).items():
                if warning := fullness_warning(node, total, free, self.env):
                    warnings.append(warning)
        warnings += [f"volume of {node}: mounted but unserved (its {self.volumes.backend_of(node).name} daemon is gone), "
                     f"so {node} can neither read nor write its data: run `secure-kafka up {self.env}` to mount it "
                     f"again and restart {node}" for node in unserved]
        return {
            "env": self.env,
            "profile": self.settings.profile.name,
            "metadata_mode": self.settings.metadata_mode,
            "kafka_version": self.settings.kafka_version,
            # A node whose volume nobody serves still answers its healthcheck (a TCP connect),
            # until it next touches its data; a broker cut off from the others still answers it too.
            "healthy": bool(nodes) and expected <= present and all(n.healthy for n in nodes) and not unserved
                       and cluster is not None and not cluster_issues,
            "nodes": [{"name": n.name, "role": n.role, "container": n.container, "state": n.state,
                       "health": n.health, "healthy": n.healthy} for n in nodes],
            # leader | follower | down | what the node last logged (looking, candidate, unknown, ...)
            "quorum": quorum_roles,
            "cluster": cluster.to_json() if cluster else None,
            "bootstrap": self.bootstrap_servers,
            # Per node: unlocked (mounted, key in the kernel), locked, unserved (mounted, its
            # daemon gone), or absent (not created yet).
            "encrypted_volumes": {"enabled": self.settings.encrypted_volumes, "backend": self.volumes.backend.name,
                                  "nodes": volume_states},
            "warnings": warnings,
        }
