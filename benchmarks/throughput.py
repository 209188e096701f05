"""What the throughput benchmarks share: record payloads, producing as fast as the client's
queue allows, and producing at a fixed rate with each record's latency."""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid

from confluent_kafka import Producer

PAYLOAD_KINDS = ("random", "events")
DISTINCT_PAYLOADS = 4096  # cycled: enough that a 1 MiB batch never repeats a record
_WORDS = ("order", "payment", "refund", "login", "logout", "click", "view", "cart", "search", "checkout",
          "shipped", "delivered", "cancelled", "pending", "approved", "declined", "retry", "timeout")


def _event(size: int, rng: random.Random) -> bytes:
    """A JSON event of about ``size`` bytes, compressible the way application events are:
    repeated field names and vocabulary, random ids and numbers."""
    record = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "ts": 1_790_000_000_000 + rng.randrange(10**9),
        "user": f"user-{rng.randrange(100_000):05d}",
        "type": rng.choice(_WORDS),
        "amount": round(rng.uniform(0, 10_000), 2),
        "currency": rng.choice(("EUR", "USD", "GBP", "CHF")),
        "tags": rng.sample(_WORDS, 4),
    }
    record["note"] = ""
    room = size - len(json.dumps(record))  # what the note may take
    words: list[str] = []
    while sum(len(w) + 1 for w in words) + len(_WORDS[0]) < room:
        words.append(rng.choice(_WORDS))
    record["note"] = " ".join(words).ljust(room)
    return json.dumps(record).encode()


def payloads(kind: str, size: int) -> list[bytes]:
    """``random``: incompressible bytes (the worst case for TLS and compression alike);
    ``events``: JSON events (what compression is for)."""
    if kind == "random":
        return [os.urandom(size) for _ in range(DISTINCT_PAYLOADS)]
    rng = random.Random(20261129)  # the same records in every run
    return [_event(size, rng) for _ in range(DISTINCT_PAYLOADS)]


def produce_all(producer: Producer, topic: str, values: list[bytes], count: int) -> int:
    """Queues ``count`` records, cycling through ``values``, waiting for delivery reports
    whenever the local queue is full, then waits until every record is acknowledged.
    Returns the bytes of record values produced."""
    produced = 0
    for index in range(count):
        value = values[index % len(values)]
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.05)
        produced += len(value)
    assert producer.flush(300) == 0, "records left unacknowledged"
    return produced


def warm_up(producer: Producer, topic: str, value: bytes) -> None:
    """One record, acknowledged: connections, handshakes, metadata and the producer id are set
    up before a round's clock starts."""
    producer.produce(topic, value)
    assert producer.flush(60) == 0, "the warm-up record was not acknowledged"


PACE_S = 0.005  # produce_at_rate queues what is due every 5 ms


def produce_at_rate(producer: Producer, topic: str, values: list[bytes], rate: float, seconds: float) -> tuple[list[float], int]:
    """Offers ``rate`` records/s for ``seconds`` (cycling through ``values``), then waits until
    every record is acknowledged. Returns each record's latency in seconds, sorted
    (librdkafka's: from ``produce()`` to its acknowledgement), and how many were queued: fewer
    than offered when the cluster cannot keep up and the client's queue stays full."""
    latencies: list[float] = []
    failed: list[str] = []

    def delivered(err, msg) -> None:
        if err:
            failed.append(err.str())
        else:
            latencies.append(msg.latency())

    queued, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        for _ in range(int(rate * elapsed) - queued):
            try:
                producer.produce(topic, values[queued % len(values)], on_delivery=delivered)
            except BufferError:  # behind: wait for acknowledgements, then catch up as far as the queue allows
                producer.poll(0.05)
                break
            queued += 1
        producer.poll(0)
        time.sleep(PACE_S)
    assert producer.flush(120) == 0 and not failed, failed[:3]
    return sorted(latencies), queued


def fixed_rate(saturated_mib_s: list[float], size: int, fraction: float, seconds: float, reference: str) -> float:
    """The fixed load's records/s: ``fraction`` of the median saturated throughput of
    ``reference`` (what the other variants are measured against), announced."""
    saturation = statistics.median(saturated_mib_s) * 2**20 / size
    rate = fraction * saturation
    print(f"\nfixed load: {rate:.0f} records/s ({fraction:.0%} of {reference}'s {saturation:.0f}), {seconds:g} s per round",
          flush=True)
    return rate


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]
