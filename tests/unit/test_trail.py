"""The operations trail: chained, MACed, and every kind of tampering named by ``verify``."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from secure_kafka.cli import app
from secure_kafka.errors import SecureKafkaError
from secure_kafka.ops.decision_trail import DecisionTrail
from secure_kafka.ops.trail import OPERATOR_ENV, TRAIL_KEY, Trail
from secure_kafka.pki.secretstore import SecretStore

runner = CliRunner()


@pytest.fixture
def trail(tmp_path, monkeypatch) -> Trail:
    monkeypatch.setenv(OPERATOR_ENV, "ci-pipeline-42")
    trail = Trail(tmp_path / "audit", SecretStore(tmp_path / "secrets.json"))
    for n in range(1, 5):
        trail.append(f"op-{n}", {"name": f"user-{n}"}, "ok", {"n": n})
    return trail


def lines(trail: Trail) -> list[str]:
    return trail.path.read_text().splitlines()


def rewrite(trail: Trail, new_lines: list[str]) -> None:
    trail.path.write_text("".join(line + "\n" for line in new_lines))


def test_an_untouched_trail_passes_and_records_who_what_how(trail):
    assert trail.verify().ok and trail.verify().entries == 4
    first = trail.entries()[0]
    assert (first["seq"], first["operator"], first["command"], first["args"], first["outcome"], first["changes"]) == \
        (1, "ci-pipeline-42", "op-1", {"name": "user-1"}, "ok", {"n": 1})
    assert trail.path.stat().st_mode & 0o777 == 0o600 and trail.directory.stat().st_mode & 0o777 == 0o700


def test_an_edited_entry_is_named(trail):
    edited = lines(trail)
    entry = json.loads(edited[1])
    entry["outcome"] = "failed: nobody saw this"
    edited[1] = json.dumps(entry, sort_keys=True)
    rewrite(trail, edited)
    assert trail.verify().problem == "entry 2 (line 2): changed after it was written"


def test_a_deleted_entry_is_named(trail):
    rewrite(trail, [line for n, line in enumerate(lines(trail)) if n != 1])
    assert trail.verify().problem == ("entry 3 (line 2) does not follow entry 1: "
                                      "an entry before it was removed or the entries were reordered")


def test_two_reordered_entries_are_named(trail):
    swapped = lines(trail)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    rewrite(trail, swapped)
    assert trail.verify().problem == ("entry 3 (line 2) does not follow entry 1: "
                                      "an entry before it was removed or the entries were reordered")


def test_a_truncated_tail_is_named(trail):
    rewrite(trail, lines(trail)[:2])
    assert trail.verify().problem == "the trail ends at entry 2, its head says 4: entries after 2 were removed"


def test_a_rewritten_head_or_a_garbled_line_is_named(trail):
    head = json.loads(trail.head_path.read_text())
    trail.head_path.write_text(json.dumps({**head, "count": 2}))
    assert trail.verify().problem == "head.json: changed after it was written"
    trail._write_head(head["count"], head["last"])
    assert trail.verify().ok
    rewrite(trail, [*lines(trail)[:3], "{not json"])
    assert trail.verify().problem == "line 4: not an entry of the trail (damaged or edited)"


def test_a_foreign_key_does_not_verify(trail, tmp_path):
    other = Trail(trail.directory, SecretStore(tmp_path / "other-secrets.json"))
    assert other.verify().problem == "entry 1 (line 1): changed after it was written"


def test_recorded_writes_the_outcome_of_a_failure_and_no_traceback(trail):
    with pytest.raises(SecureKafkaError):
        with trail.recorded("users add", name="x") as changes:
            changes["certificate_issued"] = True
            raise SecureKafkaError("the cluster did not answer")
    last = trail.entries()[-1]
    assert (last["command"], last["outcome"], last["changes"]) == \
        ("users add", "failed: the cluster did not answer", {"certificate_issued": True})
    assert trail.verify().ok and trail.verify().entries == 5


def test_cli_lists_and_verifies_and_fails_on_tampering(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    assert runner.invoke(app, ["certs", "init", "dev"]).exit_code == 0
    listed = runner.invoke(app, ["audit", "dev", "--operations", "--json"])
    assert listed.exit_code == 0, listed.output
    init, certs_init = json.loads(listed.stdout)["operations"]
    assert init["command"] == "init" and init["args"] == {"metadata_mode": "zookeeper", "port_base": 19000, "profile": "dev"}
    assert init["changes"] == {"files": ["Pulumi.dev.yaml", "acls/dev.yaml"]}
    assert certs_init["command"] == "certs init" and certs_init["outcome"] == "ok"
    assert "admin" in certs_init["changes"]["certificates"]
    verified = runner.invoke(app, ["audit", "verify", "dev"])
    assert verified.exit_code == 0 and "2 entries, chain and MACs intact" in verified.stdout
    assert "the decisions trail of dev: 0 lines, seals intact" in verified.stdout
    path = tmp_path / "certs" / "dev" / "audit" / "operations.jsonl"
    path.write_text(path.read_text().replace('"ok"', '"failed"', 1))
    tampered = runner.invoke(app, ["audit", "verify", "dev"])
    assert tampered.exit_code == 1
    assert tampered.stderr.strip() == ("error: the operations trail of dev is not as written: "
                                       "entry 1 (line 1): changed after it was written")
    secrets = json.loads((tmp_path / "certs" / "dev" / "secrets.json").read_text())
    assert not any(value in path.read_text() for value in secrets.values()), "a secret in the trail"


def test_cli_verify_checks_the_decisions_trail_with_the_environments_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    certs = tmp_path / "certs" / "dev"
    decisions = DecisionTrail(certs / "audit" / "decisions", lambda: SecretStore(certs / "secrets.json").get(TRAIL_KEY).encode())
    decisions.append("kafka-0", [f"[2026-12-06 12:00:00,{n:03d}] INFO Principal = User:u{n} is Denied ..." for n in range(5)],
                     dt.datetime(2026, 12, 6, 12, tzinfo=dt.timezone.utc))
    verified = runner.invoke(app, ["audit", "verify", "dev", "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["decisions"] == {"lines": 5, "ok": True, "problem": None}
    segment = certs / "audit" / "decisions" / "kafka-0" / "2026-12-06.log"
    segment.write_text(segment.read_text().replace("User:u2 is Denied", "User:u2 is Allowed"))
    tampered = runner.invoke(app, ["audit", "verify", "dev"])
    assert tampered.exit_code == 1
    assert tampered.stderr.strip() == (f"error: the decisions trail of dev is not as collected: {segment} line 3: "
                                       "changed, removed or reordered")
