"""Benchmark: producer throughput to a broker on an encrypted volume vs a plain Docker volume.

One run stands up a dev environment with ``encryptedVolumes: true`` (fscrypt on a loop image),
measures it, purges it, then does the same with ``encryptedVolumes: false`` (a Docker volume).
Per round: ``--records`` records of ``--size`` bytes with confluent-kafka, acks=all, over
the mTLS listener, into a fresh topic; then ``sync`` so the data is on disk (fscrypt encrypts
at writeback).

    .venv/bin/python benchmarks/at_rest_bench.py [--records 200000] [--size 1024] [--rounds 5] [--warmup 1]

Prints per round: producer throughput (until every record is acknowledged), throughput until
the data is synced to disk, the broker container's CPU seconds (its cgroup) and the host's busy
CPU seconds (every process and kernel thread: fscrypt's encryption runs in writeback workers,
outside the container's cgroup). Then the medians and the encrypted/plain ratios against the
target: at most 10 % throughput overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from secure_kafka import bootstrap
from secure_kafka.dockerclient import connect
from secure_kafka.testing import running_environment

TARGET_OVERHEAD = 0.10


def host_cpu_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def container_cpu_seconds(api, name: str) -> float:
    return api.stats(name, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def one_round(env, api, records: int, size: int) -> dict[str, float]:
    config = env.admin_mtls_config()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    bootstrap.ensure_topic(AdminClient(config), topic, 1)
    producer = Producer({**config, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                         "queue.buffering.max.kbytes": 1 << 20})
    payload = os.urandom(size)
    broker = env.settings.topology.brokers[0].container
    os.sync()
    cpu_broker, cpu_host, start = container_cpu_seconds(api, broker), host_cpu_seconds(), time.monotonic()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(300) == 0, "records left unacknowledged"
    acked_s = time.monotonic() - start
    os.sync()
    synced_s = time.monotonic() - start
    mib = records * size / 2**20
    return {
        "MiB/s acked": mib / acked_s,
        "MiB/s synced": mib / synced_s,
        "broker CPU s": container_cpu_seconds(api, broker) - cpu_broker,
        "host CPU s": host_cpu_seconds() - cpu_host,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted (JIT, page cache)")
    args = parser.parse_args()
    api = connect().api
    medians: dict[str, dict[str, float]] = {}
    for label, encrypted in (("encrypted", True), ("plain", False)):
        with tempfile.TemporaryDirectory(prefix="sk-at-rest-bench-") as root, \
                running_environment(Path(root), encrypted_volumes=encrypted) as env:
            for _ in range(args.warmup):
                one_round(env, api, args.records, args.size)
            rounds = []
            for i in range(args.rounds):
                figures = one_round(env, api, args.records, args.size)
                rounds.append(figures)
                print(f"{label:9} round {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
            medians[label] = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"\nmedians of {args.rounds} rounds, {args.records} x {args.size} B, acks=all, mTLS:")
    for label, figures in medians.items():
        print(f"  {label:9} " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    enc, plain = medians["encrypted"], medians["plain"]
    for key in enc:
        print(f"  encrypted/plain {key}: {enc[key] / plain[key]:.2f}")
    overhead = 1 - enc["MiB/s acked"] / plain["MiB/s acked"]
    verdict = "within" if overhead <= TARGET_OVERHEAD else "OVER"
    print(f"producer throughput overhead: {overhead:.1%} ({verdict} the {TARGET_OVERHEAD:.0%} target); "
          f"until synced: {1 - enc['MiB/s synced'] / plain['MiB/s synced']:.1%}")


if __name__ == "__main__":
    main()
