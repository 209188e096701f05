"""Outside clients: kafka-python and aiokafka, with exactly the files `client-config` writes.

Each connects over SASL_SSL (SCRAM-SHA-512) and mTLS and round-trips a record; each is
refused with a wrong password and with a client certificate from a foreign CA.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import kafka
import kafka.errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AioKafkaError
from aiokafka.helpers import create_ssl_context

from secure_kafka import pki
from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import kafka_admin

pytestmark = pytest.mark.integration

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def topic(dev_env) -> str:
    name = f"python-clients-{uuid.uuid4().hex[:8]}"
    admin = dev_env.admin_client()  # kept: a collected AdminClient never completes its futures
    kafka_admin.ensure_topic(admin, name, replication_factor=len(dev_env.settings.topology.brokers))
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def client_config(env, tmp_path: Path, fmt: str, auth: str) -> dict:
    """The JSON `client-config --format FMT --auth AUTH` writes, loaded."""
    return json.loads(env.client_config(ADMIN, fmt, auth, tmp_path / f"{fmt}-{auth}").read_text())


def with_foreign_certificate(conf: dict, tmp_path: Path, fmt: str) -> dict:
    """``conf`` presenting the admin's name in a certificate of another CA."""
    foreign = pki.CA.create("foreign-ca", "ec-p256", 30, env="foreign")
    paths = foreign.issue_cert(ADMIN, "client", validity_days=7).write_pem(tmp_path / f"foreign-{fmt}")
    if fmt == "aiokafka":
        return {**conf, "ssl_context": {**conf["ssl_context"], "certfile": str(paths.cert), "keyfile": str(paths.key)}}
    return {**conf, "ssl_certfile": str(paths.cert), "ssl_keyfile": str(paths.key)}


# --- kafka-python --------------------------------------------------------------------------------


def kafka_python_round_trip(conf: dict, topic: str) -> bytes:
    value = uuid.uuid4().bytes
    producer = kafka.KafkaProducer(**conf, acks="all", request_timeout_ms=TIMEOUT_MS)
    try:
        producer.send(topic, value).get(timeout=30)
    finally:
        producer.close()
    consumer = kafka.KafkaConsumer(topic, **conf, auto_offset_reset="earliest", consumer_timeout_ms=TIMEOUT_MS)
    try:
        return next(m.value for m in consumer if m.value == value)
    finally:
        consumer.close()


def kafka_python_refused(conf: dict) -> bool:
    try:
        # A refused bootstrap is retried until bootstrap_timeout_ms (default 30 s).
        kafka.KafkaAdminClient(**conf, request_timeout_ms=TIMEOUT_MS, bootstrap_timeout_ms=8000).close()
    except kafka.errors.KafkaError:
        return True
    return False


@pytest.mark.parametrize("auth", ["scram", "mtls"])
def test_kafka_python_round_trips_and_is_refused_with_wrong_credentials(dev_env, topic, tmp_path, auth):
    conf = client_config(dev_env, tmp_path, "kafka-python", auth)
    assert kafka_python_round_trip(conf, topic)
    assert not kafka_python_refused(conf)  # control: the same check passes with the right credentials
    wrong = ({**conf, "sasl_plain_password": conf["sasl_plain_password"] + "x"} if auth == "scram"
             else with_foreign_certificate(conf, tmp_path, "kafka-python"))
    assert kafka_python_refused(wrong)


# --- aiokafka ------------------------------------------------------------------------------------


def run(coroutine):
    """Runs ``coroutine`` on a loop of its own: ``asyncio.run`` would leave the main thread
    without a current event loop, which code run later in the session (Pulumi's mocks) needs."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def aiokafka_arguments(conf: dict) -> dict:
    return {**conf, "ssl_context": create_ssl_context(**conf["ssl_context"]), "request_timeout_ms": TIMEOUT_MS}


async def aiokafka_round_trip(conf: dict, topic: str) -> bytes:
    value = uuid.uuid4().bytes
    producer = AIOKafkaProducer(**aiokafka_arguments(conf), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **aiokafka_arguments(conf), auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while (message := await consumer.getone()).value != value:
                pass
            return message.value
    finally:
        await consumer.stop()


async def aiokafka_refused(conf: dict) -> bool:
    producer = AIOKafkaProducer(**aiokafka_arguments(conf))
    try:
        await producer.start()
    except AioKafkaError:
        return True
    finally:
        await producer.stop()
    return False


@pytest.mark.parametrize("auth", ["scram", "mtls"])
def test_aiokafka_round_trips_and_is_refused_with_wrong_credentials(dev_env, topic, tmp_path, auth):
    conf = client_config(dev_env, tmp_path, "aiokafka", auth)
    assert run(aiokafka_round_trip(conf, topic))
    assert not run(aiokafka_refused(conf))  # control
    wrong = ({**conf, "sasl_plain_password": conf["sasl_plain_password"] + "x"} if auth == "scram"
             else with_foreign_certificate(conf, tmp_path, "aiokafka"))
    assert run(aiokafka_refused(wrong))
