"""Benchmark: the real Pulumi engine beside the Docker engine, and what building the engine costs.

In one run, for one new `ci`-profile stack (1 ZooKeeper + 1 broker), from the cached runtime image:
  docker cold / noop  - `secure-kafka up --engine docker` of a new environment, then again;
  pulumi cold / noop  - `secure-kafka up --engine pulumi` of a new environment (`pulumi up`:
                        PKI, volumes, containers, PIDs limits, SCRAM bootstrap), then again.
Both include what `up` adds after the engine (the quick verify probes), so the ratios
compare the engines. Each environment is purged before the next.

With --build, first: `tools/pulumi/build` with everything cached, and with --fresh-build a
build as on a new machine (empty Go module and build caches, an empty tools directory:
every module comes from the Go module proxy again; several minutes on 2 cores).

    .venv/bin/python benchmarks/pulumi_bench.py [--build] [--fresh-build]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from provision_bench import timed  # benchmarks/ is on sys.path when a script runs

from secure_kafka.build.image import ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.environment import Environment
from secure_kafka.model import settings as sk_settings
from secure_kafka.model.profiles import get_profile
from secure_kafka.model.settings import Project
from secure_kafka.testing import free_port_base

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "tools" / "pulumi" / "build"


def build(fresh: bool) -> float:
    if not fresh:
        return timed("build, cached", lambda: subprocess.run([str(BUILD)], check=True, capture_output=True))
    with tempfile.TemporaryDirectory(prefix="sk-pulumi-build-") as tmp:
        env = {**os.environ, "GOMODCACHE": f"{tmp}/mod", "GOCACHE": f"{tmp}/cache", "GOPATH": f"{tmp}/gopath",
               "PULUMI_TOOLS_DIR": f"{tmp}/tools"}
        try:
            return timed("build, fresh", lambda: subprocess.run([str(BUILD)], check=True, env=env, capture_output=True))
        finally:  # the module cache is read-only by design
            subprocess.run(["chmod", "-R", "u+w", tmp], check=False)


def bench_engine(engine: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix=f"sk-bench-{engine}-") as tmp:
        root = Path(tmp)
        (root / "Pulumi.yaml").write_bytes((REPO / "Pulumi.yaml").read_bytes())
        subprocess.run(["cp", "-r", str(REPO / "infra"), str(root / "infra")], check=True)
        name = f"b{uuid.uuid4().hex[:6]}"
        project = Project(root)
        project.write(sk_settings.defaults(name, get_profile("ci"), port_base=free_port_base()))
        env = Environment(project, name)
        try:
            cold = timed(f"{engine} cold", lambda: env.up(engine=engine))
            noop = timed(f"{engine} noop", lambda: env.up(engine=engine))
            return cold, noop
        finally:
            env.down(engine=engine, purge=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="also time tools/pulumi/build with its cache")
    parser.add_argument("--fresh-build", action="store_true", help="also time a build with empty Go caches (minutes)")
    args = parser.parse_args()
    os.environ.setdefault("SECURE_KAFKA_PASSPHRASE", uuid.uuid4().hex)
    print(f"runtime image: {ensure_image(connect())}; load average {os.getloadavg()[0]:.1f}")
    if args.fresh_build:
        build(fresh=True)
    if args.build or args.fresh_build:
        build(fresh=False)
    docker_cold, docker_noop = bench_engine("docker")
    pulumi_cold, pulumi_noop = bench_engine("pulumi")
    print(f"pulumi/docker: cold {pulumi_cold / docker_cold:.2f}, noop {pulumi_noop / docker_noop:.2f}")


if __name__ == "__main__":
    main()
