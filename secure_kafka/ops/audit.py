"""The audit trail: every authorizing node's decisions and failed logins, read back and parsed.

Each broker's authorizer (``AclAuthorizer`` in ZooKeeper mode, ``StandardAuthorizer`` in
KRaft mode, where the controllers have one too) logs its decisions
(``kafka.authorizer.logger``: allowed at DEBUG, denied at INFO) to
``/var/lib/kafka/audit/kafka-authorizer.log`` on the node's volume, rolled at 10 MB with a
bounded number of backups (templates/log4j-broker.properties.j2, log4j2-kafka.properties.j2).
Kafka's network layer logs every failed login to the same file: the client's address, the
local address and port (which name the listener), and why; for SCRAM, the user the client
claimed (our SCRAM provider puts it in the message: docker/java/.../NamedScramFailures.java).
``read`` and ``read_failed_logins`` fetch the current file and its backups from every such
container through the Docker API (``get_archive``: works on a stopped container too) and
parse each line; parsing is pure and tested on its own.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import docker.errors

import docker

from ..build.render import AUDIT_LOG, broker_listeners
from ..errors import SecureKafkaError
from ..model.settings import Settings
from ..model.topology import CONTROLLER_PORT, Node, Topology

__all__ = ["Decision", "FailedLogin", "parse_line", "parse_log", "parse_failed_logins", "parse_duration", "principal_named", "select",
           "listener_names", "read", "read_failed_logins"]

AUDIT_DIR, _, AUDIT_FILE = AUDIT_LOG.rpartition("/")

# ZooKeeper mode's AclAuthorizer (Kafka 3.9):
# [2026-11-29 06:15:35,047] INFO Principal = User:alice is Denied Operation = Describe from host = 172.23.0.1
#   on resource = Topic:LITERAL:exp-a for request = Metadata with resourceRefCount = 1
# KRaft mode's StandardAuthorizer (Kafka 4.x) spells the operation as its enum constant and
# names the rule that decided:
# [2026-12-04 06:15:35,047] INFO Principal = User:alice is Denied operation = DESCRIBE from host = 172.23.0.1
#   on resource = Topic:LITERAL:exp-a for request = Metadata with resourceRefCount = 1 based on rule DefaultRule(DENIED)
DECISION = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \w+ "
    r"Principal = (?P<principal>\S+) is (?P<decision>Allowed|Denied) [Oo]peration = (?P<operation>\S+) "
    r"from host = (?P<host>\S+) on resource = (?P<resource_type>[A-Za-z]+):(?P<pattern>[A-Z]+):(?P<name>.*) "
    r"for request = (?P<request>\S+) with resourceRefCount = \d+(?: based on rule .*)?$"
)
# A failed login as Kafka's network layer (Selector, server side) logs it; SCRAM's names the user
# (escaped to printable ASCII by our provider), TLS's cannot (no principal before a handshake):
# [2026-12-06 01:38:20,369] INFO [SocketServer listenerType=ZK_BROKER, nodeId=0] Failed authentication with
#   /172.21.0.1 (channelId=172.21.0.3:19001-172.21.0.1:33894-22) (Authentication failed: invalid credentials
#   for user mallory with SASL mechanism SCRAM-SHA-512)
# [2026-12-06 01:38:26,493] INFO [SocketServer ...] Failed authentication with /172.21.0.1
#   (channelId=172.21.0.3:19002-172.21.0.1:40106-6) (SSL handshake failed)
# Kafka 4.x's channel ids carry the processor too: 172.29.0.3:59101-172.29.0.1:55514-3-14.
FAILED_LOGIN = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \w+ (?:\[[^\]]*\] )?"
    r"Failed (?:re-)?authentication with \S*/(?P<host>[^\s/]+) "
    r"\(channelId=\S+?:(?P<port>\d+)-[^\s:]+:\d+(?:-\d+)+\) \((?P<reason>.*)\)$"
)
CLAIMED_USER = re.compile(r" for user (?P<user>\S+) with SASL mechanism (?P<mechanism>\S+)$")
DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


@dataclass(frozen=True)
class Decision:
    time: datetime  # UTC (the containers run in UTC)
    node: str  # who decided: a broker, or (KRaft) a controller, which authorizes what brokers forward to it
    principal: str
    allowed: bool
    operation: str
    resource_type: str  # Kafka's: Topic, Group, Cluster, TransactionalId
    pattern: str
    resource: str
    host: str  # the client's address as the broker saw it
    request: str

    def to_json(self) -> dict[str, object]:
        return {"time": self.time.isoformat().replace("+00:00", "Z"), "node": self.node,
                "principal": self.principal, "allowed": self.allowed, "operation": self.operation,
                "resource_type": self.resource_type, "pattern": self.pattern, "resource": self.resource,
                "host": self.host, "request": self.request}

    def __str__(self) -> str:
        verdict = "ALLOWED" if self.allowed else "DENIED "
        return (f"{self.time:%Y-%m-%d %H:%M:%S} {self.node} {verdict} {self.principal} {self.operation} "
                f"{self.resource_type}:{self.resource} from {self.host} ({self.request})")


@dataclass(frozen=True)
class FailedLogin:
    time: datetime  # UTC
    node: str  # the broker or controller that refused it
    principal: str | None  # User:<name> a SCRAM client claimed; None where TLS failed (no principal yet)
    listener: str  # SASL_SSL_EXT, SSL_EXT, INTERNAL, CONTROLLER, or "port N" when unknown
    host: str  # the client's address as the node saw it
    reason: str  # Kafka's words: "SSL handshake failed", "Authentication failed: invalid credentials ..."

    def to_json(self) -> dict[str, object]:
        return {"time": self.time.isoformat().replace("+00:00", "Z"), "node": self.node, "principal": self.principal,
                "listener": self.listener, "host": self.host, "reason": self.reason}

    def __str__(self) -> str:
        claimed = CLAIMED_USER.search(self.reason)
        why = f"{claimed['mechanism']} credentials refused" if claimed else self.reason
        return (f"{self.time:%Y-%m-%d %H:%M:%S} {self.node} FAILED LOGIN {self.principal or '(no principal)'} "
                f"on {self.listener} from {self.host}: {why}")


def parse_failed_logins(text: str, node: str, listeners: dict[int, str]) -> list[FailedLogin]:
    """The failed logins in an audit file's ``text``; ``listeners`` names the node's ports."""
    found = []
    for line in text.splitlines():
        match = FAILED_LOGIN.match(line.rstrip("\r"))
        if not match:
            continue
        claimed = CLAIMED_USER.search(match["reason"])
        port = int(match["port"])
        found.append(FailedLogin(_time(match["time"]), node, f"User:{claimed['user']}" if claimed else None,
                                 listeners.get(port, f"port {port}"), match["host"], match["reason"]))
    return found


def _time(text: str) -> datetime:
    """log4j's ``2026-12-06 01:38:20,369``, UTC. fromisoformat, not strptime: it halved the
    parsing of a large trail (benchmarks/audit_filter_bench.py)."""
    return datetime.fromisoformat(text.replace(",", ".")).replace(tzinfo=timezone.utc)


def parse_line(line: str, node: str) -> Decision | None:
    """A decision, or None for the authorizer's other lines (super-user notes, no-ACL notes)."""
    match = DECISION.match(line.rstrip("\r\n"))
    if not match:
        return None
    return Decision(_time(match["time"]), node, match["principal"], match["decision"] == "Allowed", _operation_name(match["operation"]),
                    match["resource_type"], match["pattern"], match["name"], match["host"], match["request"])


def _operation_name(spelled: str) -> str:
    """One spelling in both modes, AclAuthorizer's (and the ACL file's): DESCRIBE_CONFIGS -> DescribeConfigs."""
    if spelled.isupper():
        return "".join(word.capitalize() for word in spelled.split("_"))
    return spelled


def parse_log(text: str, node: str) -> list[Decision]:
    return [d for d in (parse_line(line, node) for line in text.splitlines()) if d is not None]


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``."""
    match = DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groupdict().values()):
        raise SecureKafkaError(f"invalid duration {text!r}: use e.g. 30s, 15m, 2h, 1d or 1h30m")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def principal_named(name: str) -> str:
    """``alice`` -> ``User:alice``; a name that already has a type is kept as it is."""
    return name if ":" in name else f"User:{name}"


def select(decisions: list[Decision], denied_only: bool = False, since: datetime | None = None,
           principal: str | None = None) -> list[Decision]:
    """The decisions that pass every filter given, by time."""
    wanted = principal_named(principal) if principal else None
    chosen = [d for d in decisions if (not denied_only or not d.allowed) and (since is None or d.time >= since)
              and (wanted is None or d.principal == wanted)]
    return sorted(chosen, key=lambda d: (d.time, d.node))


def _log_files(archive: bytes) -> dict[str, str]:
    """File name -> text of the audit files in a ``get_archive`` tar of the audit directory."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            name = member.name.rpartition("/")[2]
            if member.isfile() and (name == AUDIT_FILE or name.startswith(AUDIT_FILE + ".")):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[name] = extracted.read().decode("utf-8", errors="replace")
    return files


def _rotation_order(name: str) -> int:
    """Oldest first: kafka-authorizer.log.5 ... .log.1, then kafka-authorizer.log."""
    suffix = name[len(AUDIT_FILE) + 1:]
    return -int(suffix) if suffix.isdigit() else 0


def listener_names(settings: Settings, node: Node) -> dict[int, str]:
    """Container port -> listener name of a broker or controller."""
    if node.role == "controller":
        return {CONTROLLER_PORT: "CONTROLLER"}
    return {listener.port: listener.name for listener in broker_listeners(settings, node)}


def _audit_files(client: docker.DockerClient, topology: Topology) -> list[tuple[Node, str]]:
    """``(node, text)`` of every audit file (oldest first) of every node that authorizes: the
    brokers and, in KRaft mode, the controllers (brokers forward CreateTopics, DeleteTopics,
    CreateAcls and the like to them, and they decide those with their own authorizer)."""
    found = []
    for node in topology.controllers + topology.brokers:
        try:
            container = client.containers.get(node.container)
            stream, _ = container.get_archive(AUDIT_DIR)
            archive = b"".join(stream)
        except docker.errors.NotFound:
            raise SecureKafkaError(f"{node.name}: no container {node.container} or no audit log in it: "
                                   f"run `secure-kafka up {topology.env}`") from None
        except docker.errors.APIError as exc:
            raise SecureKafkaError(f"{node.name}: reading {AUDIT_DIR} failed ({exc.explanation})") from None
        files = _log_files(archive)
        found += [(node, files[name]) for name in sorted(files, key=_rotation_order)]
    return found


def read(client: docker.DockerClient, topology: Topology) -> list[Decision]:
    """Every decision recorded by every node of the environment that authorizes."""
    return [d for node, text in _audit_files(client, topology) for d in parse_log(text, node.name)]


def read_failed_logins(client: docker.DockerClient, settings: Settings, since: datetime | None = None,
                       principal: str | None = None) -> list[FailedLogin]:
    """Every failed login recorded by the environment's brokers and controllers (since
    ``since``, of ``principal`` when given), oldest first."""
    wanted = principal_named(principal) if principal else None
    found = [f for node, text in _audit_files(client, settings.topology)
             for f in parse_failed_logins(text, node.name, listener_names(settings, node))
             if (since is None or f.time >= since) and (wanted is None or f.principal == wanted)]
    return sorted(found, key=lambda f: (f.time, f.node))
