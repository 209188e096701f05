"""The Pulumi program under Pulumi's mocks: children, inputs, order, secrets, stability.

``conftest.py`` installs the mocks before this module imports the program. The stacks run
are the shipped ``Pulumi.dev.yaml`` and ``Pulumi.prod.yaml``, in a temporary project.
"""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import shutil
import stat
import sys
from pathlib import Path

import pulumi_mocks as mocks
import pytest
import yaml
from environment_secrets import secret_values

from secure_kafka.build import image
from secure_kafka.build import plan as plan_mod
from secure_kafka.build.planner import build_plan
from secure_kafka.engines.pulumi.component import (
    SecureKafkaCluster,
    SecureKafkaClusterArgs,
    cpus_input,
)
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.settings import Project
from secure_kafka.model.topology import METADATA_MODES
from secure_kafka.pki.secretstore import SecretStore

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TAG = "secure-kafka-runtime:3.9.2-testtesttest"
CONTAINER = "docker:index/container:Container"
COMPONENT = "secure-kafka:index:SecureKafkaCluster"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    """A project with the repository's Pulumi.yaml and stack files, found by the program."""
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.ci.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    monkeypatch.setenv("SECURE_KAFKA_PASSPHRASE", "a prod-grade test passphrase")
    # The program builds the image on `pulumi up` when missing; here it exists by name only.
    monkeypatch.setattr(image, "ensure_image", lambda *_a, **_k: TAG)
    monkeypatch.setattr(image, "image_tag", lambda *_a, **_k: TAG)
    return Project(tmp_path)


def run_program(project: Project, env: str, preview: bool = False):
    """Runs infra/__main__.py as `pulumi up` (or preview) of stack ``env`` would; returns (monitor, outputs).

    Pulumi hands the program the stack file's config too; the program reads the file itself.
    """
    config = mocks.stack_file_config(project.stack_file(env))

    async def program():
        runpy.run_path(str(INFRA), run_name="__main__")
        return await mocks.stack_outputs()

    return mocks.run(lambda: program(), stack=env, config=config, preview=preview)


def component_only(tmp_path: Path, env: str, provision: bool = True, metadata_mode: str = "zookeeper"):
    """The component alone, for a plan built directly (no PKI needed), of the repo's stack ``env``
    in ``metadata_mode``."""
    project = Project(tmp_path)
    settings = dataclasses.replace(Project(REPO).load(env), metadata_mode=metadata_mode)
    plan = build_plan(project.root, settings, SecretStore(tmp_path / "secrets.json"), TAG)

    def body():
        cluster = SecureKafkaCluster(f"sk-{env}", SecureKafkaClusterArgs(plan, settings, project.root, provision=provision))
        return cluster.verification

    monitor, _ = mocks.run(body, stack=env, config={}, preview=True)
    return plan, monitor


@pytest.mark.parametrize("metadata_mode", METADATA_MODES)
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_children_map_the_plan(tmp_path, env, metadata_mode):
    plan, monitor = component_only(tmp_path, env, metadata_mode=metadata_mode)
    component = monitor.of_type(COMPONENT)
    assert [c.name for c in component] == [f"sk-{env}"]
    children = [r for r in monitor.registrations if r.type != COMPONENT]
    assert all(r.parent == component[0].urn for r in children), "every child has parent=self"
    assert all(r.name.startswith(f"sk-{env}-") for r in children)

    (network,) = monitor.of_type("docker:index/network:Network")
    assert network.inputs["name"] == plan.network and network.inputs["driver"] == "bridge"
    assert {lbl["label"]: lbl["value"] for lbl in network.inputs["labels"]} == plan.labels
    volumes = monitor.of_type("docker:index/volume:Volume")
    assert sorted(v.inputs["name"] for v in volumes) == sorted(plan.volumes)
    (remote_image,) = monitor.of_type("docker:index/remoteImage:RemoteImage")
    assert remote_image.inputs == {"name": TAG, "keepLocally": True}

    containers = {r.inputs["name"]: r for r in monitor.of_type(CONTAINER)}
    assert sorted(containers) == sorted(spec.name for spec in plan.containers), "one container per node"
    for spec in plan.containers:  # logs rolled as the Docker engine rolls them (the parity test compares both)
        assert containers[spec.name].inputs["logDriver"] == "json-file"
        assert containers[spec.name].inputs["logOpts"] == {"max-file": "5", "max-size": "10m"}
    for spec in plan.containers:
        got = containers[spec.name].inputs
        assert got["image"] == TAG and got["hostname"] == spec.node
        assert got["command"] == list(spec.command)
        assert got["envs"] == [f"{k}={v}" for k, v in sorted(spec.env.items())]
        assert got["user"] == "10001:10001"
        labels = {lbl["label"]: lbl["value"] for lbl in got["labels"]}
        assert labels == {**spec.labels, plan_mod.LABEL_SPEC_HASH: plan_mod.spec_hash(spec)}
        assert sorted((m["type"], m["source"], m["target"], m.get("readOnly", False)) for m in got["mounts"]) == sorted(
            (m.kind, m.source, m.target, m.read_only) for m in spec.mounts if m.kind != "tmpfs")
        assert got["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"}
        assert got.get("ports", []) == [
            {"internal": p.container_port, "external": p.host_port, "ip": p.host_ip, "protocol": "tcp"} for p in spec.ports]
        assert all(p["ip"] == "127.0.0.1" for p in got.get("ports", []))
        assert (spec.role == "broker") == bool(got.get("ports")), "only brokers publish ports"
        hc = spec.healthcheck
        assert got["healthcheck"] == {"tests": list(hc.test), "interval": f"{hc.interval_s}s", "timeout": f"{hc.timeout_s}s",
                                      "retries": hc.retries, "startPeriod": f"{hc.start_period_s}s"}
        assert got["wait"] is True and got["waitTimeout"] >= hc.interval_s * hc.retries
        assert got["readOnly"] is True
        assert got["capabilities"] == {"drops": ["ALL"]}
        assert got["securityOpts"] == ["no-new-privileges:true"]
        assert got["memory"] == spec.mem_limit_mb
        assert got["memorySwap"] == spec.memswap_limit_mb == spec.mem_limit_mb, "no swap, and no diff on read-back"
        assert got["cpus"] == cpus_input(spec.nano_cpus)
        assert got["restart"] == spec.restart_policy
        assert got["networkMode"] == plan.network
        assert got["networksAdvanced"] == [{"name": plan.network, "aliases": [spec.node]}]


@pytest.mark.parametrize("metadata_mode", METADATA_MODES)
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_depends_on_the_quorum_then_brokers_then_bootstrap(tmp_path, env, metadata_mode):
    plan, monitor = component_only(tmp_path, env, metadata_mode=metadata_mode)
    urn = {r.inputs.get("name", r.name): r.urn for r in monitor.registrations}
    deps = {r.inputs.get("name", r.name): set(r.dependencies) for r in monitor.registrations}
    # ZooKeeper nodes or KRaft controllers: what every broker waits for.
    quorum = [urn[s.name] for s in plan.containers if s.role in plan_mod.QUORUM_ROLES]
    assert len(quorum) == len(plan.containers) - len([s for s in plan.containers if s.role == "broker"]) >= 1
    brokers = [urn[s.name] for s in plan.containers if s.role == "broker"]
    network = urn[plan.network]
    for spec in plan.containers:
        assert network in deps[spec.name]
        # A Docker volume is a dependency; an encrypted volume (the default) is a bind mount.
        for volume in (m.source for m in spec.mounts if m.kind == "volume"):
            assert urn[volume] in deps[spec.name]
        if spec.role in plan_mod.QUORUM_ROLES:
            assert not deps[spec.name] & set(quorum + brokers)
        else:
            assert set(quorum) <= deps[spec.name] and not deps[spec.name] & set(brokers)
    bootstrap = monitor.named(f"sk-{env}-bootstrap")
    assert set(brokers) <= set(bootstrap.dependencies)
    # Encrypted volumes are unlocked before any container is created (and locked after all are deleted).
    volumes = monitor.named(f"sk-{env}-encrypted-volumes")
    assert all(volumes.urn in deps[spec.name] for spec in plan.containers)
    # Each container gets the plan's PIDs limit once it exists.
    for spec in plan.containers:
        pids = monitor.named(f"sk-{env}-{spec.node}-pids-limit")
        assert urn[spec.name] in pids.dependencies and pids.inputs["limit"] == spec.pids_limit
    # The registration order is the start order too.
    order = [r.urn for r in monitor.registrations]
    assert max(order.index(z) for z in quorum) < min(order.index(b) for b in brokers) < order.index(bootstrap.urn)


def test_bootstrap_inputs_hold_no_secret(tmp_path):
    _, monitor = component_only(tmp_path, "dev")
    bootstrap = monitor.named("sk-dev-bootstrap")
    assert not any(r.has_secret for r in monitor.of_type(mocks.DYNAMIC_TYPE))
    assert set(bootstrap.inputs) >= {"project_root", "env", "settings", "containers", "__provider"}
    assert bootstrap.inputs["env"] == "dev"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_program_outputs_and_secrets(project, env):
    monitor, outputs = run_program(project, env)
    assert outputs["bootstrapServers"] == (
        {"sasl_ssl": ["localhost:19001"], "ssl": ["localhost:19002"]} if env == "dev" else
        {"sasl_ssl": [f"localhost:{19400 + 10 * i + 1}" for i in range(3)],
         "ssl": [f"localhost:{19400 + 10 * i + 2}" for i in range(3)]}, False)
    ca_pem, ca_secret = outputs["caCertificate"]
    assert ca_pem.startswith("-----BEGIN CERTIFICATE-----") and not ca_secret
    config, config_secret = outputs["clientConfig"]
    assert not config_secret and Path(config["admin"]["ca"]).is_file() and Path(config["admin"]["key"]).is_file()
    for name in ("adminScramPassword", "adminStorePassword"):
        value, is_secret = outputs[name]
        assert is_secret, f"{name} must be a secret output"
        assert len(value) >= 32
    assert outputs["verification"] == ({"scramUsersCreated": ["admin"], "roundTripS": 0.25}, False)

    secrets = secret_values(project, env)
    plain_outputs = json.dumps([v for v, is_secret in outputs.values() if not is_secret])
    for resource in monitor.registrations:
        assert not resource.has_secret, f"{resource.name} has a secret input"
        dumped = json.dumps(resource.inputs, default=str)
        leaked = [s for s in secrets if s in dumped]
        assert not leaked, f"a secret appears in the inputs of {resource.name}"
    assert not [s for s in secrets if s in plain_outputs], "a secret appears in a plain output"
    # The control: the scanner finds a secret where one is.
    assert outputs["adminScramPassword"][0] in secrets


def test_rendered_files_are_on_disk_before_containers(project):
    """`pulumi up` writes every rendered file (0600) as the Docker engine would; a preview writes none."""
    monitor, _ = run_program(project, "dev", preview=True)
    assert monitor.of_type(CONTAINER)
    runtime = project.certs_dir("dev") / "runtime"
    assert not runtime.exists() or not any(p.is_file() for p in runtime.rglob("*"))

    run_program(project, "dev")
    settings = project.load("dev")
    plan = build_plan(project.root, settings, SecretStore(project.certs_dir("dev") / "secrets.json"), TAG)
    files = [f for spec in plan.containers for f in spec.files]
    assert files
    for file in files:
        path = project.root / file.path
        assert path.read_text() == file.content
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_second_run_declares_identical_inputs(project):
    first, _ = run_program(project, "prod")
    second, _ = run_program(project, "prod")

    def declared(monitor):
        # Sorted: independent resources register concurrently, in no fixed order.
        return sorted((r.type, r.name, r.parent, sorted(r.dependencies), json.dumps(r.inputs, sort_keys=True, default=str))
                      for r in monitor.registrations)

    assert declared(first) == declared(second)


def set_in_stack_file(project: Project, env: str, key: str, value: object) -> None:
    """Sets one config value in the stack file, as `pulumi config set` does (the program reads the file)."""
    path = project.stack_file(env)
    document = yaml.safe_load(path.read_text())
    document["config"][key] = value
    path.write_text(yaml.safe_dump(document))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("secure-kafka:brokerz", "3", "secure-kafka:brokerz"),
        ("secure-kafka:brokers", "three", "secure-kafka:brokers must be int"),
        ("secure-kafka:allowPublicBind", "1", "secure-kafka:allowPublicBind must be bool"),
        ("secure-kafka:tlsVersions", '"TLSv1.3"', "secure-kafka:tlsVersions must be list"),
    ],
)
def test_bad_stack_config_fails_before_any_resource(project, key, value, message):
    set_in_stack_file(project, "dev", key, value)
    with pytest.raises(SecureKafkaError, match=message):
        run_program(project, "dev")
    assert not project.certs_dir("dev").exists(), "nothing prepared for a bad config"


def test_the_stack_file_as_pulumi_rewrites_it_is_read_alike(project):
    """`pulumi stack init` and `pulumi config set` write every value as a string: same settings."""
    before = project.load("dev")
    for key, value in mocks.stack_file_config(project.stack_file("dev")).items():
        set_in_stack_file(project, "dev", key, value)
    assert "'1'" in project.stack_file("dev").read_text()
    assert project.load("dev") == before
    assert run_program(project, "dev", preview=True)[0].of_type(CONTAINER)


def test_other_namespaces_are_not_ours(project):
    set_in_stack_file(project, "dev", "docker:host", "unix:///var/run/docker.sock")
    monitor, _ = run_program(project, "dev", preview=True)
    assert monitor.of_type(CONTAINER)


@pytest.mark.parametrize("nano_cpus, text", [
    (1_000_000_000, "1.0"), (2_000_000_000, "2.0"), (500_000_000, "0.5"), (1_500_000_000, "1.5"),
    (1_250_000_000, "1.25"), (100_000_000, "0.1"), (10_000_000_000, "10."), (50_000_000, "0.1"),
])
def test_cpus_are_spelled_as_the_provider_reads_them_back(nano_cpus, text):
    """The docker provider's nanoInt64ToDecimalString, quirks included ("10.", and 0.05 read as "0.1")."""
    assert cpus_input(nano_cpus) == text


def test_parity_view_sees_a_deliberate_change(tmp_path):
    """The parity comparison must be able to fail: any one changed input changes the view."""
    _, monitor = component_only(tmp_path, "dev", provision=False)
    recorded = monitor.of_type(CONTAINER)[-1].inputs
    baseline = mocks.docker_view_of_inputs(recorded)
    changes = {
        "envs": ["JVM_OPTS=-Xmx1m"], "command": ["sh"], "readOnly": False, "user": "0:0",
        "mounts": recorded["mounts"][:-1], "securityOpts": [], "capabilities": {}, "memory": 1, "memorySwap": 1,
        "ports": [], "labels": recorded["labels"][:-1], "tmpfs": {},
    }
    for key, value in changes.items():
        assert mocks.docker_view_of_inputs({**recorded, key: value}) != baseline, key


def test_engine_choice(monkeypatch, tmp_path):
    from secure_kafka.engines.pulumi import engine as pulumi_engine

    monkeypatch.setattr(pulumi_engine, "CHECKOUT_TOOLS", tmp_path / "no-checkout-build")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path))
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: None)
    assert pulumi_engine.choose("auto") == ("docker", "engine: docker (the Pulumi CLI is not installed; the Docker SDK applies the same plan)")
    with pytest.raises(SecureKafkaError, match=r"Pulumi CLI is not installed: run `./run setup`.*pulumi plugin install resource docker"):
        pulumi_engine.choose("pulumi")
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: "/usr/bin/pulumi" if name == "pulumi" else None)
    assert pulumi_engine.choose("auto")[0] == "docker"  # CLI without the docker plugin
    (tmp_path / "plugins" / "resource-docker-v4.6.0").mkdir(parents=True)
    assert pulumi_engine.choose("auto") == ("pulumi", "engine: pulumi (Pulumi CLI and docker plugin found)")
    assert pulumi_engine.choose("docker") == ("docker", "engine: docker")
    assert pulumi_engine.tools() == pulumi_engine.PulumiTools(Path("/usr/bin/pulumi"), tmp_path)


def test_the_checkout_build_comes_first_and_downloads_nothing(monkeypatch, tmp_path):
    from secure_kafka.engines.pulumi import engine as pulumi_engine

    checkout = tmp_path / "tools"
    (checkout / "bin").mkdir(parents=True)
    (checkout / "bin" / "pulumi").write_text("")
    monkeypatch.setattr(pulumi_engine, "CHECKOUT_TOOLS", checkout)
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: "/usr/bin/pulumi" if name == "pulumi" else None)
    found = pulumi_engine.tools()
    assert found == pulumi_engine.PulumiTools(checkout / "bin" / "pulumi", checkout / "home")
    env = found.env_vars()
    assert env["PULUMI_HOME"] == str(checkout / "home")
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    # Dynamic providers run `python3 -m pulumi.dynamic`: this interpreter's directory comes first.
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_step_ops_count_a_replacement_once():
    from secure_kafka.engines.pulumi.engine import StackUpdate, _Steps

    steps = _Steps()
    for urn, op in [("urn:pulumi:ci::secure-kafka::docker:index/container:Container::sk-ci-kafka-0", "delete-replaced"),
                    ("urn:pulumi:ci::secure-kafka::docker:index/container:Container::sk-ci-kafka-0", "replace"),
                    ("urn:pulumi:ci::secure-kafka::docker:index/container:Container::sk-ci-kafka-0", "create-replacement"),
                    ("urn:pulumi:ci::secure-kafka::docker:index/container:Container::sk-ci-zk-0", "same")]:
        metadata = type("Metadata", (), {"urn": urn, "op": op})
        steps(type("Event", (), {"resource_pre_event": type("Pre", (), {"metadata": metadata})})())
    update = StackUpdate({}, steps.ops)
    assert update.ops == {"sk-ci-kafka-0": "replace", "sk-ci-zk-0": "same"}
    assert update.changed() == {"sk-ci-kafka-0": "replace"} and update.summary == "replace 1, same 1"


def test_destroy_of_a_stack_never_made_touches_nothing(tmp_path, monkeypatch):
    """`down --engine auto` of an environment the Docker engine made: no stack is created to be
    destroyed, so Pulumi does not rewrite the tracked stack file."""
    from secure_kafka.engines.pulumi import engine as pulumi_engine

    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    never = pulumi_engine.PulumiEngine(tmp_path, "dev")
    monkeypatch.setattr(never, "_stack", lambda *args: pytest.fail("the Pulumi CLI was asked for a stack"))
    assert never.destroy("passphrase").ops == {}
    assert (tmp_path / "Pulumi.dev.yaml").read_text() == "config: {}\n" and not (tmp_path / ".pulumi").exists()
