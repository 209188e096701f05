"""``EnvironmentContext``: what the operations on one environment are given.

One project's environment as its parts: its settings, its PKI (``certs``), its generated
secrets, its encrypted volumes, where progress goes, and the admin's client configurations.
``acladmin``, ``users``, ``provision``, ``verify`` and ``rotation`` take one of these and
nothing else; ``Environment`` (``secure_kafka.environment``, the lifecycle on top) is one,
and the Pulumi program's dynamic resources, which run in Pulumi's own process, open one
from their inputs without the lifecycle that called them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ..build import render
from ..build.planner import environment_labels
from ..dockerclient import connect
from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.settings import Project, Settings
from ..model.topology import ADMIN
from ..pki.certstore import CertStore
from ..pki.secretstore import SecretStore, scram_password_name
from ..proc import Progress, quiet
from ..storage.volumes import EncryptedVolumes, make_backend, run_dir
from . import audit, clients, kafka_admin
from .decision_trail import Collected, DecisionTrail
from .trail import TRAIL_KEY, Trail

__all__ = ["EnvironmentContext"]

REACH_TIMEOUT_S = 20  # a running cluster answers its admin within this


class EnvironmentContext:
    """One environment of one project: settings, certs, secrets, volumes, progress."""

    def __init__(
        self,
        project: Project,
        env: str,
        prompt: Callable[[str], str | None] | None = None,
        progress: Progress = quiet,
        settings: Settings | None = None,
    ):
        self.project = project
        self.env = env
        # Settings handed over (a dynamic resource's inputs) name no project: this one decides their id.
        self.settings: Settings = replace(settings, project_id=project.id) if settings else project.load(env)
        self.progress = progress
        self.certs = CertStore(project, self.settings, prompt=prompt)
        self.secrets = SecretStore(project.certs_dir(env) / "secrets.json")
        self.volumes = EncryptedVolumes(
            project.root, project.certs_dir(env), env, run_dir(self.settings.project_id, env),
            tuple(n.name for n in self.settings.topology.nodes), self.settings.volume_size_gib,
            self.certs.passphrase, progress, make_backend(self.settings.volume_backend),
        )

    @property
    def trail(self) -> Trail:
        """The operations trail (``ops/trail.py``): who changed this environment's security, and how."""
        return Trail(self.project.certs_dir(self.env) / "audit", self.secrets)

    @property
    def decisions(self) -> DecisionTrail:
        """The decisions and failed logins collected from the nodes' audit logs (``ops/decision_trail.py``)."""
        return DecisionTrail(self.project.certs_dir(self.env) / "audit" / "decisions",
                             lambda: self.secrets.get(TRAIL_KEY).encode())

    def collect_decisions(self) -> list[Collected]:
        """Collects what the nodes logged since the last collection, then drops the days past
        the profile's retention."""
        collected = audit.collect(connect(), self.settings.topology, self.decisions, self.progress)
        self.decisions.prune(self.settings.profile.audit_retention_days, dt.datetime.now(dt.timezone.utc).date())
        return collected

    @property
    def labels(self) -> dict[str, str]:
        """The labels every Docker object of this environment carries (project id included)."""
        return environment_labels(self.settings)

    @property
    def bootstrap_servers(self) -> dict[str, list[str]]:
        return self.settings.topology.bootstrap_servers

    def admin_mtls_config(self) -> dict[str, str]:
        """librdkafka settings of the admin over mTLS (a super user)."""
        return clients.mtls_config(self.settings, self.certs.client_dir(ADMIN))

    def scram_config(self, user: str) -> dict[str, str]:
        """librdkafka settings of a SCRAM user over SASL_SSL, its password from the secret store."""
        return clients.scram_config(
            self.settings, self.certs.client_dir(ADMIN) / "ca.crt", user, self.secrets.get(scram_password_name(user))
        )

    def client_config(self, principal: str, fmt: str, auth: str | None, out: Path, producer_tuning: bool = True) -> Path:
        """Writes a ready-to-use client config plus the files it points at into ``out``;
        ``producer_tuning``: ``render.render_client_config``'s."""
        if fmt not in render.CLIENT_CONFIG_FORMATS:
            raise SecureKafkaError(f"unknown format {fmt!r}: use {', '.join(render.CLIENT_CONFIG_FORMATS)}")
        has_scram = self.secrets.has(scram_password_name(principal))
        auth = auth or ("scram" if has_scram else "mtls")
        if auth not in ("scram", "mtls"):
            raise SecureKafkaError(f"unknown auth {auth!r}: use scram or mtls")
        if auth == "scram" and not has_scram:
            raise SecureKafkaError(f"{principal} has no SCRAM user in {self.env}: use --auth mtls or `secure-kafka users add`")
        source = self.certs.client_dir(principal)
        if not source.is_dir():
            raise SecureKafkaError(f"no client certificate for {principal} in {self.env}: add the principal first")
        out = out.resolve()
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        wanted = ["ca.crt", "truststore.p12"] + (["client.crt", "client.key", "keystore.p12"] if auth == "mtls" else [])
        for name in wanted:
            write_atomic(out / name, (source / name).read_bytes(), mode=0o600 if name != "ca.crt" else 0o644)
        password = self.secrets.get(scram_password_name(principal)) if auth == "scram" else None
        filename, text = render.render_client_config(
            self.settings, fmt=fmt, auth=auth, directory=out, principal=principal,
            store_password=self.certs.store_password(principal), scram_password=password,
            producer_tuning=producer_tuning,
        )
        write_atomic(out / filename, text, mode=0o600)
        return out / filename

    def admin_client(self, timeout_s: float = REACH_TIMEOUT_S) -> AdminClient:
        """The admin over mTLS, once every broker is registered; a clear error when the cluster does not answer."""
        try:
            return kafka_admin.wait_for_admin(self.admin_mtls_config(), len(self.settings.topology.brokers), timeout_s)
        except SecureKafkaError as exc:
            raise SecureKafkaError(f"{exc}: is {self.env} up? run `secure-kafka up {self.env}`") from None
