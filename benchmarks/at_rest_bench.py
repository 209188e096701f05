"""Benchmark: producer throughput to a broker on an encrypted volume vs a plain Docker volume.

One run stands up two dev environments side by side, one with ``encryptedVolumes: true``
(``--backend``, default: the default ``volumeBackend``) and one with ``encryptedVolumes: false``
(a Docker volume), and alternates rounds between them, so a noisy neighbour on a shared
machine hits both alike. Per round: ``--records`` records of ``--size`` bytes with
confluent-kafka, acks=all, over the mTLS listener, into a fresh topic of ``--partitions``
partitions; then ``sync`` so the data is on disk (fscrypt encrypts at writeback). Each write
to a gocryptfs volume is a synchronous round trip through FUSE, so one partition (appends
one after the other) is its worst case; several partitions overlap those round trips.

    .venv/bin/python benchmarks/at_rest_bench.py [--backend gocryptfs|fscrypt] [--records 200000]
        [--size 1024] [--rounds 9] [--warmup 1] [--partitions 6] [--linger-ms 5] [--payload random|events]
        [--compression none] [--fixed-load 0.5] [--load-seconds 20] [--gocryptfs-option=-kernel_cache]

Prints per round: producer throughput (until every record is acknowledged), throughput until
the data is synced to disk, the broker container's CPU seconds (its cgroup), the gocryptfs
daemon's CPU seconds (0 for fscrypt and plain volumes) and the host's busy CPU seconds (every
process and kernel thread, other tenants included: fscrypt's encryption runs in writeback
workers). Then medians with the min..max spread, and the encrypted/plain ratios of the
medians against the target: at most 10 % throughput overhead.

``--fixed-load FRACTION`` then offers both volumes the same load, FRACTION of the plain
volume's saturation rate (its median acked throughput above), for ``--load-seconds`` per
round, as production brokers rarely run saturated: each record's produce latency (p50, p99)
and the cores the broker, the gocryptfs daemon and the whole host kept busy meanwhile.

``--gocryptfs-option=OPTION`` (repeatable; with ``=``, or the option's dash reads as one of
ours) mounts the encrypted volume with that gocryptfs option too, a lever to measure:
``-kernel_cache`` keeps the plaintext in the kernel's page cache across opens (gocryptfs
otherwise has FUSE drop it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from throughput import (  # benchmarks/ is on sys.path when a script runs
    PAYLOAD_KINDS,
    fixed_rate,
    payloads,
    percentile,
    produce_all,
    produce_at_rate,
    warm_up,
)

from secure_kafka.dockerclient import connect
from secure_kafka.ops import kafka_admin
from secure_kafka.storage import gocryptfs, volumes
from secure_kafka.testing import running_environment

TARGET_OVERHEAD = 0.10


def host_cpu_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def container_cpu_seconds(api, name: str) -> float:
    return api.stats(name, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def daemon_cpu_seconds(env) -> float:
    """CPU seconds of the gocryptfs daemon serving the broker's volume (user + system, from /proc)."""
    if not env.settings.encrypted_volumes:
        return 0.0
    total = 0
    for pid in volumes.gocryptfs_processes(volumes.mountpoint(env.volumes.run_dir, env.settings.topology.brokers[0].name)):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def _producer(env, args: argparse.Namespace) -> tuple[AdminClient, str, Producer]:
    """The admin, a fresh topic, and a producer to it: the same in every round."""
    config = env.admin_mtls_config()
    admin = AdminClient(config)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    kafka_admin.ensure_topic(admin, topic, 1, args.partitions)
    return admin, topic, Producer({**config, "acks": "all", "linger.ms": args.linger_ms, "batch.size": 1 << 20,
                                   "compression.type": args.compression, "queue.buffering.max.kbytes": 1 << 20})


def one_round(env, api, args: argparse.Namespace) -> dict[str, float]:
    admin, topic, producer = _producer(env, args)
    values = payloads(args.payload, args.size)
    broker = env.settings.topology.brokers[0].container
    os.sync()
    cpu_daemon = daemon_cpu_seconds(env)
    cpu_broker, cpu_host, start = container_cpu_seconds(api, broker), host_cpu_seconds(), time.monotonic()
    mib = produce_all(producer, topic, values, args.records) / 2**20
    acked_s = time.monotonic() - start
    os.sync()
    synced_s = time.monotonic() - start
    figures = {
        "MiB/s acked": mib / acked_s,
        "MiB/s synced": mib / synced_s,
        "broker CPU s": container_cpu_seconds(api, broker) - cpu_broker,
        "gocryptfs CPU s": daemon_cpu_seconds(env) - cpu_daemon,
        "host CPU s": host_cpu_seconds() - cpu_host,
    }
    # Ten rounds of 195 MiB would fill an fscrypt image of the default 2 GiB (the broker then
    # takes its log directory offline and restarts): each round's data goes with its topic.
    admin.delete_topics([topic])[topic].result(timeout=30)
    return figures


def fixed_load_round(env, api, args: argparse.Namespace, rate: float) -> dict[str, float]:
    """``rate`` records/s for ``args.load_seconds``: latency percentiles and cores kept busy."""
    admin, topic, producer = _producer(env, args)
    values = payloads(args.payload, args.size)
    warm_up(producer, topic, values[-1])
    broker = env.settings.topology.brokers[0].container
    cpu_daemon = daemon_cpu_seconds(env)
    cpu_broker, cpu_host, start = container_cpu_seconds(api, broker), host_cpu_seconds(), time.monotonic()
    latencies, queued = produce_at_rate(producer, topic, values, rate, args.load_seconds)
    seconds = time.monotonic() - start
    figures = {
        "offered records/s": queued / args.load_seconds,
        "p50 ms": percentile(latencies, 0.50) * 1000,
        "p99 ms": percentile(latencies, 0.99) * 1000,
        "broker cores": (container_cpu_seconds(api, broker) - cpu_broker) / seconds,
        "gocryptfs cores": (daemon_cpu_seconds(env) - cpu_daemon) / seconds,
        "host cores": (host_cpu_seconds() - cpu_host) / seconds,
    }
    admin.delete_topics([topic])[topic].result(timeout=30)
    return figures


def print_medians(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each label's medians (min..max) and the encrypted/plain ratios; returns the medians."""
    medians = {label: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for label, runs in rounds.items()}
    for label, runs in rounds.items():
        print(f"  {label:9} " + ", ".join(
            f"{k} {medians[label][k]:.2f} ({min(r[k] for r in runs):.2f}..{max(r[k] for r in runs):.2f})"
            for k in runs[0]))
    enc, plain = medians["encrypted"], medians["plain"]
    for key in enc:
        if plain[key]:
            print(f"  encrypted/plain {key}: {enc[key] / plain[key]:.2f}")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=volumes.BACKENDS, default=volumes.DEFAULT_BACKEND)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--partitions", type=int, default=6, help="of each round's topic (1: appends in series)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted (JIT, page cache)")
    parser.add_argument("--linger-ms", type=int, default=5, help="producer linger.ms: larger batches, fewer writes")
    parser.add_argument("--compression", default="none", choices=("none", "lz4", "zstd", "snappy", "gzip"))
    parser.add_argument("--payload", default="random", choices=PAYLOAD_KINDS,
                        help="random: incompressible bytes; events: JSON events, what --compression is for")
    parser.add_argument("--fixed-load", type=float, default=0.0, metavar="FRACTION",
                        help="then offer both FRACTION of the plain volume's saturation rate: latency and CPU (0: off)")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="length of each fixed-load round")
    parser.add_argument("--gocryptfs-option", action="append", default=[], metavar="OPTION",
                        help="an extra gocryptfs mount option for the encrypted volume (a lever), e.g. --gocryptfs-option=-kernel_cache")
    args = parser.parse_args()
    if args.gocryptfs_option and args.backend != "gocryptfs":
        parser.error("--gocryptfs-option needs --backend gocryptfs")
    gocryptfs.MOUNT_OPTIONS += tuple(args.gocryptfs_option)
    api = connect().api
    labels = {"encrypted": {"encrypted_volumes": True, "volume_backend": args.backend},
              "plain": {"encrypted_volumes": False}}
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    loaded: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    with contextlib.ExitStack() as stack:
        envs = {label: stack.enter_context(running_environment(
                    Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sk-at-rest-bench-"))), **overrides))
                for label, overrides in labels.items()}
        for label, env in envs.items():
            for _ in range(args.warmup):
                one_round(env, api, args)
        for i in range(args.rounds):
            # Alternating, and each pair in turned order: drift and neighbours hit both alike.
            for label in (labels if i % 2 == 0 else reversed(labels)):
                figures = one_round(envs[label], api, args)
                rounds[label].append(figures)
                print(f"{label:9} round {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
        if args.fixed_load:
            rate = fixed_rate([r["MiB/s acked"] for r in rounds["plain"]], args.size, args.fixed_load,
                              args.load_seconds, "the plain volume")
            for i in range(args.rounds):
                for label in (labels if i % 2 == 0 else reversed(labels)):
                    figures = fixed_load_round(envs[label], api, args, rate)
                    loaded[label].append(figures)
                    print(f"{label:9} round {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    print(f"\nmedians (min..max) of {args.rounds} rounds, {args.records} x {args.size} B, {args.partitions} partitions, "
          f"acks=all, mTLS, payload {args.payload}, compression {args.compression}, encrypted = {args.backend}"
          f"{' ' + ' '.join(args.gocryptfs_option) if args.gocryptfs_option else ''}:")
    medians = print_medians(rounds)
    enc, plain = medians["encrypted"], medians["plain"]
    cpu = (enc["broker CPU s"] + enc["gocryptfs CPU s"]) / plain["broker CPU s"]
    print(f"  encrypted/plain broker + gocryptfs CPU s: {cpu:.2f}")
    overhead = 1 - enc["MiB/s acked"] / plain["MiB/s acked"]
    verdict = "within" if overhead <= TARGET_OVERHEAD else "OVER"
    print(f"producer throughput overhead: {overhead:.1%} ({verdict} the {TARGET_OVERHEAD:.0%} target); "
          f"until synced: {1 - enc['MiB/s synced'] / plain['MiB/s synced']:.1%}")
    if args.fixed_load:
        print(f"\nfixed load, medians (min..max) of {args.rounds} rounds:")
        print_medians(loaded)


if __name__ == "__main__":
    main()
