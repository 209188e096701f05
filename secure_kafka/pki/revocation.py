"""Revocation: certificate revocation lists that brokers and ZooKeeper check on every handshake.

Why CRLs and not a deny ACL on the principal: a removed user's name may be given to a new
user, and a leaked key is replaced by a new certificate of the same principal; a deny on
``User:<name>`` would refuse the new holder as well. A CRL names the certificate by serial,
so exactly the old one is refused.

How the JVMs find them: every leaf certificate carries a CRL distribution point
``file:///etc/kafka/tls/<CA name>.crl``, and each node's TLS directory (mounted there) holds
the CRL of its CA, signed by the CA. The nodes run with revocation checking on
(``JVM_OPTIONS``): Kafka's listeners through JSSE's PKIX validator, ZooKeeper through its own
``ssl.crl`` and ``ssl.quorum.crl`` switches. Java re-reads a CRL file at most every 30 s
(``sun.security.provider.certpath.URICertStore``), so a revocation reaches new connections
within that bound and without a restart; ``users remove`` and ``certs revoke`` wait until every
broker refuses the old certificate. Connections opened before stay open until they close.

The CRL's next update is the CA's expiry (``CA.crl``): Java refuses every certificate whose
CRL is stale, so a CRL re-signed on a schedule would be one more thing that can take an
environment down; here it is re-signed on every change instead.

An environment whose PKI predates revocation (no ``certs/<env>/crl/``) keeps checking off:
its certificates carry no distribution point, and Java would refuse them all. A full
rotation (``certs rotate ENV`` or ``--ca``) reissues every certificate with one and turns
it on (``up`` then restarts the nodes with checking on).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .. import pki
from ..fsutil import write_atomic
from .manifest import Manifest

__all__ = ["CRL_DIR", "JVM_OPTIONS", "crl_filename", "crl_uri", "enabled", "publish"]

CRL_DIR = "crl"  # certs/<env>/crl/: the signed CRL of each CA, the copies' source
# Where the node's TLS directory is mounted in its container (build.render.TLS_DIR; a unit
# test keeps the two equal: the PKI must not depend on the renderer).
CONTAINER_TLS_DIR = "/etc/kafka/tls"
# Revocation checking for every TLS hop a node accepts: JSSE (Kafka's listeners, the
# controller listener) reads the first two; ZooKeeper's X509Util reads the last two as its
# ssl.crl / ssl.quorum.crl settings and sets its own trust managers' PKIX parameters.
JVM_OPTIONS = (
    "-Dcom.sun.net.ssl.checkRevocation=true",
    "-Dcom.sun.security.enableCRLDP=true",
    "-Dzookeeper.ssl.crl=true",
    "-Dzookeeper.ssl.quorum.crl=true",
)


def crl_filename(ca_cert: x509.Certificate) -> str:
    """``<CA common name>.crl``: one file per CA, as Java reads one CRL per distribution point."""
    return f"{ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value}.crl"


def crl_uri(ca_cert: x509.Certificate) -> str:
    """The distribution point of the certificates ``ca_cert`` issues, as nodes see it."""
    return f"file://{CONTAINER_TLS_DIR}/{crl_filename(ca_cert)}"


def enabled(certs_root: Path) -> bool:
    """Whether the environment's nodes check revocation (its PKI publishes CRLs)."""
    return (certs_root / CRL_DIR).is_dir()


def revoked_serials(manifest: Manifest, at: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """``(serial, revoked at)`` of every revoked certificate not yet expired (an expired one is refused anyway)."""
    at = at or pki.now()
    return [
        (int(r.serial, 16), dt.datetime.fromisoformat(r.revoked))
        for r in manifest.revoked()
        if r.revoked and dt.datetime.fromisoformat(r.not_after) > at
    ]


def publish(certs_root: Path, ca: pki.CA, manifest: Manifest, node_dirs: Iterable[Path], uid: int | None) -> bytes:
    """Signs the CRL of ``ca`` from the manifest, keeps it in ``crl/``, copies it to every node directory.

    Idempotent: a command killed half-way publishes the same list again when re-run.
    """
    der = ca.crl(revoked_serials(manifest)).public_bytes(serialization.Encoding.DER)
    name = crl_filename(ca.cert)
    crl_dir = certs_root / CRL_DIR
    crl_dir.mkdir(mode=0o700, exist_ok=True)
    write_atomic(crl_dir / name, der, mode=0o644)
    for directory in node_dirs:
        write_atomic(directory / name, der, mode=0o644, uid=uid)
    return der
