"""secure-kafka: a secure Kafka cluster (ZooKeeper mode on Kafka 3.9, or KRaft mode on Kafka 4.x) on Docker, from one plan."""
