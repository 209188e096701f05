"""The real cluster a rotation runs against: Docker containers, the Admin API, TLS handshakes.

``DockerCluster`` is the ``orchestrator.Cluster`` of an environment either engine started.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from ...build import render
from ...dockerclient import connect
from ...engines.docker_engine import DockerEngine
from ...errors import SecureKafkaError
from ...fsutil import write_atomic
from ...model.topology import ADMIN, Node
from ...pki.certstore import CertStore
from ...proc import Progress, quiet
from ...verify import probes
from .. import health
from ..context import EnvironmentContext

ZOOKEEPER_SERVING = re.compile(r"Peer state changed: (following|leading) - broadcast")
RELOADED_FILES = (
    ("ssl.keystore.type", "PKCS12"),
    ("ssl.keystore.location", "keystore"),
    ("ssl.keystore.password", "password"),
    ("ssl.key.password", "password"),
    ("ssl.truststore.type", "PKCS12"),
    ("ssl.truststore.location", "truststore"),
    ("ssl.truststore.password", "password"),
)


class DockerCluster:
    """An environment's running containers, as a rotation sees them (either engine made them)."""

    def __init__(self, env: EnvironmentContext, progress: Progress = quiet, timeout_s: float = 240):
        self.env = env
        self.settings = env.settings
        self.topology = env.settings.topology
        self.client = connect()
        self.engine = DockerEngine(self.client, env.project.root, progress)
        self.progress = progress
        self.timeout_s = timeout_s

    def _admin(self):
        # A new client each time: it reads the admin's files as they are now (they rotate too).
        return AdminClient({**self.env.admin_mtls_config(), "socket.timeout.ms": 10000})

    # -- health --------------------------------------------------------------------------------

    def unavailable(self, exempt: Sequence[str] = ()) -> list[str]:
        statuses = {s.name: s for s in self.engine.status(self.env.labels)}
        problems = []
        for node in self.topology.nodes:
            status = statuses.get(node.name)
            if node.name in exempt:
                continue
            if status is None:
                problems.append(f"{node.name} has no container")
            elif not status.healthy:
                problems.append(f"{node.name} is {status.state} ({status.health})")
        if not problems and not exempt:
            lag = self._wait_in_sync(timeout_s=60, quiet_fail=True)
            if lag:
                problems.append(lag)
        return problems

    def _out_of_sync(self) -> str | None:
        """What `status` would say is wrong with the cluster's metadata (the first thing), else None."""
        view = health.read_cluster_view(self.env.admin_mtls_config(), timeout_s=10)
        return next(iter(health.cluster_warnings(view, self.topology)), None)

    def _wait_in_sync(self, timeout_s: float, quiet_fail: bool = False) -> str | None:
        deadline = time.monotonic() + timeout_s
        good = 0
        while True:
            lag = self._out_of_sync()
            good = good + 1 if lag is None else 0
            if good >= 2:  # twice in a row: a broker just restarted may not be in the ISR yet
                return None
            if time.monotonic() > deadline:
                if quiet_fail:
                    return lag
                raise SecureKafkaError(f"the cluster is not back in sync after {timeout_s:.0f} s: {lag}")
            time.sleep(1)

    # -- reload and serials --------------------------------------------------------------------

    def reload(self, broker: Node) -> None:
        password = self.env.certs.store_password(broker.name)
        locations, tag = self._stores_named_by_content(broker)
        values = {**locations, "password": password}
        entries = []
        for listener in render.broker_listeners(self.settings, broker):
            if listener.protocol not in ("SSL", "SASL_SSL"):
                continue
            prefix = f"listener.name.{listener.name.lower()}."
            for key, value in RELOADED_FILES:
                entries.append(ConfigEntry(prefix + key, values.get(value, value),
                                           incremental_operation=AlterConfigOpType.SET))
        # Per broker (entity name = its id): the locations are this broker's files.
        resource = ConfigResource(ResourceType.BROKER, str(self.topology.broker_id(broker)), incremental_configs=entries)
        admin = self._admin()  # referenced until the futures resolve: a collected client cancels them
        try:
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=60)
        except KafkaException as exc:
            reason = exc.args[0].str()
            fix = ("re-apply the environment with `secure-kafka up` (its brokers lack password.encoder.secret)"
                   if "encoder" in reason.lower() else "check the broker's log")
            raise SecureKafkaError(f"{broker.name}: reloading its TLS stores failed ({reason}): {fix}, then --resume") from None
        # The broker names the new copies now (its dynamic config, also after a restart).
        for stale in self.env.certs.node_dir(broker.name).glob("*store-*.p12"):
            if not stale.name.endswith(f"-{tag}.p12"):
                stale.unlink()

    def _stores_named_by_content(self, broker: Node) -> tuple[dict[str, str], str]:
        """Copies of the broker's current keystore and truststore named by their content, and
        their paths in the container.

        Kafka reloads a listener's stores in place (KIP-226) when an AlterConfigs names them; a
        KRaft broker only when the location is a new one (an unchanged path is no config change
        there), so each generation of stores gets names of its own. Named by content, a re-run
        (--resume, --abort) names the same files again.
        """
        directory = self.env.certs.node_dir(broker.name)
        stores = {kind: (directory / f"{kind}.p12").read_bytes() for kind in ("keystore", "truststore")}
        tag = hashlib.sha256(stores["keystore"] + b"\0" + stores["truststore"]).hexdigest()[:16]
        for kind, data in stores.items():
            copy = directory / f"{kind}-{tag}.p12"
            if not copy.exists():
                write_atomic(copy, data, mode=0o600, uid=CertStore.container_uid())
        return {kind: f"{render.TLS_DIR}/{kind}-{tag}.p12" for kind in stores}, tag

    def _container_ip(self, node: Node) -> str:
        networks = self.client.api.inspect_container(node.container)["NetworkSettings"]["Networks"]
        return networks[self.topology.network]["IPAddress"]

    def served_serials(self, broker: Node) -> dict[str, int | None]:
        admin_dir = self.env.certs.client_dir(ADMIN)
        client_cert = (admin_dir / "client.crt", admin_dir / "client.key")
        served = {}
        for listener in render.broker_listeners(self.settings, broker):
            if listener.protocol not in ("SSL", "SASL_SSL"):
                continue
            # INTERNAL is on the environment network only: the host reaches the container's address.
            host = self._container_ip(broker) if listener.advertised_host == broker.name else "127.0.0.1"
            result = probes.tls_handshake(host, listener.port, None, server_hostname=listener.advertised_host,
                                          client_cert=client_cert, timeout=10)
            served[listener.name] = result.peer_serial
        return served

    # -- restarts ------------------------------------------------------------------------------

    def _log_since(self, node: Node, since: int) -> str:
        return self.client.api.logs(node.container, since=since, stdout=True, stderr=True).decode(errors="replace")

    def roll_order(self, quorum: Sequence[Node]) -> list[Node]:
        if len(self.topology.zookeepers) < 2:  # a KRaft quorum re-elects quickly: any order
            return list(quorum)

        def is_leader(node: Node) -> bool:
            return health.quorum_role(self.engine.logs_tail(node.container, 5000)) == "leader"

        return sorted(quorum, key=is_leader)  # followers first: one election, at the end

    def restart(self, node: Node) -> None:
        since = int(time.time()) - 1
        started = time.monotonic()
        self.engine.stop(node.container)
        self.client.api.start(node.container)
        self.engine.wait_healthy([node.container], self.timeout_s)
        if node.role == "zookeeper" and len(self.topology.zookeepers) > 1:
            deadline = time.monotonic() + self.timeout_s
            while not ZOOKEEPER_SERVING.search(self._log_since(node, since)):
                if time.monotonic() > deadline:
                    raise SecureKafkaError(f"{node.name} did not rejoin the ZooKeeper ensemble within {self.timeout_s:.0f} s")
                time.sleep(1)
        self._wait_in_sync(self.timeout_s)
        self.progress(f"{node.name}: back, cluster in sync ({time.monotonic() - started:.0f} s)")
