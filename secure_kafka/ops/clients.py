"""librdkafka (confluent-kafka) client settings for the host side of an environment.

Used by ``up`` to bootstrap SCRAM users and verify a round-trip, and by tests and probes.
The admin authenticates with its client certificate on the SSL listener; SCRAM users on
the SASL_SSL listener.
"""

from __future__ import annotations

from pathlib import Path

from ..model.settings import Settings

__all__ = ["mtls_config", "scram_config"]


def mtls_config(settings: Settings, client_dir: Path) -> dict[str, str]:
    return {
        "bootstrap.servers": ",".join(settings.topology.bootstrap("ssl")),
        "security.protocol": "SSL",
        "ssl.ca.location": str(client_dir / "ca.crt"),
        "ssl.certificate.location": str(client_dir / "client.crt"),
        "ssl.key.location": str(client_dir / "client.key"),
        "ssl.endpoint.identification.algorithm": "https",
    }


def scram_config(settings: Settings, ca_file: Path, user: str, password: str) -> dict[str, str]:
    return {
        "bootstrap.servers": ",".join(settings.topology.bootstrap("sasl_ssl")),
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(ca_file),
        "ssl.endpoint.identification.algorithm": "https",
    }
