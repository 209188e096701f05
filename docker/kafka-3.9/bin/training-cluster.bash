# class-data-archive's training cluster of the 3.9 line: a standalone ZooKeeper and one broker,
# PLAINTEXT on loopback, with ZooKeeper's ACL authorizer. Sourced: serve, halt and $work are
# class-data-archive's.

start_training_cluster() {
  mkdir -p "$work/zookeeper-config" "$work/zookeeper-data" "$work/broker-config"
  printf '%s\n' "dataDir=$work/zookeeper-data" "clientPort=12181" "clientPortAddress=127.0.0.1" \
    > "$work/zookeeper-config/zoo.cfg"
  serve zookeeper 12181 zookeeper-server-start "$work/zookeeper-config/zoo.cfg"
  printf '%s\n' "broker.id=1" "zookeeper.connect=127.0.0.1:12181" \
    "listeners=PLAINTEXT://127.0.0.1:19092" "log.dirs=$work/data" \
    "offsets.topic.replication.factor=1" "transaction.state.log.replication.factor=1" \
    "transaction.state.log.min.isr=1" "authorizer.class.name=kafka.security.authorizer.AclAuthorizer" \
    "super.users=User:ANONYMOUS" > "$work/broker-config/server.properties"
  serve server 19092 kafka-server-start "$work/broker-config/server.properties"
}

stop_training_cluster() {
  halt server zookeeper
}
