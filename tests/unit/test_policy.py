"""``policy.check`` and ``secure-kafka check``: every bad configuration is named, none crashes."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from secure_kafka import environment
from secure_kafka.build import render
from secure_kafka.build.planner import build_plan
from secure_kafka.cli import app
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import policy, profiles, settings
from secure_kafka.pki.secretstore import SecretStore

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"

# (profile, stack-file overrides, the setting and the rule that must be reported)
BAD = [
    ("prod", {"zookeeperNodes": 1}, "zookeeperNodes", "zookeeper-nodes-min"),
    ("dev", {"zookeeperNodes": 0}, "zookeeperNodes", "zookeeper-nodes-min"),
    ("prod", {"zookeeperNodes": 4}, "zookeeperNodes", "zookeeper-nodes-odd"),
    ("dev", {"zookeeperNodes": 2}, "zookeeperNodes", "zookeeper-nodes-odd"),
    ("dev", {"zookeeperNodes": 5}, "zookeeperNodes", "zookeeper-nodes-max"),
    ("prod", {"zookeeperNodes": 9}, "zookeeperNodes", "zookeeper-nodes-max"),
    # KRaft mode: the controller quorum by the same rules; zookeeperNodes is not read.
    ("prod", {"metadataMode": "kraft", "controllers": 1}, "controllers", "controllers-min"),
    ("prod", {"metadataMode": "kraft", "controllers": 4}, "controllers", "controllers-odd"),
    ("dev", {"metadataMode": "kraft", "controllers": 2}, "controllers", "controllers-odd"),
    ("dev", {"metadataMode": "kraft", "controllers": 0}, "controllers", "controllers-min"),
    ("dev", {"metadataMode": "kraft", "controllers": 5}, "controllers", "controllers-max"),
    ("prod", {"brokers": 2}, "brokers", "brokers-min"),
    ("dev", {"brokers": 0}, "brokers", "brokers-min"),
    ("prod", {"replicationFactor": 2}, "replicationFactor", "replication-factor-min"),
    ("dev", {"replicationFactor": 2}, "replicationFactor", "replication-factor-exceeds-brokers"),
    ("prod", {"replicationFactor": 4}, "replicationFactor", "replication-factor-exceeds-brokers"),
    ("prod", {"minInsyncReplicas": 1}, "minInsyncReplicas", "min-insync-replicas-min"),
    ("dev", {"minInsyncReplicas": 0}, "minInsyncReplicas", "min-insync-replicas-min"),
    ("prod", {"minInsyncReplicas": 4}, "minInsyncReplicas", "min-insync-replicas-exceeds-replication"),
    ("prod", {"uncleanLeaderElection": True}, "uncleanLeaderElection", "unclean-leader-election-forbidden"),
    ("ci", {"uncleanLeaderElection": True}, "uncleanLeaderElection", "unclean-leader-election-forbidden"),
    ("prod", {"tlsVersions": []}, "tlsVersions", "tls-versions-empty"),
    ("dev", {"tlsVersions": ["TLSv1.1", "TLSv1.3"]}, "tlsVersions", "tls-version-unsupported"),
    ("dev", {"tlsVersions": ["SSLv3"]}, "tlsVersions", "tls-version-unsupported"),
    ("dev", {"tlsVersions": ["TLS1.3"]}, "tlsVersions", "tls-version-unsupported"),
    ("prod", {"tlsVersions": ["TLSv1.2", "TLSv1.3"]}, "tlsVersions", "tls12-needs-reason"),
    ("prod", {"tlsVersions": ["TLSv1.2"], "tls12Reason": "   "}, "tlsVersions", "tls12-needs-reason"),
    ("prod", {"keyAlgorithm": "ec-p256"}, "keyAlgorithm", "key-algorithm-not-allowed"),
    ("dev", {"keyAlgorithm": "rsa-2048"}, "keyAlgorithm", "key-algorithm-not-allowed"),
    ("prod", {"leafValidityDays": 398}, "leafValidityDays", "leaf-validity-bounds"),
    ("dev", {"leafValidityDays": 0}, "leafValidityDays", "leaf-validity-bounds"),
    ("ci", {"leafValidityDays": 31}, "leafValidityDays", "leaf-validity-bounds"),
    ("prod", {"plaintextLoopback": True}, "plaintextLoopback", "plaintext-listener-forbidden"),
    ("ci", {"plaintextLoopback": True}, "plaintextLoopback", "plaintext-listener-forbidden"),
    ("prod", {"bindAddress": "0.0.0.0"}, "bindAddress", "public-bind-not-allowed"),
    ("dev", {"bindAddress": "::"}, "bindAddress", "public-bind-not-allowed"),
    ("dev", {"bindAddress": "192.0.2.10"}, "bindAddress", "public-bind-not-allowed"),
    ("dev", {"bindAddress": "localhost"}, "bindAddress", "bind-address-invalid"),
    ("prod", {"bindAddress": "127.0.0.1\nlisteners=PLAINTEXT://0.0.0.0:1"}, "bindAddress", "bind-address-invalid"),
    ("prod", {"encryptedVolumes": False}, "encryptedVolumes", "encrypted-volumes-required"),
    ("prod", {"readOnlyRootfs": False}, "readOnlyRootfs", "writable-rootfs-forbidden"),
    ("ci", {"readOnlyRootfs": False}, "readOnlyRootfs", "writable-rootfs-forbidden"),
    ("dev", {"portBase": 80}, "portBase", "port-range"),
    ("dev", {"portBase": -5}, "portBase", "port-range"),
    ("prod", {"portBase": 65520}, "portBase", "port-range"),
    ("dev", {"portBase": 9090}, "portBase", "port-collision"),
    ("prod", {"portBase": 9070}, "portBase", "port-collision"),
    ("dev", {"auditLogFileMb": 0}, "auditLogFileMb", "audit-log-file-size"),
    ("prod", {"auditLogFileMb": 4096}, "auditLogFileMb", "audit-log-file-size"),
]

# Overrides each profile allows: they pass.
GOOD = [
    ("dev", {}),
    ("ci", {}),
    ("prod", {}),
    ("dev", {"zookeeperNodes": 3, "brokers": 3, "replicationFactor": 3, "minInsyncReplicas": 2}),
    ("dev", {"metadataMode": "kraft"}),
    ("prod", {"metadataMode": "kraft"}),
    ("dev", {"metadataMode": "kraft", "controllers": 3, "zookeeperNodes": 2}),
    ("prod", {"metadataMode": "zookeeper", "controllers": 2}),
    ("dev", {"plaintextLoopback": True, "encryptedVolumes": False, "readOnlyRootfs": False}),
    ("dev", {"uncleanLeaderElection": True, "tlsVersions": ["TLSv1.2"], "keyAlgorithm": "rsa-4096"}),
    ("dev", {"bindAddress": "::1"}),
    ("ci", {"encryptedVolumes": False, "leafValidityDays": 30}),
    ("prod", {"tlsVersions": ["TLSv1.2", "TLSv1.3"], "tls12Reason": "a legacy Java 8 client"}),
    ("prod", {"bindAddress": "192.0.2.10", "allowPublicBind": True}),
    ("prod", {"bindAddress": "0.0.0.0", "allowPublicBind": True}),
    ("prod", {"zookeeperNodes": 5, "brokers": 5, "keyAlgorithm": "rsa-3072", "leafValidityDays": 90}),
    ("prod", {"portBase": 65500}),
    ("prod", {"auditLogFileMb": 1}),
]


def ids(table):
    return [f"{row[0]}-" + "-".join(f"{k}={v}" for k, v in row[1].items()) for row in table]


def from_stack(profile: str, overrides: dict) -> settings.Settings:
    return settings.from_config(profile, {"profile": profile, **overrides}, f"Pulumi.{profile}.yaml")


@pytest.mark.parametrize("profile, overrides, key, rule", BAD, ids=ids(BAD))
def test_bad_configuration_is_named(profile, overrides, key, rule):
    violations = policy.check(from_stack(profile, overrides))
    named = [v for v in violations if v.rule == rule]
    assert named, [v.rule for v in violations]
    assert named[0].setting == f"secure-kafka:{key}"
    assert named[0].value == overrides[key]
    assert named[0].fix.endswith(f"in Pulumi.{profile}.yaml") and named[0].reason
    # Only the settings changed here (or those they are checked against) are reported.
    assert {v.setting.split(":")[1] for v in violations} <= {*overrides, "replicationFactor", "minInsyncReplicas"}


def test_bad_table_is_large_and_covers_every_rule():
    assert len(BAD) >= 30
    rules = re.findall(r'violation\("\w+", "([a-z0-9-]+)"', Path(policy.__file__).read_text())
    rules += [rule for *_, quorum_rules in policy.QUORUM.values() for rule in quorum_rules]
    assert len(rules) >= 20
    assert set(rules) == {row[3] for row in BAD}


@pytest.mark.parametrize("profile, overrides", GOOD, ids=ids(GOOD))
def test_good_configuration_passes(profile, overrides):
    assert policy.check(from_stack(profile, overrides)) == []


def test_every_violation_at_once():
    bad = from_stack("prod", {"brokers": 1, "tlsVersions": ["TLSv1.2"], "encryptedVolumes": False,
                              "bindAddress": "0.0.0.0", "readOnlyRootfs": False, "keyAlgorithm": "ec-p256"})
    rules = [v.rule for v in policy.check(bad)]
    assert rules == ["brokers-min", "replication-factor-exceeds-brokers", "tls12-needs-reason",
                     "key-algorithm-not-allowed", "public-bind-not-allowed", "encrypted-volumes-required",
                     "writable-rootfs-forbidden"]
    with pytest.raises(SecureKafkaError) as raised:
        policy.enforce(bad)
    message = str(raised.value)
    assert "\n" not in message and "7 setting(s)" in message and "secure-kafka check prod" in message
    assert all(rule in message for rule in rules)


# --- through the command line ----------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    return tmp_path


def write_stack(root: Path, env: str, config: dict) -> None:
    """A raw stack file, as a user (or an attacker) may write it."""
    document = {"config": {f"secure-kafka:{k}": v for k, v in config.items()}}
    (root / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump(document))


@pytest.mark.parametrize("profile, overrides, key, rule", BAD, ids=ids(BAD))
def test_check_cli_lists_each_violation(project, profile, overrides, key, rule):
    write_stack(project, "bad", {"profile": profile, **overrides})
    result = runner.invoke(app, ["check", "bad"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    expected = policy.check(settings.Project(project).load("bad"))
    lines = result.stdout.splitlines()
    assert lines == [v.line() for v in expected]
    assert any(line.startswith(f"secure-kafka:{key}=") and f": {rule}: " in line for line in lines)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: bad breaks profile")


@pytest.mark.parametrize("profile", ["dev", "ci", "prod"])
def test_check_cli_passes_init_defaults(project, profile):
    assert runner.invoke(app, ["init", profile, "--profile", profile]).exit_code == 0
    result = runner.invoke(app, ["check", profile])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{profile} passes profile {profile}\n"
    as_json = runner.invoke(app, ["check", profile, "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {"env": profile, "profile": profile, "ok": True, "violations": []}


def test_check_cli_json(project):
    write_stack(project, "bad", {"profile": "prod", "encryptedVolumes": False, "tlsVersions": ["TLSv1.1"]})
    result = runner.invoke(app, ["check", "bad", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["profile"] == "prod"
    assert document["violations"] == [
        {"setting": "secure-kafka:tlsVersions", "value": ["TLSv1.1"], "rule": "tls-version-unsupported",
         "reason": "TLSv1.1 is not allowed: only TLSv1.2 and TLSv1.3 are",
         "fix": "list only TLSv1.3 (and TLSv1.2 where needed) in tlsVersions in Pulumi.bad.yaml"},
        {"setting": "secure-kafka:encryptedVolumes", "value": False, "rule": "encrypted-volumes-required",
         "reason": "profile prod keeps data only on encrypted volumes",
         "fix": "set encryptedVolumes to true in Pulumi.bad.yaml"},
    ]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"profile": "prod", "brokers": "three"}, "secure-kafka:brokers must be int, got str 'three'"),
        ({"profile": "prod", "brokers": True}, "secure-kafka:brokers must be int, got bool True"),
        ({"profile": "prod", "tlsVersions": "TLSv1.3"}, "secure-kafka:tlsVersions must be list"),
        ({"profile": "prod", "readOnlyRootfs": "no"}, "secure-kafka:readOnlyRootfs must be bool"),
        ({"profile": "prod", "replicationFactor": 2.5}, "secure-kafka:replicationFactor must be int"),
        ({"profile": "prod", "tls12Reason": ["x"]}, "secure-kafka:tls12Reason must be str"),
        ({"profile": "prod", "runAsRoot": True}, "unknown key secure-kafka:runAsRoot"),
        ({"profile": "staging"}, "unknown profile 'staging'"),
        ({"brokers": 3}, "missing key secure-kafka:profile"),
    ],
)
def test_check_cli_hostile_values_are_one_line_errors(project, config, message):
    write_stack(project, "bad", config)
    result = runner.invoke(app, ["check", "bad"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_up_refuses_a_failing_environment_before_touching_anything(project, monkeypatch):
    write_stack(project, "bad", {"profile": "prod", "encryptedVolumes": False})

    def no_docker():
        raise AssertionError("up reached Docker")

    monkeypatch.setattr(environment, "connect", no_docker)
    env = environment.Environment(settings.Project(project), "bad")
    with pytest.raises(SecureKafkaError, match=r"breaks profile prod in 1 setting\(s\): secure-kafka:encryptedVolumes"):
        env.up()
    assert not (project / "certs").exists()

    result = runner.invoke(app, ["up", "bad", "--engine", "docker"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "encrypted-volumes-required" in result.stderr and "nothing applied" in result.stderr
    assert not (project / "certs").exists()


# --- the plan applies the profile's hardening ------------------------------------------------


@pytest.mark.parametrize("profile", list(profiles.PROFILES.values()), ids=list(profiles.PROFILES))
def test_plan_hardens_every_container(tmp_path, profile):
    cluster = build_plan(Path("/srv/p"), settings.defaults(profile.name, profile), SecretStore(tmp_path / "s.json"), "img")
    for spec in cluster.containers:
        heap, cpus = ((profile.zookeeper_heap_mb, profile.zookeeper_cpus) if spec.role == "zookeeper"
                      else (profile.broker_heap_mb, profile.broker_cpus))
        assert spec.user == "10001:10001"
        assert spec.read_only_rootfs is True
        assert spec.cap_drop == ("ALL",)
        assert spec.security_opt == ("no-new-privileges:true",)
        assert spec.mem_limit_mb == heap + 384
        assert spec.nano_cpus == int(cpus * 1e9)
        assert spec.pids_limit == profile.pids_limit


def test_dev_writable_rootfs_opt_out_reaches_the_plan(tmp_path):
    dev = dataclasses.replace(settings.defaults("dev", profiles.DEV), read_only_rootfs=False)
    cluster = build_plan(Path("/srv/p"), dev, SecretStore(tmp_path / "s.json"), "img")
    assert all(spec.read_only_rootfs is False and spec.cap_drop == ("ALL",) for spec in cluster.containers)


# --- the README's table is the profile data --------------------------------------------------


def test_readme_profile_table_is_generated_from_the_profiles():
    text = README.read_text()
    match = re.search(r"<!-- profile-table:begin -->\n(.*?)<!-- profile-table:end -->", text, re.S)
    assert match, "README.md lost its profile-table markers"
    assert match.group(1) == profiles.markdown_table(), "regenerate it: python -m secure_kafka.model.profiles"


def test_readme_names_every_setting_key():
    text = README.read_text()
    assert [key for key in settings.KEYS if key != "profile" and f"`{key}`" not in text] == []


@pytest.mark.parametrize("port_base, reason", [("80", "outside 1024..65535"), ("9090", "port 9091")])
def test_init_refuses_a_port_base_out_of_bounds(project, port_base, reason):
    result = runner.invoke(app, ["init", "dev", "--port-base", port_base])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert reason in result.stderr and result.stderr.count("\n") == 1
    assert not (project / "Pulumi.dev.yaml").exists()


# --- the profile's TLS and durability choices reach the rendered files ----------------------


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("profile", list(profiles.PROFILES.values()), ids=list(profiles.PROFILES))
def test_profile_suites_and_durability_are_rendered(tmp_path, profile):
    config = settings.defaults(profile.name, profile)
    secrets = SecretStore(tmp_path / "s.json")
    broker = render.render_broker(config, config.topology.brokers[0], secrets)
    server = _properties(broker["server.properties"])
    suites = list(profiles.CIPHER_SUITES["TLSv1.3"])
    if "TLSv1.2" in profile.tls_versions:
        suites += profiles.CIPHER_SUITES["TLSv1.2"]
    assert server["ssl.cipher.suites"].split(",") == suites
    assert server["zookeeper.ssl.cipher.suites"] == server["ssl.cipher.suites"]
    assert server["ssl.client.auth"] == profile.ssl_client_auth == "required"
    assert server["unclean.leader.election.enable"] == "false"
    assert f"log4j.appender.audit.MaxBackupIndex={profile.audit_log_backups}\n" in broker["log4j.properties"]
    zoo = _properties(render.render_zookeeper(config, config.topology.zookeepers[0], secrets)["zoo.cfg"])
    assert zoo["ssl.ciphersuites"] == server["ssl.cipher.suites"]
    if profile is profiles.PROD:
        assert not [s for s in server["ssl.cipher.suites"].split(",") if not s.startswith("TLS_AES_") and "CHACHA" not in s]


def test_settings_reach_the_rendered_replication(tmp_path):
    config = dataclasses.replace(settings.defaults("dev", profiles.DEV), brokers=3, replication_factor=3,
                                 min_insync_replicas=2, unclean_leader_election=True)
    server = _properties(render.render_broker(config, config.topology.brokers[0], SecretStore(tmp_path / "s.json"))["server.properties"])
    assert (server["default.replication.factor"], server["min.insync.replicas"]) == ("3", "2")
    assert server["unclean.leader.election.enable"] == "true"


@pytest.mark.parametrize("profile, stack, expected", [
    ("prod", {}, {}),  # the profile's defaults: nothing overridden
    ("dev", {"brokers": 3, "portBase": 20000}, {}),  # not security settings
    ("prod", {"bindAddress": "0.0.0.0", "allowPublicBind": True}, {"bindAddress": "0.0.0.0", "allowPublicBind": True}),
    ("prod", {"tlsVersions": ["TLSv1.3", "TLSv1.2"], "tls12Reason": "a legacy client"},
     {"tlsVersions": ["TLSv1.3", "TLSv1.2"], "tls12Reason": "a legacy client"}),
    ("dev", {"auditAllowed": False, "plaintextLoopback": True}, {"auditAllowed": False, "plaintextLoopback": True}),
])
def test_overrides_are_the_security_settings_away_from_the_profile(profile, stack, expected):
    """What `up` records in the operations trail as the environment's policy overrides."""
    assert policy.overrides(from_stack(profile, stack)) == expected
