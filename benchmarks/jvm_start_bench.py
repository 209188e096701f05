"""Benchmark: what the image's class-data archive saves a JVM at start, per runtime image.

Each round starts, in a fresh container limited to one CPU (a prod quorum node's share, a
dev broker's), the line's own training cluster (``docker/kafka-<line>/bin/training-cluster.bash``:
ZooKeeper then a broker for 3.9, storage format then a KRaft node for 4.4), timing each JVM
until its port listens, then one Kafka tool run against it (``kafka-topics --create``).
Two variants, alternating their order per round: the image as built (its archive,
``/opt/kafka/kafka.jsa``) and the same image with the JDK's default archive mounted in its
place, which is what every JVM mapped before the image had an archive of its own.

    .venv/bin/python benchmarks/jvm_start_bench.py [--rounds 5]

Prints every round, the medians, and per step the ratio (image archive ÷ JDK default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from secure_kafka.build.image import ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.model.topology import METADATA_MODES

VARIANTS = ("image archive", "JDK default archive")
ARCHIVE = "/opt/kafka/kafka.jsa"

# serve/halt/listing as training-cluster.bash expects them (class-data-archive defines the
# real ones), here timing each JVM until its port listens instead of listing its classes.
ROUND = r"""
set -euo pipefail
work=$(mktemp -d)
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
serve() {
  local name=$1 port=$2 start; start=$(date +%s%N); shift 2
  JVM_OPTS=-Xmx512m "$@" > "$work/$name.log" 2>&1 &
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
  echo "$name start $(ms "$start")"
}
halt() { :; }  # the container ends with the round
listing() { echo -Xmx256m; }
source /opt/kafka/bin/training-cluster.bash
start=$(date +%s%N); start_training_cluster; echo "cluster up $(ms "$start")"
start=$(date +%s%N)
JVM_OPTS=-Xmx256m kafka-topics --bootstrap-server 127.0.0.1:19092 --create --topic bench --partitions 1 --replication-factor 1 > /dev/null
echo "kafka-topics run $(ms "$start")"
"""


def default_archive(client, image: str, directory: Path) -> Path:
    """The JDK's own CDS archive, copied out of the image."""
    data = client.containers.run(image, ["bash", "-c", 'cat "$(dirname "$(readlink -f "$(command -v java)")")/../lib/server/classes.jsa"'],
                                 remove=True)
    path = directory / "classes.jsa"
    path.write_bytes(data)
    return path


def one_round(client, image: str, variant: str, jdk_archive: Path) -> dict[str, float]:
    volumes = {} if variant == VARIANTS[0] else {str(jdk_archive): {"bind": ARCHIVE, "mode": "ro"}}
    out = client.containers.run(image, ["bash", "-c", ROUND], remove=True, nano_cpus=1_000_000_000,
                                volumes=volumes).decode()
    steps = {}
    for line in out.splitlines():
        *name, millis = line.split()
        steps[" ".join(name)] = int(millis) / 1000
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = connect()
    for mode in METADATA_MODES:
        image = ensure_image(client, mode=mode)
        with tempfile.TemporaryDirectory() as directory:
            jdk_archive = default_archive(client, image, Path(directory))
            results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
            for n in range(args.rounds):
                for variant in VARIANTS if n % 2 == 0 else reversed(VARIANTS):
                    steps = one_round(client, image, variant, jdk_archive)
                    results[variant].append(steps)
                    print(f"{mode} round {n + 1} {variant}: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
        print(f"\n{mode} ({image}), medians of {args.rounds} rounds, one CPU:")
        for step in results[VARIANTS[0]][0]:
            with_archive, without = (statistics.median(r[step] for r in results[v]) for v in VARIANTS)
            print(f"  {step:<18} image archive {with_archive:6.2f} s   JDK default {without:6.2f} s   ratio {with_archive / without:.2f}")
        print()


if __name__ == "__main__":
    main()
