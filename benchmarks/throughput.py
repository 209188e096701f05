"""What the throughput benchmarks share: producing as fast as the client's queue allows."""

from __future__ import annotations

from confluent_kafka import Producer


def produce_all(producer: Producer, topic: str, payload: bytes, count: int) -> None:
    """Queues ``count`` records, waiting for delivery reports whenever the local queue is full,
    then waits until every record is acknowledged."""
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(300) == 0, "records left unacknowledged"
