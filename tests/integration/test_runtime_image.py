"""The runtime images themselves: versions, non-root user, and a bare produce/consume round-trip.

Security is exercised elsewhere; this proves ZooKeeper, the broker and Kafka's own tools run
from the 3.9 image built offline (the 4.4 image's run every KRaft environment of the suite).
"""

from __future__ import annotations

import time
import uuid

import pytest

from secure_kafka.model.topology import KAFKA_VERSIONS, ZOOKEEPER
from secure_kafka.verify import probes

ZOO_CFG = "dataDir=/var/lib/zookeeper\nclientPort=2181\nadmin.enableServer=false\ntickTime=2000\n"
SERVER_PROPERTIES = """broker.id=0
zookeeper.connect=zk:2181
listeners=PLAINTEXT://0.0.0.0:9092
advertised.listeners=PLAINTEXT://kafka:9092
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
"""


def run(client, image, *argv) -> str:
    return client.containers.run(image, list(argv), remove=True, stderr=True).decode()


def test_image_has_its_lines_kafka(docker_client, metadata_mode, mode_image):
    """3.9 and ZooKeeper 3.8 for ZooKeeper mode; 4.4 and no ZooKeeper for KRaft mode."""
    out = run(docker_client, mode_image, "kafka-version")
    version = KAFKA_VERSIONS[metadata_mode]
    assert f"Kafka {version}\n" in out and version.startswith("3.9." if metadata_mode == ZOOKEEPER else "4.4.")
    assert ("ZooKeeper 3.8." in out) == (metadata_mode == ZOOKEEPER), out


def test_image_runs_as_non_root_without_compilers(docker_client, mode_image):
    assert run(docker_client, mode_image, "id", "-u").strip() == "10001"
    out = run(docker_client, mode_image, "bash", "-c", "command -v gcc cc javac apt-get; ls /var/lib/apt/lists | wc -l")
    assert "gcc" not in out and "javac" not in out
    assert out.strip().splitlines()[-1] == "0"  # no package lists left behind


def test_jvms_map_their_classes_from_the_image_archive(docker_client, mode_image):
    """The class-data archive made at build is what a node's or tool's JVM loads its classes
    from, with a node's heap settings; and it prints nothing to a tool's parsed output."""
    loaded = run(docker_client, mode_image, "bash", "-c",
                 'JVM_OPTS="-Xms1024m -Xmx1024m -Xlog:class+load=info" kafka-topics --version')
    sources = [line for line in loaded.splitlines() if "source: " in line]
    shared = [line for line in sources if "source: shared objects file" in line]
    assert len(shared) > 1000 and len(shared) / len(sources) > 0.9, f"{len(shared)} of {len(sources)} classes shared"
    assert run(docker_client, mode_image, "kafka-topics", "--version").strip().count("\n") == 0


def test_the_launcher_formats_with_a_cluster_id_that_starts_with_a_dash(docker_client, mode_image):
    """A ZooKeeper cluster's id may start with '-' (Kafka 3.9 derives it from a random UUID), and
    a migrated environment's KRaft nodes are formatted with it: `--cluster-id -x...` would be
    read as an option. Both lines' kafka-server-start format such a node (3.9's: a migration's
    controllers); the node's own start is not waited for."""
    cluster_id = "-" + uuid.uuid4().hex[:21]
    script = (
        "mkdir -p /tmp/config /tmp/data && cd /tmp/config && "
        "printf 'process.roles=controller\\nnode.id=1000\\ncontroller.quorum.voters=1000@localhost:9093\\n"
        "controller.listener.names=CONTROLLER\\nlisteners=CONTROLLER://:9093\\nlog.dirs=/tmp/data\\n' > server.properties && "
        f"echo '{cluster_id}' > cluster.id && "
        "(kafka-server-start /tmp/config/server.properties > /tmp/start.log 2>&1 &) && "
        "for _ in $(seq 120); do [ -r /tmp/data/meta.properties ] && break; sleep 0.5; done; "
        "cat /tmp/data/meta.properties || tail -5 /tmp/start.log"
    )
    out = run(docker_client, mode_image, "bash", "-c", script)
    assert f"cluster.id={cluster_id}\n" in out, out[-800:]

@pytest.fixture
def bare_cluster(docker_client, runtime_image, session_label, tmp_path):
    """One plaintext ZooKeeper and one plaintext broker on a private network."""
    api = docker_client.api
    name = f"sk-bare-{uuid.uuid4().hex[:8]}"
    api.create_network(name, labels=session_label)
    config = tmp_path / "config"
    config.mkdir()
    config.chmod(0o755)
    for file, text in {"zoo.cfg": ZOO_CFG, "server.properties": SERVER_PROPERTIES}.items():
        (config / file).write_text(text)
        (config / file).chmod(0o644)
    containers = []
    for alias, command in (("zk", ["zookeeper-server-start", "/etc/kafka/config/zoo.cfg"]),
                           ("kafka", ["kafka-server-start", "/etc/kafka/config/server.properties"])):
        c = api.create_container(
            runtime_image, command=command, name=f"{name}-{alias}", labels=session_label,
            host_config=api.create_host_config(binds={str(config): {"bind": "/etc/kafka/config", "mode": "ro"}},
                                               network_mode=name),
            networking_config=api.create_networking_config({name: api.create_endpoint_config(aliases=[alias])}),
        )
        api.start(c["Id"])
        containers.append(c["Id"])
    try:
        yield docker_client.containers.get(containers[1])
    finally:
        for cid in containers:
            api.remove_container(cid, force=True)
        api.remove_network(name)


def test_bare_zookeeper_and_broker_round_trip(bare_cluster):
    broker = bare_cluster
    deadline = time.monotonic() + 90
    while True:  # the broker is ready once it answers a topic creation
        rc, out = broker.exec_run(["kafka-topics", "--bootstrap-server", "kafka:9092", "--create",
                                   "--topic", "roundtrip", "--partitions", "1", "--replication-factor", "1"])
        if rc == 0:
            break
        assert time.monotonic() < deadline, out.decode()[-500:]
        time.sleep(2)
    records = [f"record-{i}" for i in range(5)]
    rc, out = broker.exec_run(["bash", "-c", "printf '%s\\n' " + " ".join(records)
                               + " | kafka-console-producer --bootstrap-server kafka:9092 --topic roundtrip"])
    assert rc == 0, out.decode()[-500:]
    rc, out = broker.exec_run(["kafka-console-consumer", "--bootstrap-server", "kafka:9092", "--topic", "roundtrip",
                               "--from-beginning", "--max-messages", "5", "--timeout-ms", "30000"])
    assert rc == 0, out.decode()[-500:]
    assert [line for line in out.decode().splitlines() if line.startswith("record-")] == records


def test_plaintext_probe_detects_a_plaintext_broker(bare_cluster):
    """Control for the refusal tests: the probe does recognise a broker speaking plaintext."""
    broker = bare_cluster
    ip = next(iter(broker.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    deadline = time.monotonic() + 90
    while not probes.kafka_answers_plaintext(ip, 9092):
        assert time.monotonic() < deadline, "the bare plaintext broker never answered the probe"
        time.sleep(2)
