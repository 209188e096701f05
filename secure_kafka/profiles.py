"""Environment profiles: how strict an environment is (dev, ci, prod).

A profile is data. Settings of an environment start from its profile's defaults and may
only move within the profile's bounds (see ``settings.validate``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SecureKafkaError

# Key algorithms the PKI can generate, weakest first.
KEY_ALGORITHMS = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096")


@dataclass(frozen=True)
class Profile:
    name: str
    zookeeper_nodes: int
    brokers: int
    min_brokers: int
    replication_factor: int
    min_insync_replicas: int
    tls_versions: tuple[str, ...]
    key_algorithm: str
    allowed_key_algorithms: tuple[str, ...]
    leaf_validity_days: int
    max_leaf_validity_days: int
    ca_validity_days: int
    expiry_warning_days: int
    allow_plaintext_loopback: bool
    encrypted_volumes: bool
    encrypted_volumes_required: bool
    broker_heap_mb: int
    zookeeper_heap_mb: int


DEV = Profile(
    name="dev",
    zookeeper_nodes=1,
    brokers=1,
    min_brokers=1,
    replication_factor=1,
    min_insync_replicas=1,
    tls_versions=("TLSv1.2", "TLSv1.3"),
    key_algorithm="ec-p256",
    allowed_key_algorithms=KEY_ALGORITHMS,
    leaf_validity_days=825,
    max_leaf_validity_days=825,
    ca_validity_days=3650,
    expiry_warning_days=30,
    allow_plaintext_loopback=True,
    encrypted_volumes=True,
    encrypted_volumes_required=False,
    broker_heap_mb=512,
    zookeeper_heap_mb=256,
)

# The throwaway environment of CI pipelines: dev's shape, short-lived certificates.
CI = Profile(
    **{
        **DEV.__dict__,
        "name": "ci",
        "leaf_validity_days": 7,
        "ca_validity_days": 30,
        "expiry_warning_days": 1,
        "allow_plaintext_loopback": False,
    }
)

PROD = Profile(
    name="prod",
    zookeeper_nodes=3,
    brokers=3,
    min_brokers=3,
    replication_factor=3,
    min_insync_replicas=2,
    tls_versions=("TLSv1.3",),
    key_algorithm="ec-p384",
    allowed_key_algorithms=("ec-p384", "rsa-3072", "rsa-4096"),
    leaf_validity_days=397,
    max_leaf_validity_days=397,
    ca_validity_days=3650,
    expiry_warning_days=30,
    allow_plaintext_loopback=False,
    encrypted_volumes=True,
    encrypted_volumes_required=True,
    broker_heap_mb=1024,
    zookeeper_heap_mb=512,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (DEV, CI, PROD)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise SecureKafkaError(f"unknown profile {name!r}: use one of {known}") from None
