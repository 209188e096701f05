"""A real `pulumi up` → verify → `pulumi destroy` of a fresh environment, through the CLI's
Pulumi engine (Automation API). Runs only where the Pulumi CLI and its docker plugin are
installed; elsewhere it is skipped with that reason — the program is then covered by the
mock tests and the engine-parity test, not by this one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from secure_kafka import bootstrap, settings as sk_settings
from secure_kafka.engines import pulumi_engine
from secure_kafka.environment import ADMIN, Environment
from secure_kafka.profiles import get_profile
from secure_kafka.settings import Project
from secure_kafka.testing import free_port_base

REPO = Path(__file__).resolve().parents[2]
MISSING = pulumi_engine.missing()


@pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}: {pulumi_engine.INSTALL_HINT}")
def test_pulumi_up_verify_destroy(tmp_path, runtime_image, docker_client):
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "infra", tmp_path / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    project = Project(tmp_path)
    project.write(sk_settings.defaults("pulumi", get_profile("ci"), port_base=free_port_base()))
    env = Environment(project, "pulumi", progress=print)
    try:
        result = env.up(engine="pulumi")
        assert result.scram_users_created == [ADMIN] and result.round_trip_s > 0
        assert env.status()["healthy"]
        # Our own round-trip, besides the program's.
        bootstrap.round_trip(env.scram_config(ADMIN), env.admin_mtls_config(), bootstrap.VERIFY_TOPIC)
        env.down(engine="pulumi")
        assert not env.status()["nodes"]
    finally:
        env.down(engine="pulumi", purge=True)
