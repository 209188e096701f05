"""A steady idempotent ``acks=all`` producer and a consumer, side by side, for the fault tests:
every record is numbered, every acknowledgement timed, and at the end each acknowledged record
must have been consumed exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

RATE_PER_S = 100


@dataclass(frozen=True)
class Outcome:
    acked: int
    consumed: int
    lost: int  # acknowledged, never consumed
    duplicated: int  # consumed more than once
    failed: int  # delivery reports with an error (not acknowledged: allowed, not counted as lost)
    longest_stall_s: float  # the longest time without an acknowledgement, from the fault's start

    def row(self) -> str:
        return (f"acked {self.acked}, consumed {self.consumed}, lost {self.lost}, duplicated {self.duplicated}, "
                f"failed {self.failed}, producer acked again after {self.longest_stall_s:.1f} s")


class SteadyTraffic:
    """``with SteadyTraffic(producer_config, consumer_config, topic, partitions) as traffic:``
    produces ``RATE_PER_S`` records a second and consumes them, until the block ends."""

    def __init__(self, producer_config: dict, consumer_config: dict, topic: str, partitions: int):
        self.topic = topic
        self.partitions = partitions
        self._producer = Producer({**producer_config, "acks": "all", "enable.idempotence": True,
                                   "delivery.timeout.ms": 300000, "linger.ms": 5})
        self._consumer = Consumer({**consumer_config, "group.id": f"faults-{uuid.uuid4().hex[:8]}",
                                   "enable.auto.commit": False})
        self.acked: list[tuple[float, bytes]] = []
        self.failed: list[str] = []
        self.consumed: list[bytes] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._produce, daemon=True),
                         threading.Thread(target=self._consume, daemon=True)]

    def __enter__(self) -> SteadyTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _on_delivery(self, err, msg) -> None:
        if err:
            self.failed.append(err.str())
        else:
            self.acked.append((time.monotonic(), msg.value()))

    def _produce(self) -> None:
        sent = 0
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * RATE_PER_S)
            while sent < due:
                try:
                    self._producer.produce(self.topic, f"{self.topic}-{sent}".encode(), on_delivery=self._on_delivery)
                except BufferError:
                    break  # the local queue is full (the cluster stalls): try again after a poll
                sent += 1
            self._producer.poll(0.01)
        self._producer.flush(300)

    def _consume(self) -> None:
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        quiet_since = None
        while True:
            message = self._consumer.poll(0.5)
            if message is not None and not message.error():
                self.consumed.append(message.value())
                quiet_since = None
            elif message is not None and message.error().code() != KafkaError._PARTITION_EOF:
                continue
            elif self._stop.is_set() and not self._threads[0].is_alive():
                # The producer has flushed: read on until every acknowledged record is in, or 60 s of nothing.
                quiet_since = quiet_since or time.monotonic()
                acked = {value for _, value in self.acked}
                if acked <= set(self.consumed) and time.monotonic() - quiet_since > 2:
                    break
                if time.monotonic() - quiet_since > 60:
                    break
        self._consumer.close()

    def acked_count(self) -> int:
        return len(self.acked)

    def wait_acked(self, count: int, timeout_s: float) -> None:
        """Until ``count`` more records are acknowledged: the producer runs."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < target:
            assert time.monotonic() < deadline, f"fewer than {count} records acknowledged within {timeout_s:.0f} s"
            time.sleep(0.1)

    def outcome(self, fault_started: float) -> Outcome:
        """Call after the block: the accounting, and the longest gap between acknowledgements
        from ``fault_started`` (time.monotonic()) on."""
        times = [fault_started] + [t for t, _ in self.acked if t >= fault_started]
        acked = [value for _, value in self.acked]
        counts = Counter(self.consumed)
        return Outcome(
            acked=len(acked),
            consumed=len(self.consumed),
            lost=len(set(acked) - set(counts)),
            duplicated=sum(n - 1 for n in counts.values()),
            failed=len(self.failed),
            longest_stall_s=max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else float("inf"),
        )
