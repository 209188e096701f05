"""``secure-kafka certs init|list|verify`` through the real command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from secure_kafka.cli import app
from secure_kafka.model import profiles, settings
from secure_kafka.pki import certstore

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch) -> settings.Project:
    monkeypatch.delenv(certstore.PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    project = settings.Project(tmp_path)
    project.write(settings.defaults("dev", profiles.DEV))
    project.write(settings.defaults("prod", profiles.PROD))
    return project


def run(*args: str):
    return runner.invoke(app, ["certs", *args])


def all_secrets(project: settings.Project, env: str) -> list[str]:
    root = project.certs_dir(env)
    values = list(json.loads((root / "secrets.json").read_text()).values())
    if (root / "passphrase").exists():
        values.append((root / "passphrase").read_text().strip())
    return values


def test_init_list_verify(project):
    result = run("init", "dev")
    assert result.exit_code == 0, result.output
    assert "created the PKI of 'dev' in certs/dev: 4 certificates" in result.stdout
    assert "CN=kafka-0,OU=broker,O=secure-kafka,L=dev" in result.stdout

    listing = run("list", "dev", "--json")
    assert listing.exit_code == 0
    document = json.loads(listing.stdout)
    assert document["env"] == "dev"
    names = [c["name"] for c in document["certificates"]]
    assert names == ["ca", "zk-0", "kafka-0", "admin"]
    kafka = document["certificates"][2]
    assert kafka["subject"] == "CN=kafka-0,OU=broker,O=secure-kafka,L=dev"
    network = f"sk-dev-{project.id}"  # container names carry the project's id
    assert kafka["sans"] == ["kafka-0", f"{network}-kafka-0", f"{network}-kafka-0.{network}", "localhost", "127.0.0.1"]
    assert kafka["days_left"] in (824, 825)
    assert {"serial", "sha256", "not_before", "not_after", "generation", "kind"} <= set(kafka)

    human = run("list", "dev")
    assert human.exit_code == 0 and f"SANs: kafka-0, {network}-kafka-0" in human.stdout and "days left" in human.stdout

    verified = run("verify", "dev")
    assert verified.exit_code == 0 and "the PKI of 'dev' is sound" in verified.stdout
    verified = run("verify", "dev", "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout) == {"env": "dev", "ok": True, "problems": []}

    everything = result.output + listing.output + human.output + verified.output
    assert not any(secret in everything for secret in all_secrets(project, "dev"))


def test_init_twice_is_refused(project):
    assert run("init", "dev").exit_code == 0
    again = run("init", "dev")
    assert again.exit_code == 1
    assert again.stderr == (
        "error: certs/dev/ca exists already: environment 'dev' has its PKI; "
        "use `secure-kafka certs rotate dev` to renew it\n"
    )


def test_verify_reports_problems_and_fails(project):
    assert run("init", "dev").exit_code == 0
    keystore = project.certs_dir("dev") / "nodes" / "kafka-0" / "keystore.p12"
    keystore.write_bytes(keystore.read_bytes()[:100])
    result = run("verify", "dev")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "problem: certs/dev/nodes/kafka-0/keystore.p12: does not open with its password from secrets.json "
        "(damaged or half-written): re-issue it with `secure-kafka certs rotate dev --node kafka-0`"
    ]
    as_json = run("verify", "dev", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["ok"] is False
    assert not any(secret in result.output + as_json.output for secret in all_secrets(project, "dev"))


def test_prod_without_passphrase_fails_with_one_line(project):
    result = run("init", "prod")  # CliRunner's stdin is not a terminal: no prompt
    assert result.exit_code == 1
    assert result.stderr == (
        "error: profile prod needs a passphrase for the CA key of 'prod': set SECURE_KAFKA_PASSPHRASE\n"
    )
    assert not project.certs_dir("prod").exists()


def test_prod_with_passphrase(project, monkeypatch):
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, "a long enough prod passphrase")
    assert run("init", "prod").exit_code == 0
    assert run("verify", "prod").exit_code == 0
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, "the wrong passphrase")
    result = run("verify", "prod")
    assert result.exit_code == 1
    assert "ca/ca.key: cannot decrypt the CA key: wrong passphrase (check SECURE_KAFKA_PASSPHRASE)" in result.stderr
    assert "the wrong passphrase" not in result.output


@pytest.mark.parametrize("command", ["list", "verify"])
def test_environment_without_pki(project, command):
    result = run(command, "dev")
    assert result.exit_code == 1
    assert "certs/dev/ca/ca.crt" in result.stderr and "secure-kafka certs init dev" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_environment(project):
    result = run("init", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: Pulumi.nope.yaml not found: run `secure-kafka init nope --profile dev|prod` first\n"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["certs", "--help"])
    assert result.exit_code == 0
    for command in ("init", "list", "verify"):
        assert command in result.stdout
