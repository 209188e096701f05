"""`up` on an environment that fails `secure-kafka check` applies nothing.

The hardening of running containers is asserted on the prod shape, in prod_shape/test_prod_shape.py
(one 3+3 cluster per mode and run is what this machine affords).
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from secure_kafka.build.plan import LABEL_ENV
from secure_kafka.environment import Environment
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.settings import Project


def _objects_of(docker_client, env: str) -> list[str]:
    api = docker_client.api
    prefix = f"sk-{env}"
    found = [c["Names"][0] for c in api.containers(all=True) if c["Names"][0].lstrip("/").startswith(prefix)]
    found += [n["Name"] for n in api.networks() if n["Name"].startswith(prefix)]
    found += [v["Name"] for v in api.volumes().get("Volumes") or [] if v["Name"].startswith(prefix)]
    found += [c["Id"] for c in api.containers(all=True, filters={"label": f"{LABEL_ENV}={env}"})]
    return found


def test_up_on_a_violating_environment_applies_nothing(tmp_path, docker_client):
    env = f"t{uuid.uuid4().hex[:6]}"
    (tmp_path / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\n")
    # prod with one broker, TLS 1.2 without a reason, published on every interface.
    config = {"profile": "prod", "brokers": 1, "tlsVersions": ["TLSv1.2", "TLSv1.3"], "bindAddress": "0.0.0.0"}
    (tmp_path / f"Pulumi.{env}.yaml").write_text(
        yaml.safe_dump({"config": {f"secure-kafka:{k}": v for k, v in config.items()}})
    )
    assert _objects_of(docker_client, env) == []
    with pytest.raises(SecureKafkaError) as refused:
        Environment(Project(tmp_path), env).up()
    message = str(refused.value)
    for rule in ("brokers-min", "tls12-needs-reason", "public-bind-not-allowed"):
        assert rule in message
    assert "nothing applied" in message
    assert _objects_of(docker_client, env) == []  # no container, network or volume
    assert not (tmp_path / "certs").exists()  # and no PKI
