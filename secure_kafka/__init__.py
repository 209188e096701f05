"""secure-kafka: a secure Kafka cluster (ZooKeeper mode) on Docker, from one plan."""

KAFKA_VERSION = "3.9.2"
