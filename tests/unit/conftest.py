"""Unit-test setup: Pulumi's mocks are in place before any test imports the Pulumi program.

The program (``infra/``) is tested under ``pulumi.runtime.set_mocks``: no Pulumi CLI, no
engine, no docker plugin. ``infra/`` is put on the path the way Pulumi runs it (the program
imports ``component`` as a top-level module).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi
import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"
sys.path.insert(0, str(INFRA))

from secure_kafka.secretstore import SecretStore  # noqa: E402
import mocks  # noqa: E402  (infra/mocks.py, found through the path above)

pulumi.runtime.set_mocks(mocks.RecordingMocks(), project=mocks.PROJECT, stack="dev", preview=False)


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    """An empty secret store of a test's own (render and planner tests)."""
    return SecretStore(tmp_path / "secrets.json")
