"""The CI stack (``secure_kafka.testing`` as a pytest plugin), run the way our users run it.

Each test runs pytest in a subprocess on a copy of ``docs/ci-example/`` (the plugin is loaded
through its entry point, as in a user's project) and then looks for anything of the
environment left behind: containers, networks and volumes with its label, mounts, the
temporary project with its PKI. One ci environment per test.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from secure_kafka.build.plan import LABEL_ENV
from secure_kafka.environment import Environment
from secure_kafka.model.settings import Project
from secure_kafka.storage import volumes

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "ci-example"
UP_LINE = re.compile(r"secure-kafka: environment (\S+) up \(project (\S+)\)")
WAITING_TEST = '''
import time

def test_waits_to_be_interrupted(secure_kafka_env):
    print("test body: waiting for a signal", flush=True)
    time.sleep(600)
'''


def pytest_command() -> list[str]:
    return [sys.executable, "-m", "pytest", "-v", "-s", "-p", "no:cacheprovider"]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SECURE_KAFKA_"))}
    return {**env, "PYTHONUNBUFFERED": "1"}


def copy_example(dest: Path, with_tests: bool = True, metadata_mode: str = "zookeeper") -> None:
    for name in ("pytest.ini", "acls.yaml") + (("test_example.py",) if with_tests else ()):
        shutil.copy(EXAMPLE / name, dest / name)
    ini = dest / "pytest.ini"
    setting = "secure_kafka_metadata_mode = zookeeper\n"
    assert setting in ini.read_text(), "the example's pytest.ini names its metadata mode"
    ini.write_text(ini.read_text().replace(setting, f"secure_kafka_metadata_mode = {metadata_mode}\n"))


def leftovers(docker_client, name: str, project_root: Path) -> list[str]:
    """Everything of environment ``name`` that still exists."""
    api = docker_client.api
    filters = {"label": [f"{LABEL_ENV}={name}"]}
    found = [f"container {c['Names'][0]}" for c in api.containers(all=True, filters=filters)]
    found += [f"network {n['Name']}" for n in api.networks(filters=filters)]
    found += [f"volume {v['Name']}" for v in api.volumes(filters=filters).get("Volumes") or []]
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines() if name in line]
    if shutil.which("losetup"):
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        found += [f"loop device {line.split(':')[0]}" for line in loops.splitlines() if str(project_root) in line]
    run_dir = Path(volumes.run_dir(Project(project_root).id, name))
    if run_dir.exists():
        found.append(f"mountpoints {run_dir}")
    if project_root.exists():  # the temporary project: stack file, certs/<env>/ (PKI, secrets), volumes
        found.append(f"project {project_root}: {sorted(p.name for p in project_root.iterdir())}")
    return found


def purge_if_left(name: str, project_root: Path) -> None:
    """The fallback when the subprocess did not clean up (the test then fails anyway)."""
    if (project_root / f"Pulumi.{name}.yaml").exists():
        Environment(Project(project_root), name).down(purge=True)
        shutil.rmtree(project_root, ignore_errors=True)


def test_the_ci_example_passes_and_leaves_nothing_behind(metadata_mode, mode_image, docker_client, tmp_path):
    """The example as users run it, on Kafka 3.9 with ZooKeeper and on Kafka 4.4 with KRaft."""
    copy_example(tmp_path, metadata_mode=metadata_mode)
    result = subprocess.run(pytest_command(), cwd=tmp_path, env=subprocess_env(), capture_output=True,
                            text=True, timeout=600)
    up = UP_LINE.search(result.stdout)
    assert up, f"the fixture never announced its environment:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    name, project_root = up.group(1), Path(up.group(2))
    try:
        assert result.returncode == 0, result.stdout[-4000:]
        assert "5 passed" in result.stdout
        assert f"secure-kafka: environment {name}: removed" in result.stdout
        assert leftovers(docker_client, name, project_root) == []
    finally:
        purge_if_left(name, project_root)


def test_an_interrupted_session_still_removes_everything(runtime_image, docker_client, tmp_path):
    """SIGTERM during a test (what a cancelled CI job gets), then SIGINT during the cleanup."""
    copy_example(tmp_path, with_tests=False)
    (tmp_path / "test_waiting.py").write_text(WAITING_TEST)
    process = subprocess.Popen(pytest_command(), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output: list[str] = []

    def wait_for(pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            output.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout_s:.0f} s:\n{''.join(output[-40:])}")

    name = project_root = None
    try:
        up = wait_for(UP_LINE.pattern, 300)
        name, project_root = up.group(1), Path(up.group(2))
        wait_for("test body: waiting for a signal", 60)
        process.send_signal(signal.SIGTERM)
        wait_for(r"container \S+: stopping", 60)
        process.send_signal(signal.SIGINT)  # a second signal must not cut the cleanup short
        returncode = process.wait(timeout=180)
        time.sleep(0.5)  # let the reader thread drain the pipe
        while not lines.empty():
            output.append(lines.get())
        text = "".join(output)
        assert returncode == 2, f"pytest should exit as interrupted (2), got {returncode}:\n{text[-3000:]}"
        assert "SIGINT received: finishing the cleanup first" in text
        assert f"secure-kafka: environment {name}: removed" in text
        assert leftovers(docker_client, name, project_root) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if name:
            purge_if_left(name, project_root)
