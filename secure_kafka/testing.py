"""Ephemeral secure environments for tests: ours, and our users' CI pipelines.

``running_environment`` stands up a real environment in a project directory of its own and
purges it afterwards (containers, network, volumes, PKI), also when the body fails or the
process is interrupted (SIGINT, SIGTERM).

It is also a pytest plugin (entry point ``secure_kafka``, loaded wherever the package is
installed): the session fixture ``secure_kafka_env`` stands up one ``ci``-profile environment
in a temporary project, creates the principals the ini option ``secure_kafka_principals`` (or
an override of the ``secure_kafka_principals`` fixture) names, applies the ACL file
``secure_kafka_acl_file`` names, yields a ``SecureKafkaStack`` with ready client configs, and
removes everything at the end of the session. Fixtures are lazy: a session that uses none of
them starts no cluster. README, "Use it in your CI", has a complete example.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .environment import Environment
from .errors import SecureKafkaError
from .fsutil import write_atomic
from .model import settings as sk_settings
from .model.acl import acl_file
from .model.profiles import get_profile
from .model.settings import Project
from .model.topology import ADMIN, METADATA_MODES, ZOOKEEPER
from .ops import acladmin, users
from .pki.certstore import PASSPHRASE_ENV
from .proc import Progress

__all__ = [
    "free_port_base",
    "running_environment",
    "sigterm_interrupts",
    "signals_deferred",
    "ClientConfig",
    "read_librdkafka_conf",
    "SecureKafkaStack",
    "ci_stack",
    "pytest_addoption",
    "secure_kafka_principals",
    "secure_kafka_env",
]


def free_port_base() -> int:
    """A port base whose 100 ports are all free on 127.0.0.1 (environments publish there)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 100)
        try:
            for port in range(base, base + 100):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of 100 ports on 127.0.0.1")


# --- Interrupts --------------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as SIGINT does, so ``finally`` blocks run on both.

    Python's default SIGTERM ends the process without unwinding, which would leave the
    environment's containers, mounts and keys behind. CI runners stop a cancelled job with
    SIGINT, then SIGTERM.
    """
    if not _in_main_thread():  # signal handlers can only be set from the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred(progress: Progress) -> Iterator[None]:
    """Cleanup runs to its end: SIGINT and SIGTERM arriving meanwhile are reported, not obeyed.

    A second Ctrl-C (or a runner's SIGTERM after its SIGINT) must not stop a teardown
    half-way, with volumes mounted and their keys in the kernel. SIGKILL cannot be caught.
    """
    if not _in_main_thread():
        yield
        return

    def hold(signum, frame) -> None:
        progress(f"{signal.Signals(signum).name} received: finishing the cleanup first")

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def running_environment(
    root: Path, profile: str = "dev", *, name: str | None = None, progress: Progress = print, **overrides
) -> Iterator[Environment]:
    """A real environment in a fresh project dir, up and verified; purged afterwards, also on failure.

    ``overrides`` replace ``Settings`` fields (e.g. ``encrypted_volumes=False``). SIGTERM
    interrupts like SIGINT while the environment lives, and neither stops its purge. A prod
    environment never generates its passphrase: without ``$SECURE_KAFKA_PASSPHRASE`` this
    throwaway one gets a random passphrase for its lifetime.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
    name = name or f"t{uuid.uuid4().hex[:6]}"
    settings = dataclasses.replace(
        sk_settings.defaults(name, get_profile(profile), port_base=free_port_base()), **overrides
    )
    project = Project(root)
    project.write(settings)
    env = Environment(project, name, progress=progress)
    with sigterm_interrupts(), _passphrase_set():
        try:
            env.up()
            yield env
        finally:
            with signals_deferred(progress):
                env.down(purge=True)


@contextlib.contextmanager
def _passphrase_set() -> Iterator[None]:
    if os.environ.get(PASSPHRASE_ENV):
        yield
        return
    os.environ[PASSPHRASE_ENV] = secrets.token_urlsafe(24)
    try:
        yield
    finally:
        os.environ.pop(PASSPHRASE_ENV, None)


# --- The CI stack -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Ready-to-use client settings of one principal, written by ``Environment.client_config``."""

    principal: str
    auth: str  # scram (SASL_SSL listener) or mtls (SSL listener)
    librdkafka: dict[str, str]  # for confluent_kafka.Producer / Consumer / AdminClient
    librdkafka_file: Path  # the same as key=value lines, for `kcat -F`
    java_properties: Path  # client.properties for Java clients and Kafka's own tools
    directory: Path  # the CA, and for mtls the certificate, key and stores the configs name


def read_librdkafka_conf(path: Path) -> dict[str, str]:
    """A librdkafka ``key=value`` file as a dict (comments and blank lines skipped)."""
    config = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value
    return config


class SecureKafkaStack:
    """A running ephemeral environment and the client configs of its principals."""

    def __init__(self, env: Environment, producer_tuning: bool = True):
        self.env = env
        self.producer_tuning = producer_tuning  # render.render_client_config's
        self._configs: dict[tuple[str, str | None], ClientConfig] = {}

    @property
    def name(self) -> str:
        return self.env.env

    @property
    def project_root(self) -> Path:
        return self.env.project.root

    @property
    def bootstrap_servers(self) -> dict[str, list[str]]:
        """``{"sasl_ssl": ["localhost:port", ...], "ssl": [...]}``."""
        return self.env.bootstrap_servers

    @property
    def principals(self) -> list[str]:
        """admin and every principal added (each is ``User:<name>``, by SCRAM and by certificate)."""
        return users.scram_users(self.env)

    def add_principal(self, name: str) -> None:
        """A SCRAM user and client certificate ``User:<name>`` with no permissions (``users add``)."""
        users.add(self.env, name)

    def apply_acls(self, source: Path) -> None:
        """Copies an ACL file (the ``acls/<env>.yaml`` format) into the project and applies it."""
        text = source.read_text()
        write_atomic(acl_file(self.project_root, self.name), text, mode=0o644)
        desired = acladmin.load_desired(self.env)  # validated against the principals that exist now
        acladmin.apply(self.env.admin_client(), desired, prune=False, progress=self.env.progress)

    def client(self, principal: str = ADMIN, auth: str | None = None) -> ClientConfig:
        """Client configs of ``principal``; ``auth`` scram (the default) or mtls."""
        key = (principal, auth)
        if key not in self._configs:
            if principal not in self.principals:
                raise SecureKafkaError(
                    f"no principal {principal!r} in the CI environment {self.name}: add it to the ini option "
                    "secure_kafka_principals (or the secure_kafka_principals fixture)"
                )
            auth = auth or "scram"
            directory = self.project_root / "client-configs" / f"{principal}-{auth}"
            librdkafka_file = self.env.client_config(principal, "librdkafka", auth, directory, self.producer_tuning)
            java_properties = self.env.client_config(principal, "java", auth, directory, self.producer_tuning)
            self._configs[key] = ClientConfig(principal, auth, read_librdkafka_conf(librdkafka_file),
                                              librdkafka_file, java_properties, directory)
        return self._configs[key]


@contextlib.contextmanager
def ci_stack(
    principals: tuple[str, ...] | list[str] = (),
    acl_source: Path | None = None,
    encrypted_volumes: bool = True,
    progress: Progress = print,
    metadata_mode: str = ZOOKEEPER,
    producer_tuning: bool = True,
) -> Iterator[SecureKafkaStack]:
    """An ephemeral ``ci``-profile environment in a temporary project, removed without a trace.

    ``metadata_mode`` "zookeeper" runs Kafka 3.9 with ZooKeeper, "kraft" Kafka 4.4.
    ``producer_tuning``: whether the client configs carry the producer settings that keep TLS
    cheap (``render.render_client_config``).

    On exit (also on failure, SIGINT or SIGTERM): containers, network, volumes, mounts, keys
    and PKI are purged, then the temporary project directory is deleted.
    """
    root = Path(tempfile.mkdtemp(prefix="secure-kafka-ci-"))
    name = f"ci-{uuid.uuid4().hex[:8]}"
    try:
        with running_environment(root, profile="ci", name=name, progress=progress,
                                 encrypted_volumes=encrypted_volumes, metadata_mode=metadata_mode) as env:
            stack = SecureKafkaStack(env, producer_tuning)
            for principal in principals:
                stack.add_principal(principal)
            if acl_source is not None:
                stack.apply_acls(acl_source)
            yield stack
    finally:
        if Project(root).certs_dir(name).exists():
            # The purge failed (its error is on its way): keep what it needs to be re-run.
            progress(f"cleanup of {name} incomplete: finish it with "
                     f"`SECURE_KAFKA_PROJECT={root} secure-kafka down {name} --purge`")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --- pytest plugin -----------------------------------------------------------------------------

INI_PRINCIPALS = "secure_kafka_principals"
INI_ACL_FILE = "secure_kafka_acl_file"
INI_ENCRYPTED_VOLUMES = "secure_kafka_encrypted_volumes"
INI_METADATA_MODE = "secure_kafka_metadata_mode"
INI_PRODUCER_TUNING = "secure_kafka_producer_tuning"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_PRINCIPALS, "principals the secure_kafka_env fixture creates besides admin "
                  "(SCRAM user + client certificate each, no permissions)", type="args", default=[])
    parser.addini(INI_ACL_FILE, "ACL file (acls/<env>.yaml format, relative to the ini file) the "
                  "secure_kafka_env fixture applies after creating the principals", type="paths", default=[])
    parser.addini(INI_ENCRYPTED_VOLUMES, "whether the secure_kafka_env environment keeps its data on "
                  "encrypted volumes (needs root; default true)", type="bool", default=True)
    parser.addini(INI_METADATA_MODE, "zookeeper (Kafka 3.9, the default) or kraft (Kafka 4.4): the "
                  "secure_kafka_env environment's metadata mode", default=ZOOKEEPER)
    parser.addini(INI_PRODUCER_TUNING, "whether the client configs carry producer settings that keep TLS "
                  "cheap (compression.type=lz4, linger.ms=20, larger batches; default true)", type="bool", default=True)


def _terminal_line(config: pytest.Config) -> Callable[[str], None]:
    """Writes a line to the terminal past pytest's output capture (session setup is slow)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"secure-kafka: {line}")

    return write


@pytest.fixture(scope="session")
def secure_kafka_principals(pytestconfig: pytest.Config) -> list[str]:
    """Principals created besides admin: the ini option ``secure_kafka_principals``; override to change."""
    return list(pytestconfig.getini(INI_PRINCIPALS))


@pytest.fixture(scope="session")
def secure_kafka_env(pytestconfig: pytest.Config, secure_kafka_principals: list[str]) -> Iterator[SecureKafkaStack]:
    """An ephemeral secure Kafka (ci profile: 1 ZooKeeper node or KRaft controller + 1 broker,
    SASL_SSL + mTLS, ACLs) for the session."""
    announce = _terminal_line(pytestconfig)
    progress = announce if pytestconfig.get_verbosity() > 0 else (lambda line: None)
    acl_files = pytestconfig.getini(INI_ACL_FILE)
    mode = pytestconfig.getini(INI_METADATA_MODE)
    if mode not in METADATA_MODES:
        raise SecureKafkaError(f"ini option {INI_METADATA_MODE} is {mode!r}: use {' or '.join(METADATA_MODES)}")
    with ci_stack(secure_kafka_principals, acl_files[0] if acl_files else None,
                  pytestconfig.getini(INI_ENCRYPTED_VOLUMES), progress, metadata_mode=mode,
                  producer_tuning=pytestconfig.getini(INI_PRODUCER_TUNING)) as stack:
        announce(f"environment {stack.name} up (project {stack.project_root}); "
                 f"SASL_SSL {','.join(stack.bootstrap_servers['sasl_ssl'])}, principals {', '.join(stack.principals)}")
        try:
            yield stack
        finally:
            announce(f"environment {stack.name}: removing")
    announce(f"environment {stack.name}: removed")
