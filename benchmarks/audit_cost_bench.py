"""Benchmark: what auditing allowed decisions costs a producer, and what collecting them costs.

Two dev environments side by side, the same but for ``auditAllowed`` (on: every allowed
decision is logged, the default; off: denied ones only), both on plain volumes so that only
the logging differs. The authorizer decides once per request, not per record, so each round
produces two loads over SASL_SSL with acks=all: **batched** (``--records`` × ``--size`` bytes,
``linger.ms`` 5: the client's usual batching, few requests) and **one record per request**
(``--single-records``, no batching: every record an allowed decision in the log, the worst
case for auditing), then collects the nodes' new lines into the environment's durable trail
(``secure-kafka audit``'s first step) and times that. Variants alternate their order per round.

    .venv/bin/python benchmarks/audit_cost_bench.py [--records 200000] [--single-records 20000]
        [--size 100] [--rounds 5] [--warmup 2]

Prints every round, the medians, and per load the throughput ratio (on ÷ off), with the audit
lines written per 1000 records and the collection's time.
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
from confluent_kafka.admin import NewTopic
from throughput import payloads, produce_all  # benchmarks/ is on sys.path when a script runs

from secure_kafka.build.image import ensure_image
from secure_kafka.dockerclient import connect
from secure_kafka.model.topology import ADMIN
from secure_kafka.testing import running_environment

VARIANTS = ("audit allowed on", "audit allowed off")


def trail_lines(env) -> int:
    return sum(text.count("\n") for _, text in env.decisions.texts())


LOADS = {  # name -> producer settings that decide how many records share a request
    "batched": {"linger.ms": 5},
    "one record per request": {"linger.ms": 0, "batch.num.messages": 1, "max.in.flight.requests.per.connection": 5},
}


def one_load(env, topic: str, values: list[bytes], records: int, settings: dict) -> dict[str, float]:
    producer = Producer({**env.scram_config(ADMIN), "acks": "all", "queue.buffering.max.kbytes": 1 << 20, **settings})
    producer.produce(topic, values[-1])  # connections and metadata before the clock starts
    assert producer.flush(60) == 0
    env.collect_decisions()
    lines_before = trail_lines(env)
    start = time.monotonic()
    produce_all(producer, topic, values, records)
    seconds = time.monotonic() - start
    collect_start = time.monotonic()
    env.collect_decisions()
    collect_s = time.monotonic() - collect_start
    return {"records/s": records / seconds, "audit lines per 1000 records": (trail_lines(env) - lines_before) * 1000 / records,
            "collection s": collect_s}


def one_round(env, args) -> dict[str, dict[str, float]]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = env.admin_client()
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    values = payloads("random", args.size)
    figures = {load: one_load(env, topic, values, args.single_records if load != "batched" else args.records, settings)
               for load, settings in LOADS.items()}
    admin.delete_topics([topic])[topic].result(timeout=30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records of the batched load")
    parser.add_argument("--single-records", type=int, default=20_000, help="records of the one-record-per-request load")
    parser.add_argument("--size", type=int, default=100, help="record value size in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    ensure_image(connect())
    results: dict[str, list[dict[str, dict[str, float]]]] = {v: [] for v in VARIANTS}
    with contextlib.ExitStack() as stack:
        envs = {}
        for variant, allowed in zip(VARIANTS, (True, False)):
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sk-bench-audit-")))
            envs[variant] = stack.enter_context(running_environment(root, "dev", encrypted_volumes=False, audit_allowed=allowed,
                                                                    progress=lambda line: None))
        print(f"two dev environments (1 broker each), SASL_SSL, acks=all, {args.size} B records: batched "
              f"{args.records}, one per request {args.single_records}", flush=True)
        for index in range(args.warmup + args.rounds):
            for variant in VARIANTS[index % 2:] + VARIANTS[:index % 2]:
                figures = one_round(envs[variant], args)
                counted = index >= args.warmup
                if counted:
                    results[variant].append(figures)
                label = f"round {index - args.warmup + 1}" if counted else "warm-up"
                for load, numbers in figures.items():
                    print(f"{label:8} {variant:17} {load:22} " + ", ".join(f"{k} {v:.2f}" for k, v in numbers.items()), flush=True)
    print(f"\nhost load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for load in LOADS:
        medians = {v: {k: statistics.median(r[load][k] for r in results[v]) for k in results[v][0][load]} for v in VARIANTS}
        for variant in VARIANTS:
            print(f"  {load:22} {variant:17} medians: " + ", ".join(f"{k} {v:.2f}" for k, v in medians[variant].items()))
        on, off = (medians[v] for v in VARIANTS)
        print(f"  {load}: throughput with allowed decisions audited x{on['records/s'] / off['records/s']:.3f} of without\n")


if __name__ == "__main__":
    main()
