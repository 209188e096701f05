"""Benchmark: the security tax, producer and consumer throughput over SASL_SSL and mTLS vs PLAINTEXT.

One dev environment with ``plaintextLoopback: true`` (a PLAINTEXT listener on 127.0.0.1,
allowed by the dev profile only, made for this run and purged with it): the same broker, the
same topic shape and the same client settings, only the listener differs. The benchmark user
``bench`` (SCRAM user and client certificate) and ``User:ANONYMOUS`` (PLAINTEXT clients) get
the same ACLs, so every variant pays the same authorization and audit logging.

Per round and variant (the order rotates between rounds): ``--records`` × ``--size`` random
(incompressible) bytes into a fresh ``--partitions`` topic with acks=all, then a consumer
reads them all back. Throughput in MiB/s, plus the broker container's CPU seconds (its
cgroup) and this process's CPU seconds (librdkafka's threads run in it) per GiB moved; while
producing also the kernel's share of the broker's CPU and the broker JVM's read and write
system calls per MiB (``/proc/PID/io``).

    .venv/bin/python benchmarks/security_tax_bench.py [--records 200000] [--size 1024] [--rounds 5]
        [--warmup 1] [--partitions 6] [--linger-ms 20] [--batch-size 1048576] [--compression none]
        [--payload random|events] [--pin] [--profile DIR] [--fixed-load 0.5] [--load-seconds 20]
        [--broker-config num.io.threads=4 num.io.threads=2 ...] [--jdk 21]
        [--broker-property socket.receive.buffer.bytes=1048576 ...] [--gc ParallelGC] [--jsse conscrypt]

``--pin`` gives each side a CPU of its own (the broker container CPU 1, this process and its
librdkafka threads CPU 0), so the broker's cost and the client's are measured apart.
``--profile DIR`` samples the broker with async-profiler during every counted produce
(benchmarks/broker_profile.py; the collapsed stacks stay in DIR, for a flame graph) and prints
where its CPU went per variant: the kernel's part (from the cgroup), then each category's and
each thread group's share of the user-space samples and its CPU seconds per GiB (share x the
cgroup's user figure), with the difference TLS makes.

``--broker-config KEY=VALUE ...`` sets dynamic broker configs (KIP-226: thread counts, socket
buffers) on the broker before the first round, one after the other: a lever to try, measured against the same
run's PLAINTEXT. ``--jdk 21`` runs the broker on the runtime image built with JDK 21 (Debian
trixie's) instead of 17, another lever (benchmarks/broker_variant.py);
``--broker-property KEY=VALUE ...`` sets static broker configs the same way (the broker is
started again with them in its ``server.properties``). ``--gc ParallelGC`` (or ``SerialGC``)
runs the broker's JVM on another collector than G1, ``--jsse conscrypt`` its listeners' TLS on
Conscrypt (benchmarks/jsse_provider.py).

``--fixed-load FRACTION`` then offers every variant the same load, FRACTION of PLAINTEXT's
saturation rate (its median produce throughput above), for ``--load-seconds`` per round, as
production brokers rarely run saturated: each record's produce latency (librdkafka's, from
``produce()`` to its acknowledgement), p50 and p99, and the cores the broker and this process
kept busy meanwhile. Target: TLS's p99 at most 1.2 x PLAINTEXT's.

Prints every round, the medians with their min..max spread, and each secure variant's
throughput relative to PLAINTEXT against the target: at most 10 % loss.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import ssl
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType
import broker_profile  # benchmarks/ is on sys.path when a script runs
from broker_meter import BrokerMeter
from throughput import (
    PAYLOAD_KINDS,
    fixed_rate,
    payloads,
    percentile,
    produce_all,
    produce_at_rate,
    warm_up,
)

import broker_variant
import jsse_provider
from secure_kafka.build.image import DEFAULT_JDK, JDK_SUITES, ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.acl import Binding
from secure_kafka.ops import acladmin, clients, users
from secure_kafka.pki.secretstore import scram_password_name
from secure_kafka.testing import running_environment

TARGET_LOSS = 0.10
TARGET_P99_RATIO = 1.2  # fixed load: TLS's p99 produce latency against PLAINTEXT's
USER = "bench"
PREFIX = "bench-"
VARIANTS = ("plaintext", "sasl_ssl", "mtls")


def grant(env) -> None:
    """The same rights for the SCRAM/mTLS user and for PLAINTEXT's User:ANONYMOUS (this run only)."""
    bindings = [
        Binding(principal, kind, PREFIX, "prefixed", operation, "allow")
        for principal in (f"User:{USER}", "User:ANONYMOUS")
        for kind, operations in (("topic", ("Write", "Read", "Describe")), ("group", ("Read",)))
        for operation in operations
    ]
    acladmin.create(env.admin_client(), bindings)


def client_configs(env) -> dict[str, dict[str, str]]:
    settings = env.settings
    client_dir = env.certs.client_dir(USER)
    broker = settings.topology.brokers[0]
    return {
        "plaintext": {"bootstrap.servers": f"127.0.0.1:{settings.topology.listener_port(broker, 'plaintext')}",
                      "security.protocol": "PLAINTEXT"},
        "sasl_ssl": clients.scram_config(settings, client_dir / "ca.crt", USER, env.secrets.get(scram_password_name(USER))),
        "mtls": clients.mtls_config(settings, client_dir),
    }


def negotiated(env) -> str:
    """TLS version and cipher suite a default OpenSSL client gets from the SASL_SSL listener."""
    host, port = env.settings.topology.bootstrap("sasl_ssl")[0].split(":")
    context = ssl.create_default_context(cafile=str(env.certs.client_dir(USER) / "ca.crt"))
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        return f"{tls.version()} {tls.cipher()[0]}"


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warmed_producer(admin: AdminClient, config: dict[str, str], args) -> tuple[str, list[bytes], Producer]:
    """A fresh topic, the round's payloads, and a producer to the topic, warmed up."""
    topic = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(timeout=30)
    values = payloads(args.payload, args.size)
    producer = Producer({**config, "acks": "all", "linger.ms": args.linger_ms, "batch.size": args.batch_size,
                         "compression.type": args.compression, "queue.buffering.max.kbytes": 1 << 20})
    warm_up(producer, topic, values[-1])
    return topic, values, producer


def one_round(env, api, admin: AdminClient, config: dict[str, str], args, profile: Path | None = None) -> dict[str, float]:
    broker = env.settings.topology.brokers[0].container
    meter = BrokerMeter(api, broker)
    topic, values, producer = warmed_producer(admin, config, args)
    figures: dict[str, float] = {}
    profiled = broker_profile.recording(api, broker, profile) if profile else contextlib.nullcontext()
    with profiled:
        before, cpu_client, start = meter.read(), process_cpu(), time.monotonic()
        gib = produce_all(producer, topic, values, args.records) / 2**30
        seconds = time.monotonic() - start
        after = meter.read()
    figures["produce MiB/s"] = gib * 1024 / seconds
    figures["produce broker CPU s/GiB"] = (after.cpu_s - before.cpu_s) / gib
    kernel, user = after.kernel_s - before.kernel_s, after.user_s - before.user_s
    figures["produce broker kernel %"] = 100 * kernel / max(user + kernel, 1e-9)
    # Kafka reads a TLS connection one TLS record (at most 16 KiB) at a time.
    figures["produce broker reads/MiB"] = (after.reads - before.reads) / (gib * 1024)
    figures["produce broker writes/MiB"] = (after.writes - before.writes) / (gib * 1024)
    figures["produce client CPU s/GiB"] = (process_cpu() - cpu_client) / gib

    # Assigned partitions, no group join: the clock measures fetching, not a rebalance.
    consumer = Consumer({**config, "group.id": f"{PREFIX}{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                         "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 4194304})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(args.partitions)])
    received = 0
    cpu_broker, cpu_client, start = meter.read().cpu_s, process_cpu(), time.monotonic()
    deadline = start + 300
    while received < args.records + 1:  # the warm-up record too
        assert time.monotonic() < deadline, f"consumed only {received} of {args.records} records"
        for message in consumer.consume(10000, timeout=1.0):
            assert not message.error(), message.error().str()
            received += 1
    seconds = time.monotonic() - start
    consumer.close()
    figures["consume MiB/s"] = gib * 1024 / seconds
    figures["consume broker CPU s/GiB"] = (meter.read().cpu_s - cpu_broker) / gib
    figures["consume client CPU s/GiB"] = (process_cpu() - cpu_client) / gib
    admin.delete_topics([topic])[topic].result(timeout=30)  # the disk stays small over many rounds
    return figures


def fixed_load_round(env, api, admin: AdminClient, config: dict[str, str], args, rate: float) -> dict[str, float]:
    """``rate`` records/s for ``args.load_seconds``: latency percentiles and cores kept busy."""
    meter = BrokerMeter(api, env.settings.topology.brokers[0].container)
    topic, values, producer = warmed_producer(admin, config, args)
    cpu_broker, cpu_client, start = meter.read().cpu_s, process_cpu(), time.monotonic()
    latencies, queued = produce_at_rate(producer, topic, values, rate, args.load_seconds)
    seconds = time.monotonic() - start
    admin.delete_topics([topic])[topic].result(timeout=30)
    return {
        "offered records/s": queued / args.load_seconds,
        "p50 ms": percentile(latencies, 0.50) * 1000,
        "p99 ms": percentile(latencies, 0.99) * 1000,
        "broker cores": (meter.read().cpu_s - cpu_broker) / seconds,
        "client cores": (process_cpu() - cpu_client) / seconds,
    }


def print_profiles(directory: Path, results: dict[str, list[dict[str, float]]]) -> None:
    """Per variant, where the broker's produce CPU went (all counted rounds' profiles together):
    the kernel's part, then user space by what the code does and by which threads ran it."""
    categories, threads = {}, {}
    user_cpu = {}  # user-space CPU s/GiB: the samples' shares are of this
    for variant in VARIANTS:
        by_category, by_frame, by_thread = Counter(), Counter(), Counter()
        for path in sorted(directory.glob(f"{variant}-*.collapsed")):
            found = broker_profile.cpu_samples(path)
            for total, part in zip((by_category, by_frame, by_thread), found):
                total.update(part)
        samples = sum(by_category.values())
        categories[variant] = {name: count / samples for name, count in by_category.items()}
        threads[variant] = {name: count / samples for name, count in by_thread.items()}
        kernel = statistics.median(r["produce broker kernel %"] for r in results[variant]) / 100
        cpu = statistics.median(r["produce broker CPU s/GiB"] for r in results[variant])
        user_cpu[variant] = cpu * (1 - kernel)
        top = ", ".join(f"{broker_profile.short_name(name)} {count / samples:.1%}"
                        for name, count in by_frame.most_common(8))
        print(f"  {variant:9} broker CPU {cpu:.2f} s/GiB, kernel {kernel:.0%} of it ({cpu * kernel:.2f} s/GiB); "
              f"{samples} user-space samples; hottest frames: {top}")
    for title, shares in (("what the code does", categories), ("which threads", threads)):
        names = sorted({n for s in shares.values() for n in s}, key=lambda n: -shares["sasl_ssl"].get(n, 0))
        print(f"\n  {'user-space CPU s/GiB (share): ' + title:48} " + " ".join(f"{v:>17}" for v in VARIANTS)
              + "   sasl_ssl - plaintext")
        for name in names:
            cells = [f"{shares[v].get(name, 0) * user_cpu[v]:6.2f} ({shares[v].get(name, 0):5.1%})" for v in VARIANTS]
            extra = shares["sasl_ssl"].get(name, 0) * user_cpu["sasl_ssl"] - shares["plaintext"].get(name, 0) * user_cpu["plaintext"]
            print(f"  {name:48} " + " ".join(f"{c:>17}" for c in cells) + f"   {extra:+6.2f}")


def spread(values: list[float]) -> str:
    digits = 2 if max(values) < 10 else 1  # cores and milliseconds need the second digit
    return f"{statistics.median(values):7.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024, help="record value size in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted (JIT, page cache)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--linger-ms", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1 << 20)
    parser.add_argument("--compression", default="none", choices=("none", "lz4", "zstd", "snappy", "gzip"))
    parser.add_argument("--payload", default="random", choices=PAYLOAD_KINDS,
                        help="random: incompressible bytes; events: JSON events, what --compression is for")
    parser.add_argument("--encrypted-volumes", action="store_true",
                        help="keep the broker's data on an encrypted volume (default: a plain one, so only the wire is measured)")
    parser.add_argument("--pin", action="store_true", help="the broker on CPU 1, this process on CPU 0")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample the broker with async-profiler during each counted produce, into DIR")
    parser.add_argument("--fixed-load", type=float, default=0.0, metavar="FRACTION",
                        help="then offer each variant FRACTION of PLAINTEXT's saturation rate: latency and CPU (0: off)")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="length of each fixed-load round")
    parser.add_argument("--broker-config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dynamic broker configs set before the first round (levers to try)")
    parser.add_argument("--broker-property", nargs="*", default=[], metavar="KEY=VALUE",
                        help="static broker configs the broker is restarted with (levers to try)")
    parser.add_argument("--jdk", type=int, default=DEFAULT_JDK, choices=sorted(JDK_SUITES),
                        help="the broker's JDK (its runtime image is built first when missing)")
    parser.add_argument("--gc", default="G1GC", choices=("G1GC", "ParallelGC", "SerialGC"),
                        help="the broker's garbage collector (the image's is G1)")
    parser.add_argument("--jsse", default="jdk", choices=("jdk", "conscrypt"),
                        help="the TLS provider of the broker's listeners: the JDK's own, or Conscrypt (BoringSSL)")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    api = connect().api
    ensure_image(connect())
    broker_image = ensure_image(connect(), jdk=args.jdk)
    if args.gc != "G1GC":
        broker_image = broker_variant.collector_image(api, broker_image, args.gc)
    if args.jsse == "conscrypt":
        broker_image = jsse_provider.conscrypt_image(api, broker_image)
    if args.profile:
        broker_image = broker_profile.profiling_image(api, broker_image)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    loaded: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="sk-bench-security-tax-") as root, \
            running_environment(Path(root), "dev", plaintext_loopback=True, encrypted_volumes=args.encrypted_volumes,
                                progress=lambda line: None) as env:
        properties = dict(pair.split("=", 1) for pair in args.broker_property)
        if args.jsse == "conscrypt":
            properties = {**jsse_provider.BROKER_PROPERTIES, **properties}
        if broker_image != broker_variant.runtime_tag(env) or properties:
            try:
                broker_variant.move_broker(env, broker_image, properties)
            except SecureKafkaError:
                if args.jsse != "conscrypt":
                    raise
                broker = env.settings.topology.brokers[0].container
                raise SystemExit(f"the broker did not start with Conscrypt: {jsse_provider.first_error(api, broker)}")
        users.add(env, USER)
        grant(env)
        configs = client_configs(env)
        if args.pin:
            api.update_container(env.settings.topology.brokers[0].container, cpuset_cpus="1")
            os.sched_setaffinity(0, {0})
        admin = AdminClient(env.admin_mtls_config())
        # One at a time, in the order given: a thread count may fall by at most half per update,
        # so num.io.threads=4 num.io.threads=2 takes the default 8 down to 2.
        for pair in args.broker_config:
            entry = ConfigEntry(*pair.split("=", 1), incremental_operation=AlterConfigOpType.SET)
            resources = [ConfigResource(ResourceType.BROKER, str(env.settings.topology.broker_id(broker)), incremental_configs=[entry])
                         for broker in env.settings.topology.brokers]  # librdkafka refuses the cluster default's empty name
            for future in admin.incremental_alter_configs(resources).values():
                future.result(timeout=60)
            # Applied asynchronously, and the next update is checked against what is applied.
            deadline = time.monotonic() + 60
            while any(future.result(timeout=30)[entry.name].value != entry.value
                      for future in admin.describe_configs(resources).values()):
                assert time.monotonic() < deadline, f"{pair} not applied within 60 s"
                time.sleep(1)
        print(f"dev environment {env.env}: 1 broker (JDK {args.jdk}, {args.gc}, JSSE provider {args.jsse}, CPU limit {env.settings.profile.broker_cpus:g}, heap "
              f"{env.settings.profile.broker_heap_mb} MiB), SASL_SSL negotiates {negotiated(env)}; "
              f"{args.records} x {args.size} B, {args.partitions} partitions, acks=all, linger.ms={args.linger_ms}, "
              f"batch.size={args.batch_size}, compression={args.compression}, payload={args.payload}"
              f"{'; broker configs ' + ', '.join(args.broker_config + args.broker_property) if args.broker_config + args.broker_property else ''}"
              f"{'; broker on CPU 1, client on CPU 0' if args.pin else ''}", flush=True)
        if args.jsse == "conscrypt":
            print(f"Conscrypt in the broker's JVM: {jsse_provider.in_use(api, env.settings.topology.brokers[0].container)}")
        for index in range(args.warmup + args.rounds):
            order = VARIANTS[index % 3:] + VARIANTS[:index % 3]  # no variant always runs first
            for variant in order:
                counted = index >= args.warmup
                profile = args.profile / f"{variant}-{index}.collapsed" if args.profile and counted else None
                figures = one_round(env, api, admin, configs[variant], args, profile)
                if counted:
                    results[variant].append(figures)
                label = f"round {index - args.warmup + 1}" if counted else "warm-up"
                print(f"{label:8} {variant:9} " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
        if args.fixed_load:
            rate = fixed_rate([r["produce MiB/s"] for r in results["plaintext"]], args.size, args.fixed_load,
                              args.load_seconds, "PLAINTEXT")
            for index in range(args.rounds):
                for variant in VARIANTS[index % 3:] + VARIANTS[:index % 3]:
                    figures = fixed_load_round(env, api, admin, configs[variant], args, rate)
                    loaded[variant].append(figures)
                    print(f"round {index + 1:<2} {variant:9} " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    print(f"\nhost load average (1/5/15 min) at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (other work on the host makes the spread)")
    print(f"medians (min..max) of {args.rounds} rounds:")
    keys = list(results["plaintext"][0])
    for variant in VARIANTS:
        print(f"  {variant:9} " + ", ".join(f"{k} {spread([r[k] for r in results[variant]])}" for k in keys))
    print("\nsecure / plaintext, medians (loss = 1 - ratio of throughput):")
    plain = {k: statistics.median(r[k] for r in results["plaintext"]) for k in keys}
    for variant in VARIANTS[1:]:
        median = {k: statistics.median(r[k] for r in results[variant]) for k in keys}
        for direction in ("produce", "consume"):
            ratio = median[f"{direction} MiB/s"] / plain[f"{direction} MiB/s"]
            verdict = "within" if 1 - ratio <= TARGET_LOSS else "OVER"
            print(f"  {variant:9} {direction}: throughput x{ratio:.2f} (loss {1 - ratio:6.1%}, {verdict} the "
                  f"{TARGET_LOSS:.0%} target), broker CPU/GiB x{median[f'{direction} broker CPU s/GiB'] / plain[f'{direction} broker CPU s/GiB']:.2f}, "
                  f"client CPU/GiB x{median[f'{direction} client CPU s/GiB'] / plain[f'{direction} client CPU s/GiB']:.2f}")

    if args.fixed_load:
        print(f"\nfixed load, medians (min..max) of {args.rounds} rounds:")
        for variant in VARIANTS:
            print(f"  {variant:9} " + ", ".join(f"{k} {spread([r[k] for r in loaded[variant]])}" for k in loaded[variant][0]))
        plain = {k: statistics.median(r[k] for r in loaded["plaintext"]) for k in loaded["plaintext"][0]}
        for variant in VARIANTS[1:]:
            median = {k: statistics.median(r[k] for r in loaded[variant]) for k in plain}
            ratio = median["p99 ms"] / plain["p99 ms"]
            verdict = "within" if ratio <= TARGET_P99_RATIO else "OVER"
            print(f"  {variant:9} / plaintext: p99 x{ratio:.2f} ({verdict} the x{TARGET_P99_RATIO} target), "
                  f"p50 x{median['p50 ms'] / plain['p50 ms']:.2f}, broker cores x{median['broker cores'] / plain['broker cores']:.2f}, "
                  f"client cores x{median['client cores'] / plain['client cores']:.2f}")

    if args.profile:
        print(f"\nwhere the broker's CPU went while producing (async-profiler, {args.profile}):")
        print_profiles(args.profile, results)


if __name__ == "__main__":
    main()
