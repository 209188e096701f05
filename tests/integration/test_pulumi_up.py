"""The Pulumi program under the real engine: the CLI and the docker provider that `./run setup`
builds from the Go module proxy (tools/pulumi/), driving real Docker.

One ``ci``-profile stack goes through a user's whole life of it: ``pulumi preview`` (every
resource a create), ``pulumi up`` (the bare program: it makes the PKI, unlocks the volumes,
starts the containers and bootstraps SCRAM) to an environment that passes every verify
probe, a second ``pulumi up`` that changes nothing, a settings change that replaces only the
broker, ``pulumi destroy`` that leaves no container, network, Docker volume or mount, and a
scan of the state file for secrets. Then the Docker engine applies the same plan, and its
containers are compared with the ones Pulumi made.

Nothing skips here: without the engine parts (``./run setup`` builds them) this test fails.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pulumi_mocks as mocks  # tests/pulumi_mocks.py
import pytest
import yaml
from environment_secrets import secret_values

from secure_kafka import verify
from secure_kafka.build.planner import build_plan
from secure_kafka.dockerclient import connect
from secure_kafka.engines.docker_engine import DockerEngine
from secure_kafka.engines.pulumi import engine as pulumi_engine
from secure_kafka.environment import Environment
from secure_kafka.model import settings as sk_settings
from secure_kafka.model.profiles import get_profile
from secure_kafka.model.settings import Project
from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import kafka_admin
from secure_kafka.storage import volumes
from secure_kafka.testing import free_port_base

REPO = Path(__file__).resolve().parents[2]
ENV = "pulumi"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in state


def environment_objects(client, env: str) -> dict[str, list[str]]:
    """What of ``env`` is on the host: containers, networks, Docker volumes, mounts."""
    api = client.api
    label = {"label": [f"io.secure-kafka.env={env}"]}
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if f"/{env}/" in line.split()[1] and line.split()[1].startswith(volumes.RUN_ROOT)]
    return {
        "containers": [c["Names"][0] for c in api.containers(all=True, filters=label)],
        "networks": [n["Name"] for n in api.networks(filters=label)],
        "volumes": [v["Name"] for v in api.volumes(filters=label).get("Volumes") or []],
        "mounts": mounts,
    }


def set_port_base(project: Project, env: str, port_base: int) -> None:
    """`pulumi config set secure-kafka:portBase N`: what it writes to the stack file."""
    path = project.stack_file(env)
    document = yaml.safe_load(path.read_text())
    document["config"]["secure-kafka:portBase"] = str(port_base)
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
def passphrase(monkeypatch) -> str:
    """The environment's passphrase, as a CI job hands it over; Pulumi's secrets use it too."""
    value = secrets.token_urlsafe(24)
    monkeypatch.setenv("SECURE_KAFKA_PASSPHRASE", value)
    return value


@pytest.fixture
def pulumi_project(tmp_path, runtime_image, docker_client, passphrase):
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "infra", tmp_path / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    project = Project(tmp_path)
    project.write(sk_settings.defaults(ENV, get_profile("ci"), port_base=free_port_base()))
    yield project
    Environment(project, ENV).down(engine="pulumi" if pulumi_engine.missing() is None else "docker", purge=True)
    assert not any(environment_objects(docker_client, ENV).values())


def test_pulumi_preview_up_noop_change_destroy(pulumi_project, docker_client, runtime_image, passphrase):
    assert pulumi_engine.missing() is None, f"{pulumi_engine.missing()}: {pulumi_engine.INSTALL_HINT}"
    project = pulumi_project
    engine = pulumi_engine.PulumiEngine(project.root, ENV, print)

    preview = engine.preview(passphrase)
    names = {"sk-pulumi", "sk-pulumi-network", "sk-pulumi-image", "sk-pulumi-encrypted-volumes", "sk-pulumi-bootstrap",
             *(f"sk-pulumi-{node}{suffix}" for node in ("zk-0", "kafka-0") for suffix in ("", "-pids-limit"))}
    assert preview.ops == {"secure-kafka-pulumi": "create", **{name: "create" for name in names}}, preview.ops
    assert not any(environment_objects(docker_client, ENV).values()), "a preview changes nothing"

    first = engine.up(passphrase)
    assert set(first.changed()) == {"secure-kafka-pulumi", *names} and set(first.changed().values()) == {"create"}
    assert first.outputs["verification"]["scramUsersCreated"] == [ADMIN]
    # `pulumi stack init` rewrote the stack file with every value quoted: the CLI still reads it.
    assert "'secure-kafka:brokers': \"1\"" in project.stack_file(ENV).read_text()
    env = Environment(project, ENV)
    card = verify.run(env)
    assert card.passed, [(p.probe, p.observed) for p in card.failed]  # every probe: refusals, hardening, PIDs limits
    kafka_admin.round_trip(env.scram_config(ADMIN), env.admin_mtls_config(), kafka_admin.VERIFY_TOPIC)

    second = engine.up(passphrase)
    assert second.changed() == {}, f"a second pulumi up changed {second.changed()}"

    # One setting: the broker's ports. Only the broker, its PIDs limit and the bootstrap follow.
    set_port_base(project, ENV, free_port_base())
    changed = engine.up(passphrase).changed()
    assert changed == {"sk-pulumi-kafka-0": "replace", "sk-pulumi-kafka-0-pids-limit": "update",
                       "sk-pulumi-bootstrap": "update"}, changed
    env = Environment(project, ENV)
    kafka_admin.round_trip(env.scram_config(ADMIN), env.admin_mtls_config(), kafka_admin.VERIFY_TOPIC)
    assert verify.run(env, quick=True).passed
    pulumi_made = container_views(docker_client, env)

    # The state holds secrets only encrypted; the control: the secret outputs are in it, as ciphertext.
    state = engine.state_file().read_text()
    found = [s for s in [*secret_values(project, ENV), passphrase] if s in state]
    assert not found, "a secret is in plain text in the Pulumi state"
    (stack,) = [r for r in json.loads(state)["checkpoint"]["latest"]["resources"] if r["type"] == "pulumi:pulumi:Stack"]
    for name in ("adminScramPassword", "adminStorePassword"):
        assert set(stack["outputs"][name]) == {SECRET_SIG, "ciphertext"}, name

    engine.destroy(passphrase)  # the bare `pulumi destroy`: nothing of the environment stays
    assert environment_objects(docker_client, ENV) == {"containers": [], "networks": [], "volumes": [], "mounts": []}

    # Parity with the Docker engine: the same plan, applied directly, makes the same containers.
    env.open_volumes()
    DockerEngine(connect(), project.root).apply(build_plan(project.root, env.settings, env.secrets, runtime_image, revocation=env.certs.revocation_enabled()))
    assert container_views(docker_client, env) == pulumi_made


def container_views(client, env: Environment) -> dict[str, dict]:
    """``docker inspect`` of the environment's containers as the parity test compares them, PIDs limit included."""
    api = client.api
    views = {}
    for spec in build_plan(env.project.root, env.settings, env.secrets, "unused", revocation=env.certs.revocation_enabled()).containers:
        info = api.inspect_container(spec.name)
        views[spec.name] = {**mocks.docker_view_of_inspect(info, api.inspect_image(info["Image"])),
                            "pids_limit": info["HostConfig"]["PidsLimit"]}
    return views
