"""Declarative ACLs: an environment's ACL file, its validation, and the plan (diff).

Pure: no Kafka, no Docker. ``acls/<env>.yaml`` in the project root says which principal may
do what; anything it does not grant is denied (``allow.everyone.if.no.acl.found=false``).
The whole file is validated before anything is applied, and every error names
``file:line`` and the rule broken. ``acladmin`` applies the plan to a running cluster.

The file::

    acls:
      - principal: User:orders-app        # a SCRAM user or a client certificate's CN
        topic: orders                     # exactly one of topic, group, cluster, transactional-id
        pattern: literal                  # or prefixed (default literal)
        allow: [Write, Describe]          # or deny: [...]; Kafka operation names
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from .topology import NAME_PATTERN, is_anonymous_name, is_super_user_name

__all__ = ["MAX_FILE_BYTES", "Binding", "AclPlan", "diff", "acl_file", "write_example", "load", "parse"]

MAX_FILE_BYTES = 1 << 20
CLUSTER_NAME = "kafka-cluster"  # Kafka's one cluster resource
ANY_HOST = "*"

# Resource type (file key) -> operations Kafka accepts on it (kafka.security.authorizer.AclEntry).
OPERATIONS_BY_RESOURCE: dict[str, tuple[str, ...]] = {
    "topic": ("Read", "Write", "Create", "Delete", "Alter", "Describe", "DescribeConfigs", "AlterConfigs", "All"),
    "group": ("Read", "Describe", "Delete", "All"),
    "cluster": ("Create", "ClusterAction", "DescribeConfigs", "AlterConfigs", "IdempotentWrite", "Alter",
                "Describe", "All"),
    "transactional-id": ("Describe", "Write", "All"),
}
RESOURCE_TYPES = tuple(OPERATIONS_BY_RESOURCE)
OPERATIONS = ("Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "DescribeConfigs",
              "AlterConfigs", "IdempotentWrite", "All")
PATTERNS = ("literal", "prefixed")
PERMISSIONS = ("allow", "deny")
RULE_KEYS = ("principal", *RESOURCE_TYPES, "pattern", *PERMISSIONS)

TOPIC_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
TOPIC_MAX_LENGTH = 249
PRINCIPAL = re.compile(r"^(?P<type>[^:]*):(?P<name>.*)$")

EXAMPLE = """\
# ACLs of environment {env!r}: applied by `secure-kafka up {env}` and `secure-kafka acl apply {env}`.
# Deny by default: a principal may do only what a rule here allows. The brokers and admin
# are super users and need no rules. Principals are User:<name>, where <name> is a SCRAM
# user or a client certificate's CN (`secure-kafka users add {env} <name>` makes both).
#
# Each rule: principal, exactly one resource (topic, group, cluster: kafka-cluster,
# transactional-id), pattern literal (default) or prefixed, and allow or deny with Kafka
# operation names (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
# DescribeConfigs, AlterConfigs, IdempotentWrite, All).
#
# acls:
#   - principal: User:orders-app
#     topic: orders
#     allow: [Write, Describe]
#   - principal: User:billing
#     topic: orders
#     allow: [Read, Describe]
#   - principal: User:billing
#     group: billing-
#     pattern: prefixed
#     allow: [Read]
acls: []
"""


@dataclass(frozen=True, order=True)
class Binding:
    """One Kafka ACL binding, in Kafka's own names (resource type as in the file)."""

    principal: str  # User:<name>
    resource_type: str  # topic | group | cluster | transactional-id
    name: str
    pattern: str  # literal | prefixed
    operation: str  # Read, Write, ...
    permission: str  # allow | deny
    host: str = ANY_HOST

    def __str__(self) -> str:
        pattern = "" if self.pattern == "literal" else f" ({self.pattern})"
        host = "" if self.host == ANY_HOST else f" from {self.host}"
        return f"{self.permission} {self.principal} {self.operation} on {self.resource_type} {self.name}{pattern}{host}"

    def to_json(self) -> dict[str, str]:
        return {"principal": self.principal, "resource_type": self.resource_type, "name": self.name,
                "pattern": self.pattern, "operation": self.operation, "permission": self.permission,
                "host": self.host}


@dataclass(frozen=True)
class AclPlan:
    """Desired vs actual: what to create, what is on the cluster but not in the file."""

    add: tuple[Binding, ...]
    extra: tuple[Binding, ...]  # removed only with --prune
    unchanged: tuple[Binding, ...]

    def to_json(self) -> dict[str, object]:
        return {"add": [b.to_json() for b in self.add], "extra": [b.to_json() for b in self.extra],
                "unchanged": len(self.unchanged)}


def diff(desired: frozenset[Binding] | set[Binding], actual: frozenset[Binding] | set[Binding]) -> AclPlan:
    return AclPlan(tuple(sorted(set(desired) - set(actual))), tuple(sorted(set(actual) - set(desired))),
                   tuple(sorted(set(desired) & set(actual))))


def acl_file(project_root: Path, env: str) -> Path:
    return project_root / "acls" / f"{env}.yaml"


def write_example(project_root: Path, env: str) -> Path | None:
    """Writes the commented example (no grants) unless the environment has an ACL file."""
    path = acl_file(project_root, env)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, EXAMPLE.format(env=env), mode=0o644)
    return path


def load(path: Path, known_users: set[str] | None, display: str | None = None) -> frozenset[Binding]:
    """The bindings an ACL file asks for; ``SecureKafkaError`` naming file:line on any problem."""
    display = display or str(path)
    if not path.is_file():
        raise SecureKafkaError(f"{display} not found: create it (`secure-kafka init` writes a commented example)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SecureKafkaError(f"{display}: larger than {MAX_FILE_BYTES >> 20} MiB: an ACL file is a short list of rules")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SecureKafkaError(f"{display}: not UTF-8 text: save it as UTF-8") from None
    return parse(text, display, known_users)


def parse(text: str, source: str, known_users: set[str] | None = None) -> frozenset[Binding]:
    """Validates the whole document, then returns its bindings.

    ``known_users``: the environment's users (SCRAM users and client certificates); a rule
    naming anyone else is an error. ``None`` skips that check.
    """
    return _Parser(source, known_users).parse(text)


class _Parser:
    def __init__(self, source: str, known_users: set[str] | None):
        self.source = source
        self.known_users = known_users
        # (principal, resource, name, pattern, operation) -> (permission, line)
        self.decided: dict[tuple[str, str, str, str, str], tuple[str, int]] = {}
        self.first_allow: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self.deny_all: dict[tuple[str, str, str, str], int] = {}

    def fail(self, node_or_line: yaml.Node | int, message: str) -> SecureKafkaError:
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        return SecureKafkaError(f"{self.source}:{line}: {message}")

    def parse(self, text: str) -> frozenset[Binding]:
        try:
            # Aliases first, from the event stream (compose would hide where they are used):
            # no rule is shared by reference, and no alias bomb gets composed.
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent):
                    raise self.fail(event.start_mark.line + 1, "YAML anchors and aliases are not allowed: write each rule out")
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark else 1
            problem = getattr(exc, "problem", None) or exc.__class__.__name__
            raise SecureKafkaError(f"{self.source}:{line}: not valid YAML ({problem}): fix the syntax") from None
        if root is None:
            return frozenset()  # an empty file grants nothing
        top = self.mapping(root, "the file", ("acls",))
        if "acls" not in top:
            raise self.fail(root, "missing key 'acls': the file is `acls: [rules...]`")
        rules = top["acls"]
        if isinstance(rules, yaml.ScalarNode) and rules.tag == "tag:yaml.org,2002:null":
            return frozenset()
        if not isinstance(rules, yaml.SequenceNode):
            raise self.fail(rules, "'acls' must be a list of rules")
        bindings: list[Binding] = []
        for rule in rules.value:
            bindings.extend(self.rule(rule))
        return frozenset(bindings)

    def mapping(self, node: yaml.Node, what: str, known: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of {', '.join(known)}")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what}: keys must be plain names")
            if key.value == "<<":
                raise self.fail(key, "YAML merge keys are not allowed: write each rule out")
            if key.value not in known:
                raise self.fail(key, f"unknown key {key.value!r} in {what}: known keys are {', '.join(known)}")
            if key.value in out:
                raise self.fail(key, f"duplicate key {key.value!r} in {what}")
            out[key.value] = value
        return out

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value")
        if node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int"):
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.fail(node, f"{what} must be a name, got {kind} {node.value!r}: quote it")
        return node.value

    def rule(self, node: yaml.Node) -> list[Binding]:
        fields = self.mapping(node, "an ACL rule", RULE_KEYS)
        if "principal" not in fields:
            raise self.fail(node, "rule without 'principal': say who it is for, e.g. principal: User:orders-app")
        principal = self.principal(fields["principal"])
        resources = [key for key in RESOURCE_TYPES if key in fields]
        if not resources:
            raise self.fail(node, f"rule without a resource: give one of {', '.join(RESOURCE_TYPES)}")
        if len(resources) > 1:
            raise self.fail(fields[resources[1]], f"rule with more than one resource ({', '.join(resources)}): write one rule per resource")
        resource_type = resources[0]
        pattern = "literal"
        if "pattern" in fields:
            pattern = self.string(fields["pattern"], "pattern")
            if pattern not in PATTERNS:
                raise self.fail(fields["pattern"], f"unknown pattern {pattern!r}: use literal or prefixed")
        name = self.resource_name(fields[resource_type], resource_type, pattern)
        permissions = [key for key in PERMISSIONS if key in fields]
        if len(permissions) != 1:
            raise self.fail(node, "a rule has exactly one of allow or deny: write a rule for each")
        permission = permissions[0]
        bindings = []
        for op_node, operation in self.operations(fields[permission], permission):
            if operation not in OPERATIONS_BY_RESOURCE[resource_type]:
                raise self.fail(op_node, f"operation {operation} does not apply to a {resource_type}: use one of "
                                         f"{', '.join(OPERATIONS_BY_RESOURCE[resource_type])}")
            line = op_node.start_mark.line + 1
            key = (principal, resource_type, name, pattern, operation)
            if key in self.decided:
                earlier, earlier_line = self.decided[key]
                if earlier == permission:
                    raise self.fail(line, f"duplicate rule: {permission} {principal} {operation} on {resource_type} {name} is already on line {earlier_line}")
                raise self.fail(line, f"contradicting rules: {permission} and {earlier} (line {earlier_line}) of {principal} {operation} on {resource_type} {name}: keep one")
            self.decided[key] = (permission, line)
            self.check_dead_allow(principal, resource_type, name, pattern, operation, permission, line)
            bindings.append(Binding(principal, resource_type, name, pattern, operation, permission))
        return bindings

    def check_dead_allow(self, principal: str, resource_type: str, name: str, pattern: str, operation: str,
                         permission: str, line: int) -> None:
        """``deny All`` beside an ``allow`` of the same resource: the allow can never apply."""
        resource = (principal, resource_type, name, pattern)
        if permission == "allow":
            self.first_allow.setdefault(resource, (operation, line))
        elif operation == "All":
            self.deny_all.setdefault(resource, line)
        if resource in self.first_allow and resource in self.deny_all:
            allowed, allow_line = self.first_allow[resource]
            deny_line = self.deny_all[resource]
            raise self.fail(line, f"contradicting rules: deny All (line {deny_line}) and allow {allowed} (line {allow_line}) "
                                  f"of {principal} on {resource_type} {name}: keep one")

    def principal(self, node: yaml.Node) -> str:
        value = self.string(node, "principal")
        match = PRINCIPAL.match(value)
        if not match:
            raise self.fail(node, f"principal {value!r} has no type: write User:<name>")
        kind, name = match["type"], match["name"]
        if kind != "User":
            raise self.fail(node, f"unknown principal type {kind!r} in {value!r}: only User:<name> principals exist here")
        if name == "*":
            raise self.fail(node, "wildcard principal User:* is not allowed: name each principal (deny by default)")
        if not NAME_PATTERN.match(name):
            raise self.fail(node, f"invalid principal name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if is_super_user_name(name):
            raise self.fail(node, f"User:{name} is a super user (broker or admin): ACLs do not apply to it, remove the rule")
        if is_anonymous_name(name):
            raise self.fail(node, f"User:{name} is every unauthenticated client: a rule for it grants to anyone, remove the rule")
        if self.known_users is not None and name not in self.known_users:
            raise self.fail(node, f"principal User:{name} is not a user of this environment: add it with `secure-kafka users add ENV {name}`")
        return f"User:{name}"

    def resource_name(self, node: yaml.Node, resource_type: str, pattern: str) -> str:
        name = self.string(node, resource_type)
        if name == "*":
            raise self.fail(node, f"wildcard {resource_type} '*' is not allowed: name it, or use pattern: prefixed")
        if resource_type == "cluster":
            if name != CLUSTER_NAME or pattern != "literal":
                raise self.fail(node, f"the cluster resource is literal {CLUSTER_NAME!r}: write cluster: {CLUSTER_NAME}")
            return name
        if not name:
            raise self.fail(node, f"empty {resource_type} name")
        if resource_type == "topic":
            what = "topic prefix" if pattern == "prefixed" else "topic name"
            if not TOPIC_CHARS.match(name):
                raise self.fail(node, f"invalid {what} {name!r}: Kafka allows only letters, digits, '.', '_' and '-'")
            if len(name) > TOPIC_MAX_LENGTH:
                raise self.fail(node, f"invalid {what}: {len(name)} characters, Kafka allows at most {TOPIC_MAX_LENGTH}")
            if pattern == "literal" and name in (".", ".."):
                raise self.fail(node, f"invalid topic name {name!r}: Kafka does not allow '.' or '..'")
        elif not name.isprintable() or name != name.strip():
            raise self.fail(node, f"invalid {resource_type} name {name!r}: no control characters or surrounding spaces")
        return name

    def operations(self, node: yaml.Node, permission: str) -> list[tuple[yaml.Node, str]]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            raise self.fail(node, f"empty {permission} list: name at least one operation")
        out = []
        for item in items:
            operation = self.string(item, f"{permission} operation")
            if operation not in OPERATIONS:
                raise self.fail(item, f"unknown operation {operation!r}: use one of {', '.join(OPERATIONS)}")
            out.append((item, operation))
        return out
