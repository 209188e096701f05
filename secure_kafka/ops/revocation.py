"""Revoking client certificates of a running environment, and proving that it took effect.

``users remove`` revokes the user's certificate along with its SCRAM credential; ``certs
revoke --client`` replaces a leaked key: the old certificate revoked, a new one issued in its
place. Both return only once every broker refuses what was revoked: a broker's JVM re-reads the
CRL within about 30 s (``pki/revocation.py``), so "revoked" is proven by a refused handshake
on each broker, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ..errors import SecureKafkaError
from ..pki.manifest import CertRecord
from . import clients
from .context import EnvironmentContext

__all__ = ["RevokeResult", "revoke_client", "wait_refused", "wait_certificate_refused"]

# A JVM re-reads a changed CRL after at most 30 s; the rest is the attempts' own time.
REFUSED_TIMEOUT_S = 60
ATTEMPT_TIMEOUT_S = 4


@dataclass(frozen=True)
class RevokeResult:
    name: str
    revoked: CertRecord | None
    issued: CertRecord | None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "revoked_serial": self.revoked.serial if self.revoked else None,
            "new_serial": self.issued.serial if self.issued else None,
        }


def revoke_client(env: EnvironmentContext, name: str) -> RevokeResult:
    """Revokes client ``name``'s certificate and issues a new one (same principal, same ACLs)."""
    with env.trail.recorded("certs revoke", client=name) as changes:
        revoked, issued = env.certs.revoke_client(name, reissue=True)
        changes.update(revoked_serial=revoked.serial if revoked else None, new_serial=issued.serial if issued else None)
        if revoked:
            env.progress(f"waiting until every broker refuses {name}'s revoked certificate (up to {REFUSED_TIMEOUT_S} s)")
            wait_certificate_refused(env, name, env.certs.archived_client_dir(revoked))
    return RevokeResult(name, revoked, issued)


def wait_certificate_refused(env: EnvironmentContext, name: str, client_dir: Path) -> None:
    """Returns once every broker's SSL listener refuses the client certificate in ``client_dir``."""
    conf = clients.mtls_config(env.settings, client_dir)
    wait_refused(env, f"the revoked certificate of {name}", {a: {**conf, "bootstrap.servers": a}
                                                              for a in env.settings.topology.bootstrap("ssl")})


def wait_refused(env: EnvironmentContext, what: str, configs: Mapping[str, dict[str, str]]) -> None:
    """Returns once a client with each broker's config (address → librdkafka settings) is refused."""
    for address, conf in configs.items():
        conf = {**conf, "log_level": 0}  # the refusal is expected: keep librdkafka from logging it
        deadline = time.monotonic() + REFUSED_TIMEOUT_S
        while True:
            try:
                AdminClient(conf).list_topics(timeout=ATTEMPT_TIMEOUT_S)
            except KafkaException:
                break  # refused (or unreachable, which refuses as well)
            if time.monotonic() > deadline:
                raise SecureKafkaError(f"{address} still accepts {what} {REFUSED_TIMEOUT_S} s after its revocation: "
                                       f"check the broker's log, then run the command again")
            time.sleep(1)
