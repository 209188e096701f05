"""Benchmark: time from `up` to verified-ready, dev (1+1) and prod shape (3+3), per metadata mode.

For each mode (ZooKeeper, KRaft) and shape, in one run and from the cached runtime images:
  cold  - a new environment: PKI, volumes, containers, SCRAM admin, verified round-trip;
  warm  - `down` (volumes and PKI kept), then `up` again;
  noop  - `up` on the running environment (must restart nothing).

    .venv/bin/python benchmarks/provision_bench.py [--shapes dev,prod] [--modes zookeeper,kraft]

Prints each time, its ratio to the target (dev 30 s, prod 90 s; below 1.0 is within
target), the warm/cold and noop/cold ratios and, with both modes, each shape's KRaft/ZooKeeper
ratio of every step. Everything is purged at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import uuid
from pathlib import Path

from secure_kafka.build.image import ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.environment import Environment
from secure_kafka.model import settings as sk_settings
from secure_kafka.model.profiles import get_profile
from secure_kafka.model.settings import Project
from secure_kafka.testing import free_port_base

TARGETS = {"dev": 30.0, "prod": 90.0}


def timed(label: str, action, target: float | None = None) -> float:
    """Runs ``action``, prints its seconds (and their ratio to ``target``), returns them."""
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    ratio = f"   ratio to target {seconds / target:.2f}" if target else ""
    print(f"  {label:<13} {seconds:7.1f} s{ratio}", flush=True)
    return seconds


def bench_shape(shape: str, mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"sk-bench-{shape}-") as tmp:
        root = Path(tmp)
        (root / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
        name = f"b{uuid.uuid4().hex[:6]}"
        project = Project(root)
        project.write(dataclasses.replace(sk_settings.defaults(name, get_profile(shape), port_base=free_port_base()),
                                          metadata_mode=mode))
        env = Environment(project, name)
        target = TARGETS[shape]
        quorum = len(env.settings.topology.quorum)
        print(f"{shape}, {mode} ({quorum} {'ZooKeeper' if mode == 'zookeeper' else 'controllers'} + "
              f"{env.settings.brokers} brokers), target {target:.0f} s")
        try:
            cold = timed("cold", env.up, target)
            noop = timed("noop", env.up, target)
            env.down()
            warm = timed("warm", env.up, target)
            print(f"  warm/cold {warm / cold:.2f}, noop/cold {noop / cold:.2f}", flush=True)
            return {"cold": cold, "noop": noop, "warm": warm}
        finally:
            env.down(purge=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="dev,prod", help="comma-separated: dev, prod")
    parser.add_argument("--modes", default="zookeeper,kraft", help="comma-separated: zookeeper, kraft")
    args = parser.parse_args()
    os.environ.setdefault("SECURE_KAFKA_PASSPHRASE", uuid.uuid4().hex)  # prod never generates one
    modes = [m.strip() for m in args.modes.split(",")]
    for mode in modes:
        print(f"runtime image ({mode}): {ensure_image(connect(), mode=mode)}")
    for shape in (s.strip() for s in args.shapes.split(",")):
        times = {mode: bench_shape(shape, mode) for mode in modes}
        if {"zookeeper", "kraft"} <= set(times):
            ratios = ", ".join(f"{step} {times['kraft'][step] / times['zookeeper'][step]:.2f}" for step in times["kraft"])
            print(f"  {shape} KRaft/ZooKeeper: {ratios}", flush=True)


if __name__ == "__main__":
    main()
