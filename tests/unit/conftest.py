"""Unit-test setup: Pulumi's mocks are in place before any test imports the Pulumi program.

The program (``infra/``) is tested under
``pulumi.runtime.set_mocks``: no Pulumi CLI, no engine, no docker plugin.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_mocks as mocks  # tests/pulumi_mocks.py
import pytest

from secure_kafka.pki.secretstore import SecretStore

pulumi.runtime.set_mocks(mocks.RecordingMocks(), project=mocks.PROJECT, stack="dev", preview=False)


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    """An empty secret store of a test's own (render and planner tests)."""
    return SecretStore(tmp_path / "secrets.json")
