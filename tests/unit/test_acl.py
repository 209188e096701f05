"""The ACL file: hostile and broken files are refused with file:line and the rule; the diff."""

from __future__ import annotations

import textwrap

import pytest

from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import acl
from secure_kafka.model.acl import Binding
from secure_kafka.ops import audit

USERS = {"orders-app", "billing", "ops"}
SOURCE = "acls/dev.yaml"


def parse(text: str, users: set[str] | None = USERS) -> frozenset[Binding]:
    return acl.parse(textwrap.dedent(text), SOURCE, users)


def rule(body: str) -> str:
    """One rule as the second line onwards of a file (so its first line is line 2)."""
    return "acls:\n" + textwrap.indent(textwrap.dedent(body), "  ")


# (id, file text, line the error must name, words the error must contain)
BAD_FILES = [
    ("unknown principal type", rule("- principal: Group:orders\n  topic: orders\n  allow: [Write]\n"), 2,
     "unknown principal type 'Group'"),
    ("principal without type", rule("- principal: orders-app\n  topic: orders\n  allow: [Write]\n"), 2, "no type"),
    ("wildcard principal", rule("- principal: 'User:*'\n  topic: orders\n  allow: [Read]\n"), 2, "wildcard principal"),
    ("missing user", rule("- principal: User:mallory\n  topic: orders\n  allow: [Read]\n"), 2,
     "User:mallory is not a user"),
    ("super user admin", rule("- principal: User:admin\n  topic: orders\n  deny: [Read]\n"), 2, "super user"),
    ("broker principal", rule("- principal: User:kafka-0\n  topic: orders\n  allow: [Read]\n"), 2, "super user"),
    ("super user in another case", rule("- principal: User:Admin\n  topic: orders\n  allow: [Read]\n"), 2, "super user"),
    ("broker principal in another case", rule("- principal: User:KAFKA-1\n  topic: orders\n  allow: [Read]\n"), 2,
     "super user"),
    # With the PLAINTEXT loopback listener on, a grant to ANONYMOUS is a grant to every unauthenticated client.
    ("anonymous principal", rule("- principal: User:ANONYMOUS\n  topic: orders\n  allow: [Read]\n"), 2,
     "every unauthenticated client"),
    ("anonymous in another case", rule("- principal: User:anonymous\n  topic: orders\n  allow: [Read]\n"), 2,
     "every unauthenticated client"),
    ("invalid principal chars", rule("- principal: 'User:or ders'\n  topic: orders\n  allow: [Read]\n"), 2,
     "invalid principal name"),
    ("unknown operation", rule("- principal: User:ops\n  topic: orders\n  allow: [Read, Wrte]\n"), 4,
     "unknown operation 'Wrte'"),
    ("operation not for the resource", rule("- principal: User:ops\n  group: g1\n  allow:\n    - Write\n"), 5,
     "Write does not apply to a group"),
    ("unknown resource type", rule("- principal: User:ops\n  queue: orders\n  allow: [Read]\n"), 3,
     "unknown key 'queue'"),
    ("no resource", rule("- principal: User:ops\n  allow: [Read]\n"), 2, "without a resource"),
    ("two resources", rule("- principal: User:ops\n  topic: a\n  group: b\n  allow: [Read]\n"), 4,
     "more than one resource"),
    ("topic with illegal characters", rule("- principal: User:ops\n  topic: 'orders/eu'\n  allow: [Read]\n"), 3,
     "invalid topic name 'orders/eu'"),
    ("topic too long", rule(f"- principal: User:ops\n  topic: {'a' * 250}\n  allow: [Read]\n"), 3,
     "at most 249"),
    ("topic dot", rule("- principal: User:ops\n  topic: '.'\n  allow: [Read]\n"), 3, "'.' or '..'"),
    ("topic dotdot", rule("- principal: User:ops\n  topic: '..'\n  allow: [Read]\n"), 3, "'.' or '..'"),
    ("wildcard topic", rule("- principal: User:ops\n  topic: '*'\n  allow: [Read]\n"), 3, "wildcard topic"),
    ("bad topic prefix", rule("- principal: User:ops\n  topic: 'orders eu'\n  pattern: prefixed\n  allow: [Read]\n"), 3,
     "invalid topic prefix"),
    ("unknown pattern", rule("- principal: User:ops\n  topic: orders\n  pattern: regex\n  allow: [Read]\n"), 4,
     "unknown pattern 'regex'"),
    ("cluster with another name", rule("- principal: User:ops\n  cluster: prod\n  allow: [Describe]\n"), 3,
     "kafka-cluster"),
    ("duplicate rule", rule("- principal: User:ops\n  topic: orders\n  allow: [Read]\n"
                            "- principal: User:ops\n  topic: orders\n  allow: [Write, Read]\n"), 7,
     "duplicate rule: allow User:ops Read on topic orders is already on line 4"),
    ("duplicate within a list", rule("- principal: User:ops\n  topic: orders\n  allow: [Read, Read]\n"), 4,
     "duplicate rule"),
    ("allow and deny of the same", rule("- principal: User:billing\n  topic: orders\n  allow: [Read]\n"
                                        "- principal: User:billing\n  topic: orders\n  deny: [Read]\n"), 7,
     "contradicting rules: deny and allow (line 4)"),
    ("deny All beside an allow", rule("- principal: User:billing\n  topic: orders\n  allow: [Read]\n"
                                      "- principal: User:billing\n  topic: orders\n  deny: [All]\n"), 7,
     "contradicting rules: deny All (line 7) and allow Read (line 4)"),
    ("both allow and deny", rule("- principal: User:ops\n  topic: orders\n  allow: [Read]\n  deny: [Write]\n"), 2,
     "exactly one of allow or deny"),
    ("empty operations", rule("- principal: User:ops\n  topic: orders\n  allow: []\n"), 4, "empty allow list"),
    ("duplicate key", rule("- principal: User:ops\n  topic: orders\n  topic: payments\n  allow: [Read]\n"), 4,
     "duplicate key 'topic'"),
    ("alias", "acls:\n  - &r\n    principal: User:ops\n    topic: orders\n    allow: [Read]\n  - *r\n", 6,
     "aliases are not allowed"),
    ("merge key", "base: &b {principal: User:ops}\nacls: []\n", 1, "unknown key 'base'"),
    ("boolean as name", rule("- principal: User:ops\n  topic: yes\n  allow: [Read]\n"), 3, "got bool 'yes': quote it"),
    ("not a list", "acls:\n  principal: User:ops\n", 2, "'acls' must be a list"),
    ("rule is not a mapping", "acls:\n  - User:ops Read orders\n", 2, "must be a mapping"),
    ("unknown top-level key", "acl:\n  - principal: User:ops\n", 1, "unknown key 'acl'"),
    ("host not supported", rule("- principal: User:ops\n  topic: orders\n  host: 10.0.0.1\n  allow: [Read]\n"), 4,
     "unknown key 'host'"),
    ("yaml syntax error", "acls:\n  - principal: User:ops\n    topic: [orders\n", 4, "not valid YAML"),
    ("python object tag", rule("- principal: !!python/object:os.system User:ops\n  topic: o\n  allow: [Read]\n"), 2,
     "must be a name"),
    ("group with control character", rule('- principal: User:ops\n  group: "g\\u0007"\n  allow: [Read]\n'), 3,
     "invalid group name"),
]


@pytest.mark.parametrize("text, line, words", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_refused_with_file_line_and_rule(text, line, words):
    with pytest.raises(SecureKafkaError) as caught:
        acl.parse(text, SOURCE, USERS)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}:{line}: "), message
    assert words in message
    assert "\n" not in message


def test_the_bad_files_are_many():
    assert len(BAD_FILES) >= 15


GOOD = """\
# orders
acls:
  - principal: User:orders-app
    topic: orders
    allow: [Write, Describe]
  - principal: User:billing
    topic: orders
    allow: [Read]
  - principal: User:billing
    group: billing-
    pattern: prefixed
    allow: Read
  - principal: User:billing
    topic: orders.internal
    pattern: prefixed
    deny: [All]
  - principal: User:ops
    cluster: kafka-cluster
    allow: [Describe, DescribeConfigs]
  - principal: User:orders-app
    transactional-id: orders-tx
    allow: [Write, Describe]
  - principal: User:ops
    topic: '123'
    allow: [Describe]
"""


def test_good_file_parses_to_bindings():
    bindings = parse(GOOD)
    assert Binding("User:orders-app", "topic", "orders", "literal", "Write", "allow") in bindings
    assert Binding("User:billing", "group", "billing-", "prefixed", "Read", "allow") in bindings
    assert Binding("User:billing", "topic", "orders.internal", "prefixed", "All", "deny") in bindings
    assert Binding("User:ops", "cluster", "kafka-cluster", "literal", "DescribeConfigs", "allow") in bindings
    assert Binding("User:orders-app", "transactional-id", "orders-tx", "literal", "Write", "allow") in bindings
    assert Binding("User:ops", "topic", "123", "literal", "Describe", "allow") in bindings
    assert len(bindings) == 10


@pytest.mark.parametrize("text", ["", "# nothing granted\n", "acls: []\n", "acls:\n"])
def test_empty_files_grant_nothing(text):
    assert parse(text) == frozenset()


def test_the_example_init_writes_grants_nothing_and_parses(tmp_path):
    path = acl.write_example(tmp_path, "dev")
    assert path == tmp_path / "acls" / "dev.yaml"
    assert acl.load(path, set()) == frozenset()
    assert acl.write_example(tmp_path, "dev") is None  # an existing file is never overwritten


def test_its_commented_rules_are_valid_once_uncommented(tmp_path):
    path = acl.write_example(tmp_path, "dev")
    lines = path.read_text().splitlines()
    start = lines.index("# acls:")
    uncommented = "\n".join(line[2:] for line in lines[start:] if line.startswith("# "))
    assert len(acl.parse(uncommented, "example", {"orders-app", "billing"})) == 5


def test_missing_user_check_can_be_skipped():
    assert parse(rule("- principal: User:someone\n  topic: t\n  allow: [Read]\n"), users=None)


def test_missing_oversized_and_binary_files(tmp_path):
    with pytest.raises(SecureKafkaError, match="not found"):
        acl.load(tmp_path / "nope.yaml", USERS)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (acl.MAX_FILE_BYTES + 1))
    with pytest.raises(SecureKafkaError, match="larger than"):
        acl.load(big, USERS)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"acls: [\xff\xfe]")
    with pytest.raises(SecureKafkaError, match="not UTF-8"):
        acl.load(binary, USERS)


def b(principal="User:a", name="t", operation="Read", permission="allow", host="*") -> Binding:
    return Binding(principal, "topic", name, "literal", operation, permission, host)


def test_diff_adds_missing_and_reports_extra():
    desired = {b(), b(operation="Write")}
    actual = {b(), b(name="other"), b(host="10.0.0.1")}
    plan = acl.diff(desired, actual)
    assert plan.add == (b(operation="Write"),)
    assert set(plan.extra) == {b(name="other"), b(host="10.0.0.1")}
    assert plan.unchanged == (b(),)


def test_diff_of_equal_sets_is_empty():
    plan = acl.diff({b(), b(permission="deny", name="x")}, {b(), b(permission="deny", name="x")})
    assert plan.add == () and plan.extra == ()


def test_diff_distinguishes_allow_from_deny():
    plan = acl.diff({b(permission="deny")}, {b()})
    assert plan.add == (b(permission="deny"),) and plan.extra == (b(),)


# --- the audit trail's parser -------------------------------------------------------------------

DENIED = ("[2026-11-29 06:15:35,047] INFO Principal = User:alice is Denied Operation = Describe from host = "
          "172.23.0.1 on resource = Topic:LITERAL:exp-a for request = Metadata with resourceRefCount = 1")
ALLOWED = ("[2026-11-29 06:15:30,106] DEBUG Principal = User:admin is Allowed Operation = Describe from host = "
           "172.23.0.1 on resource = Cluster:LITERAL:kafka-cluster for request = DescribeUserScramCredentials "
           "with resourceRefCount = 1")
NOISE = "[2026-11-29 06:15:30,106] DEBUG principal = User:admin is a super user, allowing operation without checking acls."


def test_audit_lines_parse_into_decisions():
    decisions = audit.parse_log("\n".join([NOISE, DENIED, ALLOWED, "garbage"]), "kafka-0")
    assert len(decisions) == 2
    denied = decisions[0]
    assert (denied.principal, denied.allowed, denied.operation, denied.resource_type, denied.resource,
            denied.host, denied.request) == ("User:alice", False, "Describe", "Topic", "exp-a", "172.23.0.1", "Metadata")
    assert denied.to_json()["time"] == "2026-11-29T06:15:35.047000Z"
    assert decisions[1].allowed and decisions[1].resource == "kafka-cluster"


def test_audit_select_filters_denied_since_and_principal():
    decisions = audit.parse_log("\n".join([DENIED, ALLOWED]), "kafka-0")
    assert [d.principal for d in audit.select(decisions, denied_only=True)] == ["User:alice"]
    since = decisions[0].time
    assert [d.principal for d in audit.select(decisions, since=since)] == ["User:alice"]
    assert [d.principal for d in audit.select(decisions)] == ["User:admin", "User:alice"]  # by time
    for name in ("alice", "User:alice"):
        assert [d.principal for d in audit.select(decisions, principal=name)] == ["User:alice"]
    assert audit.select(decisions, principal="Group:alice") == []


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert audit.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1x", "-1h", "1m1h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(SecureKafkaError, match="invalid duration"):
        audit.parse_duration(text)

