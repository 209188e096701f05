"""Benchmark: `certs rotate` on the prod shape (3 ZooKeeper + 3 brokers), in one run.

    SECURE_KAFKA_PASSPHRASE is generated for the run;  .venv/bin/python benchmarks/rotation_bench.py

Times a full leaf rotation (every node and client: reload, then 6 rolling restarts) and a
full CA rotation (3 phases of reload + 6 rolling restarts), and prints each phase's share
and the CA/leaf ratio. The environment is purged at the end.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from secure_kafka.build.image import ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.ops import rotation
from secure_kafka.testing import running_environment


def main() -> None:
    os.environ.setdefault("SECURE_KAFKA_PASSPHRASE", uuid.uuid4().hex)
    ensure_image(connect())
    marks: list[tuple[str, float]] = []

    def progress(message: str) -> None:
        if "phase" in message:
            marks.append((message, time.monotonic()))

    with tempfile.TemporaryDirectory(prefix="sk-bench-rotation-") as tmp:
        with running_environment(Path(tmp), profile="prod") as env:
            shape = f"{env.settings.zookeeper_nodes} ZooKeeper + {env.settings.brokers} brokers"
            started = time.monotonic()
            leaf = rotation.rotate_leaves(env, progress=progress)
            leaf_s = time.monotonic() - started
            marks.clear()
            started = time.monotonic()
            ca = rotation.rotate_ca(env, progress=progress)
            ca_s = time.monotonic() - started
            phase_marks = list(marks)
    print(f"prod shape ({shape}), {len(leaf.serials)} certificates")
    print(f"  leaf rotation  {leaf_s:6.1f} s")
    print(f"  CA rotation    {ca_s:6.1f} s   ratio CA/leaf {ca_s / leaf_s:.2f}")
    steps = [(m.split("phase ", 1)[1], t) for m, t in phase_marks]
    for (name, at), (_, until) in zip(steps, steps[1:] + [("end", started + ca_s)]):
        print(f"    {name:<24} {until - at:6.1f} s   share {(until - at) / ca_s:.2f}")
    assert leaf.outcome == ca.outcome == "done"


if __name__ == "__main__":
    main()
