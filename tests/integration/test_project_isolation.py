"""Two checkouts on one host, each with an environment of the same name: neither can list,
stop or purge the other's. Docker names, labels and the mount root carry the project's id.
"""

from __future__ import annotations

import json
from pathlib import Path

from markers import mounted, produce_marker, read_back
from typer.testing import CliRunner

import docker
from secure_kafka.cli import app
from secure_kafka.environment import Environment
from secure_kafka.testing import running_environment

TWIN = "twin"  # the environment name both projects use
TOPIC = "isolation-probe"


def cli(env: Environment, *args: str):
    """The CLI as a user in ``env``'s checkout runs it."""
    result = CliRunner().invoke(app, list(args), env={"SECURE_KAFKA_PROJECT": str(env.project.root)})
    assert result.exit_code == 0, result.output
    return result


def host_objects(client: docker.DockerClient, env: Environment) -> dict[str, object]:
    """What of ``env`` is on the host, by identity: a container replaced or a network re-made shows."""
    api, labels = client.api, {"label": [f"{k}={v}" for k, v in env.labels.items()]}
    nodes = env.settings.topology.nodes
    return {
        "containers": sorted((c["Names"][0], c["Id"], c["State"]) for c in api.containers(all=True, filters=labels)),
        "networks": sorted((n["Name"], n["Id"]) for n in api.networks(filters=labels)),
        "mounts": [mounted(str(env.volumes.volume(n.name).mountpoint)) for n in nodes],
        "storage": [env.volumes.volume(n.name).storage.exists() for n in nodes],
        "pki": sorted(str(p.relative_to(env.project.root)) for p in env.project.certs_dir(env.env).rglob("*")),
    }


def test_one_environment_name_in_two_projects_never_reaches_the_other(runtime_image, docker_client, tmp_path):
    with running_environment(tmp_path / "first", name=TWIN) as first, \
            running_environment(tmp_path / "second", name=TWIN) as second:
        assert first.settings.project_id != second.settings.project_id
        marker = produce_marker(first, TOPIC)
        before = host_objects(docker_client, first)
        assert len(before["containers"]) == 2 and all(state == "running" for _, _, state in before["containers"])
        assert all(before["mounts"]) and all(before["storage"])

        report = json.loads(cli(second, "status", TWIN, "--json").stdout)
        assert {n["container"] for n in report["nodes"]} == {n.container for n in second.settings.topology.nodes}
        assert report["healthy"] and report["encrypted_volumes"]["nodes"] == {"zk-0": "unlocked", "kafka-0": "unlocked"}

        cli(second, "down", TWIN, "--engine", "docker")
        assert host_objects(docker_client, second)["containers"] == []
        assert not any(host_objects(docker_client, second)["mounts"])
        assert host_objects(docker_client, first) == before

        cli(second, "down", TWIN, "--purge", "--engine", "docker")
        assert not Path(second.project.certs_dir(TWIN)).exists()
        assert not any(host_objects(docker_client, second)["storage"])
        assert host_objects(docker_client, first) == before
        assert first.status()["healthy"]
        assert marker in read_back(first, TOPIC)
