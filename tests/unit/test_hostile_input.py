"""Hostile input, generated: stack files, ACL files and command lines by the thousand.

Whatever comes in, the tool answers with exit 0, or exit 1 and one line on stderr naming the
thing (``error: ...``); never a traceback, and a refusal writes nothing. Hypothesis generates
and mutates the inputs (derandomized, so a CI run is reproducible; a failure prints the
smallest input that breaks the rule).
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from secure_kafka.cli import app
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import acl
from secure_kafka.model import settings as sk_settings
from secure_kafka.model.profiles import DEV

runner = CliRunner()
RUNS = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=40), st.sampled_from(["", "0", "-1", "1e999", "TLSv1.0", "0.0.0.0", "../../etc",
                                                           "true", "null", "~", "ec-p256", "gocryptfs", "\x00", "💥"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=8)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_refusal_or_success(result, before: dict[str, bytes], root: Path) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        # `certs verify` reports each problem of the PKI on a line of its own, by design.
        reported = lines and all(line.startswith("problem: ") for line in lines)
        assert reported or (len(lines) == 1 and lines[0].startswith("error: ")), result.stderr
        assert snapshot(root) == before, "a refusal wrote something"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    monkeypatch.delenv("SECURE_KAFKA_PASSPHRASE", raising=False)
    return tmp_path


# --- stack files --------------------------------------------------------------------------------

VALID = sk_settings.to_config(sk_settings.defaults("dev", DEV))
KEYS = sorted(VALID)


@st.composite
def stack_documents(draw) -> str:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "not a mapping", "raw text"]))
    if kind == "raw text":
        return draw(st.text(alphabet=string.printable + "\t\x00é💥", max_size=300))
    if kind == "not a mapping":
        return yaml.safe_dump(draw(values))
    config = dict(VALID)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        config[key] = draw(values)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True)):
        config.pop(key, None)
    for _ in range(draw(st.integers(0, 2))):
        config[draw(st.sampled_from(["secure-kafka:", "other:", ""])) + draw(st.text(max_size=12))] = draw(values)
    document = {"config": config} if draw(st.booleans()) else draw(st.dictionaries(st.text(max_size=8), values, max_size=3))
    return yaml.safe_dump(document, allow_unicode=True)


@RUNS
@given(document=stack_documents(), command=st.sampled_from([["check", "dev"], ["check", "dev", "--json"],
                                                            ["certs", "list", "dev"], ["client-config", "dev", "admin"]]))
def test_any_stack_file(project, document, command):
    (project / "Pulumi.dev.yaml").write_text(document)
    before = snapshot(project)
    assert_one_line_refusal_or_success(runner.invoke(app, command), before, project)


# --- ACL files ----------------------------------------------------------------------------------

ACL_KEYS = ["principal", "topic", "group", "cluster", "transactional-id", "pattern", "allow", "deny", "host", "queue"]
ACL_VALUES = st.one_of(values, st.sampled_from(["User:orders-app", "User:*", "User:admin", "User:ANONYMOUS", "Group:x",
                                                "orders", "*", "prefixed", "literal", "kafka-cluster", "Read", "All"]),
                       st.lists(st.sampled_from(["Read", "Write", "Describe", "All", "Wrte", "ClusterAction", ""]), max_size=4))


@st.composite
def acl_documents(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet=string.printable + "é💥", max_size=300))
    rules = draw(st.lists(st.dictionaries(st.sampled_from(ACL_KEYS), ACL_VALUES, max_size=5), max_size=4))
    document = {"acls": rules} if draw(st.integers(0, 4)) else draw(values)
    return yaml.safe_dump(document, allow_unicode=True)


@settings(RUNS, max_examples=2000)
@given(document=acl_documents())
def test_any_acl_file(tmp_path, document):
    path = tmp_path / "dev.yaml"
    path.write_text(document)
    try:
        bindings = acl.load(path, {"orders-app", "billing"}, display="acls/dev.yaml")
    except SecureKafkaError as exc:
        message = str(exc)
        assert message and "\n" not in message and message.startswith("acls/dev.yaml"), message
    else:
        assert all(b.principal in ("User:orders-app", "User:billing") for b in bindings)


# --- command lines ------------------------------------------------------------------------------

# Commands that read or refuse, never touch a cluster or make keys: every one of them, with
# any arguments, must answer as above. (`up`, `down`, `users`, `acl apply`, `certs init` and
# `verify` act on Docker or generate keys: their argument errors are the same code path;
# `status` exits 1 for an unhealthy environment, with its report.)
HEADS = [["check"], ["certs", "list"], ["certs", "verify"], ["client-config"], ["init"], ["audit"],
         ["certs", "rotate", "--abort"], ["migrate", "--resume"], []]
TOKENS = st.one_of(st.sampled_from(["dev", "prod", "ci", "Dev", "x" * 70, "../etc", "-", "--", "--json", "--help",
                                    "--profile", "dev", "prod", "weird", "--format", "java", "kafka", "--auth", "scram",
                                    "--out", "/nonexistent/dir", "--since", "1h", "yesterday", "--denied",
                                    "--principal", "User:x", "--node", "kafka-9", "--bogus", "-x", "=", "\x00"]),
                   st.text(max_size=12))


@RUNS
@given(head=st.sampled_from(HEADS), tail=st.lists(TOKENS, max_size=6))
def test_any_command_line(project, head, tail):
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": VALID}))
    before = snapshot(project)
    result = runner.invoke(app, [*head, *tail])
    assert_one_line_refusal_or_success(result, before, project)
