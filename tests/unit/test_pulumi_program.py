"""The Pulumi program under Pulumi's mocks: children, inputs, order, secrets, stability.

``conftest.py`` installs the mocks before this module imports the program. The stacks run
are the shipped ``Pulumi.dev.yaml`` and ``Pulumi.prod.yaml``, in a temporary project.
"""

from __future__ import annotations

import json
import runpy
import shutil
import stat
from pathlib import Path

import mocks
import pytest
from component import SecureKafkaCluster, SecureKafkaClusterArgs

from secure_kafka import image, plan as plan_mod
from secure_kafka.errors import SecureKafkaError
from secure_kafka.planner import build_plan
from secure_kafka.secretstore import SecretStore
from secure_kafka.settings import Project

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


def run_program(project: Project, env: str, preview: bool = False, config: dict[str, str] | None = None):
    """Runs infra/__main__.py as `pulumi up` (or preview) of stack ``env`` would; returns (monitor, outputs)."""
    config = config if config is not None else mocks.stack_file_config(project.stack_file(env))

    async def program():
        runpy.run_path(str(INFRA), run_name="__main__")
        return await mocks.stack_outputs()

    return mocks.run(lambda: program(), stack=env, config=config, preview=preview)


def component_only(tmp_path: Path, env: str, bootstrap: bool = True):
    """The component alone, for a plan built directly (no PKI needed)."""
    project = Project(tmp_path)
    settings = Project(REPO).load(env)
    plan = build_plan(project.root, settings, SecretStore(tmp_path / "secrets.json"), TAG)

    def body():
        cluster = SecureKafkaCluster(f"sk-{env}", SecureKafkaClusterArgs(plan, settings, project.root, bootstrap=bootstrap))
        return cluster.verification

    monitor, _ = mocks.run(body, stack=env, config={}, preview=True)
    return plan, monitor


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_children_map_the_plan(tmp_path, env):
    plan, monitor = component_only(tmp_path, env)
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
        assert got["restart"] == spec.restart_policy
        assert got["networkMode"] == plan.network
        assert got["networksAdvanced"] == [{"name": plan.network, "aliases": [spec.node]}]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_depends_on_zookeeper_then_brokers_then_bootstrap(tmp_path, env):
    plan, monitor = component_only(tmp_path, env)
    urn = {r.inputs.get("name", r.name): r.urn for r in monitor.registrations}
    deps = {r.inputs.get("name", r.name): set(r.dependencies) for r in monitor.registrations}
    zookeepers = [urn[s.name] for s in plan.containers if s.role == "zookeeper"]
    brokers = [urn[s.name] for s in plan.containers if s.role == "broker"]
    network = urn[plan.network]
    for spec in plan.containers:
        assert network in deps[spec.name]
        # A Docker volume is a dependency; an encrypted volume (the default) is a bind mount.
        for volume in (m.source for m in spec.mounts if m.kind == "volume"):
            assert urn[volume] in deps[spec.name]
        if spec.role == "zookeeper":
            assert not deps[spec.name] & set(zookeepers + brokers)
        else:
            assert set(zookeepers) <= deps[spec.name] and not deps[spec.name] & set(brokers)
    (bootstrap,) = monitor.of_type(mocks.DYNAMIC_TYPE)
    assert set(brokers) <= set(bootstrap.dependencies)
    # The registration order is the start order too.
    order = [r.urn for r in monitor.registrations]
    assert max(order.index(z) for z in zookeepers) < min(order.index(b) for b in brokers) < order.index(bootstrap.urn)


def test_bootstrap_inputs_hold_no_secret(tmp_path):
    _, monitor = component_only(tmp_path, "dev")
    (bootstrap,) = monitor.of_type(mocks.DYNAMIC_TYPE)
    assert not bootstrap.has_secret
    assert set(bootstrap.inputs) >= {"project_root", "env", "settings", "containers", "__provider"}
    assert bootstrap.inputs["env"] == "dev"


def secret_values(project: Project, env: str) -> list[str]:
    """Every secret of the environment: generated passwords and the private keys' PEM."""
    certs = project.certs_dir(env)
    values = list(json.loads((certs / "secrets.json").read_text()).values())
    values += [p.read_text() for p in certs.rglob("*.key")]
    values.append((certs / "passphrase").read_text().strip()) if (certs / "passphrase").exists() else None
    assert len(values) > 5
    return values


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_program_outputs_and_secrets(project, env):
    monitor, outputs = run_program(project, env)
    settings = project.load(env)
    assert outputs["bootstrapServers"] == (
        {"sasl_ssl": settings.topology.bootstrap("sasl_ssl"), "ssl": settings.topology.bootstrap("ssl")}, False)
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
    config = {**mocks.stack_file_config(project.stack_file("dev")), key: value}
    with pytest.raises(SecureKafkaError, match=message):
        run_program(project, "dev", config=config)
    assert not project.certs_dir("dev").exists(), "nothing prepared for a bad config"


def test_other_namespaces_are_not_ours(project):
    config = {**mocks.stack_file_config(project.stack_file("dev")), "docker:host": "unix:///var/run/docker.sock"}
    monitor, _ = run_program(project, "dev", preview=True, config=config)
    assert monitor.of_type(CONTAINER)


def test_parity_view_sees_a_deliberate_change(tmp_path):
    """The parity comparison must be able to fail: any one changed input changes the view."""
    _, monitor = component_only(tmp_path, "dev", bootstrap=False)
    recorded = monitor.of_type(CONTAINER)[-1].inputs
    baseline = mocks.docker_view_of_inputs(recorded)
    changes = {
        "envs": ["JVM_OPTS=-Xmx1m"], "command": ["sh"], "readOnly": False, "user": "0:0",
        "mounts": recorded["mounts"][:-1], "securityOpts": [], "capabilities": {}, "memory": 1,
        "ports": [], "labels": recorded["labels"][:-1], "tmpfs": {},
    }
    for key, value in changes.items():
        assert mocks.docker_view_of_inputs({**recorded, key: value}) != baseline, key


def test_engine_choice(monkeypatch, tmp_path):
    from secure_kafka.engines import pulumi_engine

    monkeypatch.setenv("PULUMI_HOME", str(tmp_path))
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: None)
    assert pulumi_engine.choose("auto") == ("docker", "engine: docker (the Pulumi CLI is not installed; the Docker SDK applies the same plan)")
    with pytest.raises(SecureKafkaError, match=r"Pulumi CLI is not installed: .*pulumi plugin install resource docker"):
        pulumi_engine.choose("pulumi")
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: "/usr/bin/pulumi" if name == "pulumi" else None)
    assert pulumi_engine.choose("auto")[0] == "docker"  # CLI without the docker plugin
    (tmp_path / "plugins" / "resource-docker-v4.6.0").mkdir(parents=True)
    assert pulumi_engine.choose("auto") == ("pulumi", "engine: pulumi (Pulumi CLI and docker plugin found)")
    assert pulumi_engine.choose("docker") == ("docker", "engine: docker")
