"""`secure-kafka orphans`: a run killed half-way, then its checkout deleted, leaves containers,
a network and unlocked volume mounts that no `down` can reach; `orphans --remove` takes them
away and leaves a live environment of another checkout exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from markers import host_objects

from secure_kafka.model.settings import Project
from secure_kafka.model.topology import ZOOKEEPER
from secure_kafka.ops import orphans
from secure_kafka.storage.volumes import RUN_ROOT
from secure_kafka.testing import free_port_base

CLI = [str(Path(sys.executable).with_name("secure-kafka"))]
KILLED = "orphan"


def secure_kafka(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SECURE_KAFKA_OPERATOR": "test"})


def listing(cwd: Path) -> dict[tuple[str, str], dict]:
    done = secure_kafka("orphans", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {(e["project_id"], e["env"]): e for e in json.loads(done.stdout)["environments"]}


@pytest.mark.parametrize("metadata_mode", [ZOOKEEPER], indirect=True)
def test_a_killed_runs_leftovers_are_removed_and_a_live_environment_is_not(dev_env, docker_client, tmp_path):
    checkout = tmp_path / "deleted-checkout"
    checkout.mkdir()
    (checkout / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
    project_id = Project(checkout).id
    live = (dev_env.settings.project_id, dev_env.env)
    live_before = host_objects(docker_client, dev_env.settings.project_id)
    assert secure_kafka("init", KILLED, "--profile", "dev", "--port-base", str(free_port_base()),
                        cwd=checkout).returncode == 0
    # `up`, SIGKILLed once its broker is healthy: mounts unlocked, containers running, nothing tidied.
    up = subprocess.Popen([*CLI, "up", KILLED, "--engine", "docker"], cwd=checkout, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        assert up.stderr is not None
        for line in up.stderr:
            if "kafka-0: healthy" in line or time.monotonic() > deadline:
                break
        up.send_signal(signal.SIGKILL)
        up.wait(30)
        assert up.returncode == -signal.SIGKILL
        left = host_objects(docker_client, project_id)
        assert len([x for x in left if x.startswith("/sk-")]) == 2, left  # zk-0 and kafka-0
        assert any(x.startswith(f"{RUN_ROOT}/{project_id}/{KILLED}/") for x in left), left

        # While its checkout exists the environment is live, and `--remove` leaves it be.
        before = listing(tmp_path)
        assert before[(project_id, KILLED)]["state"] == orphans.LIVE
        assert before[live]["state"] == orphans.LIVE
        assert secure_kafka("orphans", "--remove", cwd=tmp_path).returncode == 0
        assert host_objects(docker_client, project_id) == left

        shutil.rmtree(checkout)  # the checkout goes: nothing can `down` this environment now
        found = listing(tmp_path)[(project_id, KILLED)]
        assert found["state"] == orphans.ORPHANED and found["root"] == str(checkout)
        kinds = sorted({x["kind"] for x in found["leftovers"]})
        assert kinds == ["container", "mount", "network"], found

        done = secure_kafka("orphans", "--remove", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        removed = {(e["project_id"], e["env"]): e["removed"] for e in json.loads(done.stdout)["environments"]}
        assert removed[(project_id, KILLED)] is True and removed[live] is False
        assert host_objects(docker_client, project_id) == []
        assert (project_id, KILLED) not in listing(tmp_path)
        # The live environment of the other checkout: the same containers, network and mounts, healthy.
        assert host_objects(docker_client, dev_env.settings.project_id) == live_before
        assert dev_env.status()["healthy"]
    finally:  # whatever a failure above left behind
        if up.poll() is None:
            up.kill()
        if checkout.exists():
            secure_kafka("down", KILLED, "--purge", "--engine", "docker", cwd=checkout)
        for found in orphans.find(docker_client):
            if found.project_id == project_id and found.state == orphans.ORPHANED:
                orphans.remove(docker_client, found)
