"""``init`` writes the ACL example; ``acl`` refuses a bad file before it talks to any cluster."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from secure_kafka.cli import app
from secure_kafka.pki import certstore

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv(certstore.PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    return tmp_path


def test_init_writes_an_acl_file_that_grants_nothing(project):
    result = runner.invoke(app, ["init", "dev", "--profile", "dev"])
    assert result.exit_code == 0, result.output
    text = (project / "acls" / "dev.yaml").read_text()
    assert "acls: []" in text.splitlines()


def test_init_keeps_an_existing_acl_file(project):
    (project / "acls").mkdir()
    (project / "acls" / "dev.yaml").write_text("acls: []  # mine\n")
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    assert (project / "acls" / "dev.yaml").read_text() == "acls: []  # mine\n"


@pytest.mark.parametrize("command", [["acl", "plan", "dev"], ["acl", "apply", "dev", "--prune"]])
def test_bad_acl_file_is_one_line_error_before_any_cluster_call(project, command):
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    (project / "acls" / "dev.yaml").write_text("acls:\n  - principal: Group:ops\n    topic: t\n    allow: [Read]\n")
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: acls/dev.yaml:2: unknown principal type 'Group' in 'Group:ops': only User:<name> principals exist here"]


def test_acl_without_file_says_how_to_get_one(project):
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    (project / "acls" / "dev.yaml").unlink()
    result = runner.invoke(app, ["acl", "plan", "dev"])
    assert result.exit_code == 1 and "acls/dev.yaml not found" in result.output


@pytest.mark.parametrize("name, reason", [
    ("admin", "reserved (admin"), ("Admin", "reserved (admin"), ("kafka-0", "reserved (admin"), ("KAFKA-0", "reserved (admin"),
    ("zk-2", "reserved (admin"), ("ANONYMOUS", "unauthenticated principal"), ("anonymous", "unauthenticated principal"),
    ("bad name", "invalid user name"), ("x" * 65, "invalid user name"),
])
def test_users_add_refuses_reserved_and_invalid_names(project, name, reason):
    """Refused for the name itself, before any cluster is asked (none runs here)."""
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    result = runner.invoke(app, ["users", "add", "dev", name])
    assert result.exit_code == 1 and reason in result.output, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_audit_refuses_a_bad_duration(project):
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    result = runner.invoke(app, ["audit", "dev", "--since", "yesterday"])
    assert result.exit_code == 1 and "invalid duration 'yesterday'" in result.output


@pytest.mark.parametrize("options, reason", [
    (["--operations", "--failed-logins"], "read different trails"),
    (["--operations", "--principal", "alice"], "the operations trail is by operator"),
    (["--operations", "--follow"], "the operations trail grows only by commands"),
])
def test_audit_refuses_filters_that_do_not_go_together(project, options, reason):
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    result = runner.invoke(app, ["audit", "dev", *options])
    assert result.exit_code == 1 and reason in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("words, reason", [
    (["verify", "dev", "--follow"], "--follow goes with `audit ENV` or `audit collect ENV`"),
    (["collect", "dev", "extra"], "unexpected 'dev extra'"),
    (["dev", "more"], "use `audit ENV [options]`, `audit verify ENV` or `audit collect ENV`"),
])
def test_audit_refuses_words_it_does_not_take(project, words, reason):
    assert runner.invoke(app, ["init", "dev"]).exit_code == 0
    result = runner.invoke(app, ["audit", *words])
    assert result.exit_code == 1 and reason in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
