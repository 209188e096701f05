"""The ClusterPlan: containers, mounts, ports, files and limits, and no secret outside files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from secure_kafka.build import plan, render
from secure_kafka.build.planner import build_plan
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles
from secure_kafka.model.settings import Settings, defaults
from secure_kafka.pki import revocation

IMAGE = "secure-kafka-runtime:test"
ROOT = Path("/srv/project")


def dev() -> Settings:
    return dataclasses.replace(defaults("dev", profiles.DEV), project_id="0a1b2c3d")


def prod() -> Settings:
    return dataclasses.replace(defaults("prod", profiles.PROD), project_id="0a1b2c3d")


def dev_kraft() -> Settings:
    return dataclasses.replace(dev(), metadata_mode="kraft")


def prod_kraft() -> Settings:
    return dataclasses.replace(prod(), metadata_mode="kraft")


ROLES = {"zk": "zookeeper", "controller": "controller", "kafka": "broker"}


@pytest.mark.parametrize(
    "make, order",
    [
        pytest.param(dev, ["zk-0", "kafka-0"], id="dev-1+1"),
        pytest.param(prod, ["zk-0", "zk-1", "zk-2", "kafka-0", "kafka-1", "kafka-2"], id="prod-3+3"),
        pytest.param(dev_kraft, ["controller-0", "kafka-0"], id="dev-kraft-1+1"),
        pytest.param(prod_kraft, ["controller-0", "controller-1", "controller-2", "kafka-0", "kafka-1", "kafka-2"],
                     id="prod-kraft-3+3"),
    ],
)
def test_plan_shape(secrets, make, order):
    settings = make()
    cluster = build_plan(ROOT, settings, secrets, IMAGE)
    env = settings.env
    assert cluster.env == env
    assert cluster.network == f"sk-{env}-{settings.project_id}"  # Docker names are host-wide: the project's id
    assert [c.node for c in cluster.containers] == order  # start order: the metadata quorum first
    assert cluster.volumes == ()  # encrypted volumes (the default) are bind mounts, not Docker volumes
    assert cluster.labels == {plan.LABEL_PROJECT: settings.project_id, plan.LABEL_ENV: env}
    for spec in cluster.containers:
        assert spec.name == f"sk-{env}-{settings.project_id}-{spec.node}"
        assert spec.hostname == spec.node
        assert spec.image == IMAGE
        assert spec.role == ROLES[spec.node.rpartition("-")[0]]
        assert spec.labels == {
            plan.LABEL_PROJECT: settings.project_id,
            plan.LABEL_ENV: env,
            plan.LABEL_ROLE: spec.role,
            plan.LABEL_NODE: spec.node,
        }


@pytest.mark.parametrize("make", [dev, prod], ids=["dev", "prod"])
def test_commands_env_and_mounts(secrets, make):
    settings = make()
    cluster = build_plan(ROOT, settings, secrets, IMAGE)
    env = settings.env
    for spec in cluster.containers:
        if spec.role == "zookeeper":
            assert spec.command == ("zookeeper-server-start", "/etc/kafka/config/zoo.cfg")
            heap, data = settings.profile.zookeeper_heap_mb, "/var/lib/zookeeper"
        else:
            assert spec.command == ("kafka-server-start", "/etc/kafka/config/server.properties")
            heap, data = settings.profile.broker_heap_mb, "/var/lib/kafka"
        assert spec.env == {"JVM_OPTS": " ".join((f"-Xms{heap}m", f"-Xmx{heap}m", *revocation.JVM_OPTIONS)),
                            "VOLUME_START_FLOOR_MIB": "32"}
        assert spec.mounts == (
            plan.Mount("bind", f"/srv/project/certs/{env}/runtime/{spec.node}", "/etc/kafka/config", read_only=True),
            plan.Mount("bind", f"/srv/project/certs/{env}/nodes/{spec.node}", "/etc/kafka/tls", read_only=True),
            plan.Mount("bind", f"/run/secure-kafka/{settings.project_id}/{env}/{spec.node}/data", data),
            plan.Mount("tmpfs", "", "/tmp"),
        )
        assert spec.user == "10001:10001"
        assert spec.read_only_rootfs is True
        assert spec.cap_drop == ("ALL",)
        assert spec.security_opt == ("no-new-privileges:true",)
        assert spec.mem_limit_mb == heap + 384
        assert spec.pids_limit == 512


def test_relative_project_root_becomes_absolute(secrets):
    spec = build_plan(Path("project"), dev(), secrets, IMAGE).containers[0]
    assert all(Path(m.source).is_absolute() for m in spec.mounts if m.kind == "bind")


@pytest.mark.parametrize("make", [dev, prod], ids=["dev", "prod"])
def test_ports_and_healthchecks(secrets, make):
    settings = make()
    topology = settings.topology
    cluster = build_plan(ROOT, settings, secrets, IMAGE)
    for spec in cluster.containers:
        if spec.role == "zookeeper":
            assert spec.ports == ()  # only brokers reach ZooKeeper, on the environment network
            port = 2182
        else:
            node = topology.node(spec.node)
            p1, p2 = topology.listener_port(node, "sasl_ssl"), topology.listener_port(node, "ssl")
            assert spec.ports == (plan.PortBinding("127.0.0.1", p1, p1), plan.PortBinding("127.0.0.1", p2, p2))
            port = 9091
        assert spec.healthcheck is not None
        if spec.role == "zookeeper":  # serving, asked over TLS as the node itself; the password from a file
            assert spec.healthcheck.test == render.zookeeper_healthcheck(port)
            assert "file:/etc/kafka/config/store.pass" in spec.healthcheck.test[-1]
            assert any(f.path.endswith(f"/{spec.node}/store.pass") and f.mode == 0o600 for f in spec.files)
        else:
            assert spec.healthcheck.test == ("CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}")


def test_broker_ports_follow_the_index():
    topology = prod().topology
    assert [topology.listener_port(b, "sasl_ssl") for b in topology.brokers] == [19001, 19011, 19021]


def test_plaintext_loopback_is_published_on_loopback_only(secrets):
    settings = dataclasses.replace(dev(), plaintext_loopback=True, bind_address="192.0.2.10", allow_public_bind=True)
    spec = build_plan(ROOT, settings, secrets, IMAGE).container("kafka-0")
    assert spec.ports == (
        plan.PortBinding("192.0.2.10", 19001, 19001),
        plan.PortBinding("192.0.2.10", 19002, 19002),
        plan.PortBinding("127.0.0.1", 19003, 19003),
    )


@pytest.mark.parametrize("profile", [profiles.CI, profiles.PROD], ids=["ci", "prod"])
def test_plaintext_opt_in_refused_by_strict_profiles(secrets, profile):
    settings = dataclasses.replace(defaults(profile.name, profile), plaintext_loopback=True)
    with pytest.raises(SecureKafkaError, match="plaintextLoopback"):
        build_plan(ROOT, settings, secrets, IMAGE)


@pytest.mark.parametrize("make", [dev, prod], ids=["dev", "prod"])
def test_files_are_the_rendered_configs(secrets, make):
    settings = make()
    cluster = build_plan(ROOT, settings, secrets, IMAGE)
    for spec in cluster.containers:
        node = settings.topology.node(spec.node)
        rendered = (render.render_zookeeper if spec.role == "zookeeper" else render.render_broker)(
            settings, node, secrets
        )
        runtime = f"certs/{settings.env}/runtime/{spec.node}"
        assert {f.path: f.content for f in spec.files} == {f"{runtime}/{n}": c for n, c in rendered.items()}
        assert all((f.mode, f.uid) == (0o600, 10001) for f in spec.files)


def _strings_outside_file_contents(value: object) -> list[str]:
    """Every string in a plan, field names and dict keys included, except RenderedFile.content."""
    if isinstance(value, plan.RenderedFile):
        return [value.path]
    if dataclasses.is_dataclass(value):
        return [
            s
            for f in dataclasses.fields(value)
            for s in [f.name, *_strings_outside_file_contents(getattr(value, f.name))]
        ]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings_outside_file_contents(k), *_strings_outside_file_contents(v))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings_outside_file_contents(item)]
    return [str(value)]


@pytest.mark.parametrize("make", [dev, prod, dev_kraft, prod_kraft], ids=["dev", "prod", "dev-kraft", "prod-kraft"])
def test_no_secret_outside_rendered_files(secrets, make):
    cluster = build_plan(ROOT, make(), secrets, IMAGE)
    values = [secrets.get(name) for name in secrets.names()]
    assert values, "the plan should have used secrets"
    exposed = _strings_outside_file_contents(cluster)
    assert not [v for v in values if any(v in s for s in exposed)]
    # ... and they are in the files, so the search above could have found them.
    contents = [f.content for c in cluster.containers for f in c.files]
    assert all(any(v in content for content in contents) for v in values)
    assert all(v not in repr(cluster) for v in values)


def test_spec_hash_is_stable_and_follows_settings(secrets):
    first = build_plan(ROOT, prod(), secrets, IMAGE)
    second = build_plan(ROOT, prod(), secrets, IMAGE)
    assert [plan.spec_hash(c) for c in first.containers] == [plan.spec_hash(c) for c in second.containers]

    changed = build_plan(ROOT, dataclasses.replace(prod(), port_base=29000), secrets, IMAGE)
    for before, after in zip(first.containers, changed.containers):
        if before.role == "broker":  # ports and advertised listeners moved
            assert plan.spec_hash(before) != plan.spec_hash(after)
        else:  # ZooKeeper does not depend on the broker ports
            assert plan.spec_hash(before) == plan.spec_hash(after)


def test_spec_hash_follows_a_rotated_secret(secrets):
    before = build_plan(ROOT, dev(), secrets, IMAGE).container("kafka-0")
    secrets.set("store:kafka-0", "rotated-store-password")
    after = build_plan(ROOT, dev(), secrets, IMAGE).container("kafka-0")
    assert plan.spec_hash(before) != plan.spec_hash(after)


def test_a_pki_that_predates_revocation_gets_nodes_that_do_not_check_it(secrets):
    # Its certificates carry no CRL distribution point: with checking on, Java would refuse them all.
    for spec in build_plan(ROOT, dev(), secrets, IMAGE, revocation=False).containers:
        assert not any(option in spec.env["JVM_OPTS"] for option in revocation.JVM_OPTIONS)
