"""Admin API and client primitives the provisioning step and the probes share.

An admin client once every broker is registered, SCRAM-SHA-512 users created if missing, a
topic, and a verified round-trip (produce over one configuration, consume over another).
The order they run in after a start is ``ops/provision.py``'s.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from ..errors import SecureKafkaError
from ..proc import Progress, quiet

__all__ = ["VERIFY_TOPIC", "wait_for_admin", "ensure_scram_users", "ensure_topic", "round_trip"]

SCRAM_ITERATIONS = 8192
# The first commit creates the offsets topic (50 partitions, replicated): until its leaders
# are elected and in sync, commits answer with these; on a loaded host that takes a while.
COORDINATOR_NOT_READY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._WAIT_COORD,
                         KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT}
COMMIT_TIMEOUT_S = 180
VERIFY_TOPIC = "secure-kafka.verify"


def _wait(futures: dict, what: str, timeout: float = 30) -> dict:
    results = {}
    for key, future in futures.items():
        try:
            results[key] = future.result(timeout=timeout)
        except KafkaException as exc:
            raise SecureKafkaError(f"{what} failed for {key}: {exc.args[0].str()}") from None
    return results


def wait_for_admin(admin_conf: dict, broker_count: int, timeout_s: float = 120) -> AdminClient:
    """An admin client once every broker is registered (brokers can be healthy before that)."""
    admin = AdminClient(admin_conf)
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=10)
            if len(metadata.brokers) >= broker_count:
                return admin
            last = f"{len(metadata.brokers)} of {broker_count} brokers registered"
        except KafkaException as exc:
            last = exc.args[0].str()
        time.sleep(1)
    raise SecureKafkaError(f"the cluster did not answer the admin over mTLS within {timeout_s:.0f} s ({last})")


def ensure_scram_users(admin: AdminClient, passwords: dict[str, str], progress: Progress = quiet) -> list[str]:
    """Creates the SCRAM-SHA-512 users that do not exist yet; returns their names."""
    existing: set[str] = set()
    for user, future in admin.describe_user_scram_credentials(list(passwords)).items():
        try:
            description = future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].name() == "RESOURCE_NOT_FOUND":
                continue
            raise SecureKafkaError(f"describing SCRAM user {user} failed: {exc.args[0].str()}") from None
        if any(ci.mechanism == ScramMechanism.SCRAM_SHA_512 for ci in description.scram_credential_infos):
            existing.add(user)
    missing = [u for u in passwords if u not in existing]
    if missing:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts = [UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in missing]
        _wait(admin.alter_user_scram_credentials(upserts), "creating SCRAM user")
        for user in missing:
            progress(f"SCRAM user {user}: created")
    return missing


def ensure_topic(admin: AdminClient, topic: str, replication_factor: int, partitions: int = 1) -> None:
    if topic in admin.list_topics(timeout=10).topics:
        return
    futures = admin.create_topics([NewTopic(topic, partitions, replication_factor)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise SecureKafkaError(f"creating topic {topic} failed: {exc.args[0].str()}") from None


def round_trip(producer_conf: dict, consumer_conf: dict, topic: str, timeout_s: float = 60) -> float:
    """Produces one unique record with acks=all and reads it back; returns seconds taken."""
    started = time.monotonic()
    marker = f"secure-kafka-verify-{uuid.uuid4().hex}".encode()
    errors: list[str] = []
    producer = Producer({**producer_conf, "acks": "all", "enable.idempotence": True})
    delivered: list = []

    def on_delivery(err, msg):
        (errors.append(err.str()) if err else delivered.append(msg))

    producer.produce(topic, marker, on_delivery=on_delivery)
    if producer.flush(timeout_s) or errors or not delivered:
        raise SecureKafkaError(f"verification produce to {topic} failed: {errors or 'timed out'}")
    msg = delivered[0]
    consumer = Consumer({**consumer_conf, "group.id": f"secure-kafka-verify-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, msg.partition(), msg.offset())])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = consumer.poll(1.0)
            if got is None:
                continue
            if got.error():
                raise SecureKafkaError(f"verification consume from {topic} failed: {got.error().str()}")
            if got.value() == marker:
                # Committing in a group makes the cluster create its offsets topic now, so the
                # first consumer group of a user (or of `verify`) does not pay for it.
                _commit_until_accepted(consumer, got, time.monotonic() + COMMIT_TIMEOUT_S)
                return time.monotonic() - started
        raise SecureKafkaError(f"verification record not read back from {topic} within {timeout_s:.0f} s")
    finally:
        consumer.close()


def _commit_until_accepted(consumer: Consumer, msg, deadline: float) -> None:
    """Commits ``msg``'s offset, retrying while the group coordinator is still being set up
    (the offsets topic is created on the first commit: NOT_COORDINATOR, LOAD_IN_PROGRESS)."""
    while True:
        try:
            consumer.commit(message=msg, asynchronous=False)
            return
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() not in COORDINATOR_NOT_READY:
                raise SecureKafkaError(f"committing the verification offset failed: {error.str()}") from None
            if time.monotonic() > deadline:
                raise SecureKafkaError(
                    f"committing the verification offset still failed after {COMMIT_TIMEOUT_S} s ({error.str()}): the "
                    "offsets topic has no leader in sync; check the brokers' logs (an offline log directory?)"
                ) from None
            time.sleep(1)
