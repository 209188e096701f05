"""The audit trail: every authorizing node's decisions and failed logins, read back and parsed.

Each broker's authorizer (``AclAuthorizer`` in ZooKeeper mode, ``StandardAuthorizer`` in
KRaft mode, where the controllers have one too) logs its decisions
(``kafka.authorizer.logger``: allowed at DEBUG, denied at INFO) to
``/var/lib/kafka/audit/kafka-authorizer.log`` on the node's volume, rolled at auditLogFileMb (10 MB) with a
bounded number of backups (templates/log4j-broker.properties.j2, log4j2-kafka.properties.j2).
Kafka's network layer logs every failed login to the same file: the client's address, the
local address and port (which name the listener), and why; for SCRAM, the user the client
claimed (our SCRAM provider puts it in the message: docker/java/.../NamedScramFailures.java).
``collect`` fetches what is new in every such container's files through the Docker API
(``get_archive``: works on a stopped container too) into the environment's durable trail
(``ops/decision_trail.py``), which outlives the node's rolling and its volume;
``decisions_in`` and ``failed_logins_in`` parse that trail, or what one collection brought. Parsing is pure and tested on its own.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import docker.errors

import docker

from ..build.render import AUDIT_LOG, broker_listeners
from ..errors import SecureKafkaError
from ..model.settings import Settings
from ..model.topology import CONTROLLER_PORT, Node, Topology
from ..proc import Progress, quiet
from .decision_trail import Collected, DecisionTrail, complete_lines, new_lines

__all__ = ["Decision", "FailedLogin", "parse_line", "parse_log", "parse_failed_logins", "parse_duration", "principal_named", "select",
           "listener_names", "held_lines", "collect", "decisions_in", "failed_logins_in"]

AUDIT_DIR = AUDIT_LOG.rpartition("/")[0]

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
# Reads of a rolling log until two agree: rolls come seconds apart even under load.
STABLE_READ_ATTEMPTS = 5
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


def _file_text(archive: bytes) -> str | None:
    """The text of the one file in a ``get_archive`` tar of it."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        extracted = tar.extractfile(member) if member is not None else None
        return extracted.read().decode("utf-8", errors="replace") if extracted is not None else None


def listener_names(settings: Settings, node: Node) -> dict[int, str]:
    """Container port -> listener name of a broker or controller."""
    if node.role == "controller":
        return {CONTROLLER_PORT: "CONTROLLER"}
    return {listener.port: listener.name for listener in broker_listeners(settings, node)}


def _file_lines(container, path: str) -> list[str] | None:
    """The complete lines of one file in the container (``get_archive``: a stopped one too);
    None when there is no such file."""
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    text = _file_text(b"".join(stream))
    return complete_lines(text) if text is not None else None


def held_lines(container, node: Node, tail: Sequence[str] = ()) -> list[str]:
    """The node's complete audit lines, oldest first, back to where ``tail`` (the last lines
    collected from it) is; all of them without a tail.

    The current file alone when it holds the tail (the usual case); else the rolled files,
    newest first (``.1``, ``.2``, ...), until one holds it: prod keeps 50 × 10 MB by default, and a
    collection reads what it needs. A roll renames every file while they are read (one could
    be read twice or missed), so ``.1`` is read again at the end: changed, the walk is repeated."""
    try:
        current = _file_lines(container, AUDIT_LOG) or []
        if tail and current and new_lines(current, tail)[1]:
            return current
        for _ in range(STABLE_READ_ATTEMPTS):
            newest = _file_lines(container, f"{AUDIT_LOG}.1")
            rolled: list[str] = []
            number, older = 1, newest
            while older is not None:
                found = bool(tail) and new_lines(older + rolled[:len(tail)], tail)[1]
                rolled = older + rolled
                if found:
                    break
                number += 1
                older = _file_lines(container, f"{AUDIT_LOG}.{number}")
            current = _file_lines(container, AUDIT_LOG) or []
            if _file_lines(container, f"{AUDIT_LOG}.1") == newest:
                return rolled + current
        raise SecureKafkaError(f"{node.name}: its audit log rolled during each of {STABLE_READ_ATTEMPTS} reads")
    except docker.errors.APIError as exc:
        raise SecureKafkaError(f"{node.name}: reading {AUDIT_DIR} failed ({exc.explanation})") from None


def collect(client: docker.DockerClient, topology: Topology, trail: DecisionTrail,
            progress: Progress = quiet) -> list[Collected]:
    """Appends to ``trail`` what every node that authorizes logged since the last collection:
    the brokers and, in KRaft mode, the controllers (brokers forward CreateTopics, DeleteTopics,
    CreateAcls and the like to them, and they decide those with their own authorizer). A node
    without a container, or whose files cannot be read (a stopped container whose volume is
    locked), is skipped with a warning: its log waits on its volume for the next collection."""
    collected = []
    with trail.locked():
        for node in topology.controllers + topology.brokers:
            try:
                container = client.containers.get(node.container)
                held = held_lines(container, node, trail.tail(node.name))
            except docker.errors.NotFound:
                progress(f"audit: {node.name} has no container; its decisions are collected once it runs again")
                continue
            except SecureKafkaError as exc:
                progress(f"audit: {exc}; its decisions are collected at the next collection")
                continue
            done = trail.append(node.name, held, datetime.now(timezone.utc))
            if done.gap:
                progress(f"audit: {node.name}'s log no longer holds where the last collection stopped: "
                         f"decisions may be missing (collect more often: `secure-kafka audit collect {topology.env} --follow`)")
            collected.append(done)
    return collected


def decisions_in(texts: Iterable[tuple[str, str]], denied_only: bool = False, since: datetime | None = None,
                 principal: str | None = None) -> list[Decision]:
    """The decisions in ``(node, text)`` pairs (``DecisionTrail.texts()``, or what a collection
    brought) that pass every filter given, by time (``select``). A line is parsed only if its
    text can pass: over a large trail parsing is most of the time (benchmarks/audit_filter_bench.py)."""
    wanted = principal_named(principal) if principal else None
    needles = [n for n in (wanted and f"Principal = {wanted} is ", denied_only and " is Denied ") if n]
    # To the second, as the lines spell their time: the exact cut is select's.
    earliest = since.astimezone(timezone.utc).strftime("[%Y-%m-%d %H:%M:%S") if since else ""
    parsed = (parse_line(line, node) for node, text in texts for line in text.splitlines()
              if line[:20] >= earliest and all(n in line for n in needles))
    return select([d for d in parsed if d is not None], denied_only, since, principal)


def failed_logins_in(texts: Iterable[tuple[str, str]], settings: Settings, since: datetime | None = None,
                     principal: str | None = None) -> list[FailedLogin]:
    """Every failed login in ``(node, text)`` pairs (since ``since``, of ``principal`` when
    given), oldest first."""
    wanted = principal_named(principal) if principal else None
    nodes = {n.name: n for n in settings.topology.nodes}
    found = [f for name, text in texts if name in nodes
             for f in parse_failed_logins(text, name, listener_names(settings, nodes[name]))
             if (since is None or f.time >= since) and (wanted is None or f.principal == wanted)]
    return sorted(found, key=lambda f: (f.time, f.node))
