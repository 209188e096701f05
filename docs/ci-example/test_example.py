"""An application's CI test against a real, secure Kafka: the example of README, "Use it in your CI".

The ``secure_kafka_env`` fixture (the ``secure-kafka`` package's pytest plugin) stands up one
ephemeral ci-profile environment for the session, with the principals and ACLs of
pytest.ini, and removes it at the end, also when a test fails or the run is interrupted.
Our own suite runs this file (tests/integration/test_testing_plugin.py).
"""

import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "orders"


@pytest.fixture(scope="session")
def orders_topic(secure_kafka_env):
    """The admin (a super user) creates the topic; the application may only use it."""
    admin = AdminClient(secure_kafka_env.client("admin").librdkafka)
    admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])[TOPIC].result(timeout=30)
    return TOPIC


def test_the_app_produces_and_consumes_over_sasl_ssl(secure_kafka_env, orders_topic):
    config = secure_kafka_env.client("orders-app").librdkafka  # SCRAM-SHA-512 over TLS, CA pinned
    order = f"order-{uuid.uuid4()}".encode()
    producer = Producer({**config, "acks": "all"})
    producer.produce(orders_topic, order)
    assert producer.flush(30) == 0

    consumer = Consumer({**config, "group.id": "orders-checker", "auto.offset.reset": "earliest"})
    consumer.subscribe([orders_topic])
    try:
        seen = []
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                seen.append(message.value())
                if order in seen:
                    break
        assert order in seen
    finally:
        consumer.close()


def test_the_app_is_refused_what_its_acls_do_not_grant(secure_kafka_env, orders_topic):
    producer = Producer({**secure_kafka_env.client("orders-app").librdkafka, "acks": "all"})
    errors = []
    producer.produce("payments", b"not allowed", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert errors and errors[0] is not None and errors[0].name() == "TOPIC_AUTHORIZATION_FAILED"


def test_the_app_authenticates_by_certificate_too(secure_kafka_env, orders_topic):
    config = secure_kafka_env.client("orders-app", auth="mtls").librdkafka  # SSL listener, client certificate
    metadata = AdminClient(config).list_topics(orders_topic, timeout=30)
    assert metadata.topics[orders_topic].error is None


def test_java_clients_get_a_properties_file(secure_kafka_env):
    properties = secure_kafka_env.client("orders-app").java_properties.read_text()
    assert "security.protocol=SASL_SSL" in properties and "sasl.mechanism=SCRAM-SHA-512" in properties


def test_an_unknown_password_is_refused(secure_kafka_env):
    config = {**secure_kafka_env.client("orders-app").librdkafka, "sasl.password": "wrong", "log_level": 0}
    with pytest.raises(KafkaException):
        AdminClient(config).list_topics(timeout=10)
