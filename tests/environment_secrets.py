"""Every secret of an environment, for the tests that scan Pulumi inputs, outputs and state for them."""

from __future__ import annotations

import json

from secure_kafka.model.settings import Project


def secret_values(project: Project, env: str) -> list[str]:
    """Generated passwords (SCRAM, stores), the private keys' PEM and the kept passphrase."""
    certs = project.certs_dir(env)
    values = list(json.loads((certs / "secrets.json").read_text()).values())
    values += [p.read_text() for p in certs.rglob("*.key")]
    if (certs / "passphrase").exists():
        values.append((certs / "passphrase").read_text().strip())
    assert len(values) > 5
    return values
