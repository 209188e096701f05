"""What the throughput benchmarks share: record payloads, and producing as fast as the client's
queue allows."""

from __future__ import annotations

import json
import os
import random
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
