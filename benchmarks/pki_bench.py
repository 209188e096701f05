"""Benchmark: a full prod-shaped PKI, every file on disk, against the 1 s target.

CA + 3 ZooKeeper nodes + 3 brokers + 3 client principals (admin and two applications), each
with its keystore and truststore, the PEM bundles, the manifest and the secret store: what
``secure-kafka certs init`` plus two ``users add`` produce for a prod environment.

    .venv/bin/python benchmarks/pki_bench.py [--runs N] [--key-algorithm rsa-3072]

Prints every run's time, the median, and the median's ratio to the target (below 1.0 is
within target). Each run uses a fresh temp project, so nothing is reused between runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from secure_kafka.model import profiles, settings
from secure_kafka.pki import certstore
from secure_kafka.pki.certstore import CertStore

TARGET_SECONDS = 1.0
APPLICATION_CLIENTS = ("orders-app", "billing-app")


def build_prod_pki(root: Path, key_algorithm: str) -> int:
    """Builds the PKI in project ``root``; returns how many certificates were issued."""
    (root / "Pulumi.yaml").write_text("name: bench\nruntime: python\n")
    prod = dataclasses.replace(settings.defaults("prod", profiles.PROD), key_algorithm=key_algorithm)
    store = CertStore(settings.Project(root), prod)
    issued = len(store.init())
    for principal in APPLICATION_CLIENTS:
        store.add_client(principal)
        issued += 1
    return issued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--key-algorithm", default=profiles.PROD.key_algorithm, choices=profiles.PROD.allowed_key_algorithms)
    args = parser.parse_args()
    # A benchmark-only passphrase: prod never generates one.
    os.environ[certstore.PASSPHRASE_ENV] = "benchmark passphrase, not a secret"

    times = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="pki-bench-") as directory:
            start = time.perf_counter()
            issued = build_prod_pki(Path(directory), args.key_algorithm)
            elapsed = time.perf_counter() - start
        times.append(elapsed)
        print(f"run {run}: {elapsed:.3f} s for {issued} certificates ({args.key_algorithm}) with all stores")
    median = statistics.median(times)
    print(f"median {median:.3f} s, best {min(times):.3f} s over {args.runs} runs")
    print(f"ratio to the {TARGET_SECONDS:.0f} s target: {median / TARGET_SECONDS:.3f} ({'within' if median <= TARGET_SECONDS else 'OVER'} target)")


if __name__ == "__main__":
    main()
