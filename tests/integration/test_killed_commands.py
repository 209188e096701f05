"""`up` and `down` SIGKILLed at points along their way: the next run of the same command
converges to a healthy, verified environment (or, for `down`, to nothing left), and nothing is
left half-applied (no refusal over a PKI or volume a killed run was writing).

The points are the commands' own progress lines, each plus a random delay (seeded, the seed
printed), so that a kill lands anywhere in the step a line announces: the PKI being written,
a volume being created, the storage being formatted, containers starting, SCRAM users, the
probes. A kill can land past the next point; the next run then never prints it, must end
well, and that point is skipped (at most two of `up`'s). One metadata mode (KRaft: its storage format is one step more than ZooKeeper mode
has); its own dev-shaped environment in a checkout of its own.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from markers import host_objects

from secure_kafka.model.settings import Project
from secure_kafka.model.topology import KRAFT
from secure_kafka.testing import free_port_base

CLI = [str(Path(sys.executable).with_name("secure-kafka"))]
ENV = "killed"
PASSPHRASE = "killed-commands-passphrase"
# `up`'s progress lines, in the order a cold `up` prints them: each run is killed at the next.
UP_KILL_POINTS = (
    f"PKI of {ENV}: creating",
    "volume kafka-0: creating encrypted volume",
    "controller-0: starting",
    "kafka-0: starting",
    "cluster: waiting for every broker to register",
    "cluster: verifying a round-trip",
    "cluster: running the security probes",
)
DOWN_KILL_POINTS = ("kafka-0: stopping", "volume controller-0: locking")
PURGE_KILL_POINTS = ("volume controller-0: destroying",)
pytestmark = pytest.mark.parametrize("metadata_mode", [KRAFT], indirect=True)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SECURE_KAFKA_PASSPHRASE": PASSPHRASE})


def killed_at(args: list[str], marker: str, delay_s: float, cwd: Path) -> bool:
    """Runs the CLI until it prints ``marker`` (stderr), then SIGKILLs it ``delay_s`` later.
    False when the run never printed it: the step was done by an earlier run that a kill
    reached later than the step (then this run must have converged: exit 0)."""
    process = subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "SECURE_KAFKA_PASSPHRASE": PASSPHRASE})
    printed = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            printed.append(line)
            if marker in line:
                time.sleep(delay_s)
                break
        else:
            assert process.wait(30) == 0, f"`{' '.join(args)}` failed after an earlier kill:\n{''.join(printed[-15:])}"
            return False
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        return process.returncode == -signal.SIGKILL  # else it ended in the delay: converged
    finally:
        if process.poll() is None:
            process.kill()


def test_up_and_down_killed_along_the_way_converge_on_the_next_run(metadata_mode, mode_image, docker_client, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"\nkill delays: random.Random({seed})")
    delays = random.Random(seed)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
    project_id = Project(checkout).id
    init = run("init", ENV, "--profile", "dev", "--metadata-mode", metadata_mode, "--port-base", str(free_port_base()),
               cwd=checkout)
    assert init.returncode == 0, init.stderr
    try:
        kills = [marker for marker in UP_KILL_POINTS
                 if killed_at(["up", ENV, "--engine", "docker"], marker, delays.uniform(0, 0.3), cwd=checkout)]
        print(f"up killed after: {kills}")
        assert len(kills) >= len(UP_KILL_POINTS) - 2, kills
        up = run("up", ENV, "--engine", "docker", cwd=checkout)
        assert up.returncode == 0, up.stderr[-3000:]
        assert run("verify", ENV, cwd=checkout).returncode == 0
        assert run("status", ENV, cwd=checkout).returncode == 0
        again = run("up", ENV, "--engine", "docker", "--json", cwd=checkout)
        assert again.returncode == 0, again.stderr[-3000:]
        assert '"created"' not in again.stdout and '"replaced"' not in again.stdout, again.stdout

        kills = [marker for marker in DOWN_KILL_POINTS
                 if killed_at(["down", ENV, "--engine", "docker"], marker, delays.uniform(0, 0.3), cwd=checkout)]
        print(f"down killed after: {kills}")
        down = run("down", ENV, "--engine", "docker", cwd=checkout)
        assert down.returncode == 0, down.stderr[-3000:]
        assert host_objects(docker_client, project_id) == []
        # The data and keys are kept: the next `up` brings the same environment back.
        assert run("up", ENV, "--engine", "docker", cwd=checkout).returncode == 0

        for marker in PURGE_KILL_POINTS:
            # A purge's remaining steps take a fraction of a second: a short delay, or the run
            # would end before the kill (seen in CI at 0.18 s).
            assert killed_at(["down", ENV, "--purge", "--engine", "docker"], marker, delays.uniform(0, 0.02), cwd=checkout)
        purge = run("down", ENV, "--purge", "--engine", "docker", cwd=checkout)
        assert purge.returncode == 0, purge.stderr[-3000:]
        assert host_objects(docker_client, project_id) == []
        assert not (checkout / "certs" / ENV).exists()
        assert not any((checkout / ".volumes").glob(f"{ENV}/*"))
    finally:
        run("down", ENV, "--purge", "--engine", "docker", cwd=checkout)
