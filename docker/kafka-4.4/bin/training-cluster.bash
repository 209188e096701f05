# class-data-archive's training cluster of the 4.4 line: one KRaft node, broker and controller
# in one, PLAINTEXT on loopback, with the StandardAuthorizer. Sourced: serve, halt, listing and
# $work are class-data-archive's.

start_training_cluster() {
  mkdir -p "$work/config"
  printf '%s\n' "process.roles=broker,controller" "node.id=1" \
    "controller.quorum.voters=1@127.0.0.1:19093" \
    "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
    "advertised.listeners=PLAINTEXT://127.0.0.1:19092" "controller.listener.names=CONTROLLER" \
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" "log.dirs=$work/data" \
    "offsets.topic.replication.factor=1" "transaction.state.log.replication.factor=1" \
    "transaction.state.log.min.isr=1" "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" \
    "super.users=User:ANONYMOUS" > "$work/config/server.properties"
  echo "q1Sh-9_ISia_zwGINzRvyQ" > "$work/config/cluster.id"
  # Formatted apart, with a list of its own: every node formats its storage at its first start.
  JVM_OPTS=$(listing format) kafka-storage format --cluster-id "$(cat "$work/config/cluster.id")" \
    --config "$work/config/server.properties" > /dev/null
  serve server 19092 kafka-server-start "$work/config/server.properties"
}

stop_training_cluster() {
  halt server
}
