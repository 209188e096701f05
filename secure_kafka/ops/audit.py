"""The audit trail: every authorizing node's decisions, read back and parsed.

Each broker's authorizer (``AclAuthorizer`` in ZooKeeper mode, ``StandardAuthorizer`` in
KRaft mode, where the controllers have one too) logs its decisions
(``kafka.authorizer.logger``: allowed at DEBUG, denied at INFO) to
``/var/lib/kafka/audit/kafka-authorizer.log`` on the node's volume, rolled at 10 MB with a
bounded number of backups (templates/log4j-broker.properties.j2, log4j2-kafka.properties.j2).
``read`` fetches the current file and its backups from every such container through the
Docker API (``get_archive``: works on a stopped container too) and parses each decision
line; parsing is pure and tested on its own.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import docker.errors

import docker

from ..build.render import AUDIT_LOG
from ..errors import SecureKafkaError
from ..model.topology import Topology

__all__ = ["Decision", "parse_line", "parse_log", "parse_duration", "select", "read"]

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


def parse_line(line: str, node: str) -> Decision | None:
    """A decision, or None for the authorizer's other lines (super-user notes, no-ACL notes)."""
    match = DECISION.match(line.rstrip("\r\n"))
    if not match:
        return None
    when = datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc)
    return Decision(when, node, match["principal"], match["decision"] == "Allowed", _operation_name(match["operation"]),
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


def select(decisions: list[Decision], denied_only: bool = False, since: datetime | None = None) -> list[Decision]:
    chosen = [d for d in decisions if (not denied_only or not d.allowed) and (since is None or d.time >= since)]
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


def read(client: docker.DockerClient, topology: Topology) -> list[Decision]:
    """Every decision recorded by every node of the environment that authorizes: the brokers
    and, in KRaft mode, the controllers (brokers forward CreateTopics, DeleteTopics, CreateAcls
    and the like to them, and they decide those with their own authorizer)."""
    decisions: list[Decision] = []
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
        for name in sorted(files, key=_rotation_order):
            decisions.extend(parse_log(files[name], node.name))
    return decisions
