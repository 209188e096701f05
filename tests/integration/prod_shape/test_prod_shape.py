"""The prod shape (3 ZooKeeper nodes or KRaft controllers + 3 brokers, RF 3, min ISR 2), in each
metadata mode: hardened, every probe passes, outside scanners find nothing. The faults of the
same shape are in test_cluster_faults.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from outside_scanner import run_testssl, scan
from tls_endpoints import client_certs, tls_endpoints

from secure_kafka import verify
from secure_kafka.model.topology import ADMIN
from secure_kafka.verify import probes

pytestmark = pytest.mark.prod_shape


def test_prod_listeners_refuse_tls_1_2(prod_env):
    ca = prod_env.certs.client_dir(ADMIN) / "ca.crt"
    topology = prod_env.settings.topology
    for broker in topology.brokers:
        port = topology.listener_port(broker, "sasl_ssl")
        assert probes.tls_handshake("127.0.0.1", port, ca, "localhost").detail == "TLSv1.3"
        tls12 = probes.tls_handshake("127.0.0.1", port, ca, "localhost", max_version=ssl.TLSVersion.TLSv1_2)
        assert not tls12.ok and tls12.answered, f"{broker.name} did not refuse TLS 1.2: {tls12.detail}"


def test_every_probe_passes_on_prod(prod_env):
    """`up` already ran the full set (mandatory on prod); verify runs it again, from outside,
    after the faults of test_cluster_faults.py healed (the package's environment)."""
    card = verify.run(prod_env)
    assert card.passed, card.table()
    assert [r.probe for r in card.results] == verify.probe_ids(prod_env.settings.topology)
    # 3 listeners per broker, and ZooKeeper's client port or the controller listener per quorum node.
    tls12 = next(r for r in card.results if r.probe == "tls.v1.2")
    assert tls12.expected == "refused" and tls12.observed == f"refused by {3 * 3 + 3} listeners"


def test_an_outside_scanner_finds_nothing_on_any_listener(prod_env, docker_client, tmp_path):
    """sslyze against every TLS listener: the published ones, INTERNAL, and the quorum's; judged
    by its own Mozilla "modern" checker plus legacy versions and client renegotiation
    (tests/outside_scanner.py; its allow-list says why each entry is there)."""
    endpoints = tls_endpoints(prod_env, docker_client)
    found = scan(endpoints, prod_env.certs.client_dir(ADMIN) / "ca.crt", client_certs(prod_env, endpoints, tmp_path))
    assert set(found) == {e.name for e in endpoints}
    assert not any(found.values()), {name: issues for name, issues in found.items() if issues}


def test_testssl_finds_nothing_on_any_listener(prod_env, docker_client, tmp_path):
    """testssl.sh (Debian's): nothing it rates LOW or worse (tests/outside_scanner.py says which
    verdict of it our own probe may overrule, and why). On every listener of one broker and one
    quorum node: the others' listeners are rendered from the same settings with their own
    certificates and ports, which sslyze (above) checks on every node; testssl.sh's full run
    costs about 10 s of both cores per listener, and all twelve made it a two-minute test."""
    topology = prod_env.settings.topology
    scanned = {topology.brokers[0].name, topology.quorum[0].name}
    endpoints = [e for e in tls_endpoints(prod_env, docker_client) if e.node in scanned]
    assert len(endpoints) == 4
    found = run_testssl(endpoints, prod_env.certs.client_dir(ADMIN) / "ca.crt", client_certs(prod_env, endpoints, tmp_path))
    assert set(found) == {e.name for e in endpoints}
    assert not any(found.values()), {name: issues for name, issues in found.items() if issues}


# --- container hardening ---------------------------------------------------------------------

MIB = 1024 * 1024


def test_prod_containers_are_hardened(prod_env, docker_client):
    profile = prod_env.settings.profile
    for node in prod_env.settings.topology.nodes:
        info = docker_client.api.inspect_container(node.container)
        host = info["HostConfig"]
        heap, cpus = profile.resources(node.role)
        assert info["Config"]["User"] == "10001:10001", node.name
        assert host["ReadonlyRootfs"] is True, node.name
        assert host["CapDrop"] == ["ALL"], node.name
        assert host["SecurityOpt"] == ["no-new-privileges:true"], node.name
        assert host["Memory"] == (heap + 384) * MIB, node.name
        assert host["NanoCpus"] == int(cpus * 1_000_000_000), node.name
        assert host["PidsLimit"] == profile.pids_limit, node.name
        # Rolled, so a chatty node cannot fill the host's disk (ZooKeeper logged a handshake error every 2 s).
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}}, node.name


def _sh(container, script: str, user: str = ""):
    return container.exec_run(["sh", "-c", script], user=user)


def _sh_output(container, script: str, user: str = ""):
    """``_sh`` for a script that prints something: Docker now and then hands an exec's output
    back empty although the command printed (docker-py issue 2042, seen here once on
    `cat /proc/1/status`), so an empty answer is asked again; the exit code is never lost."""
    for _ in range(3):
        result = _sh(container, script, user)
        if result.output:
            return result
    return result


def _jvm_status(docker_client, container) -> dict[str, str]:
    """/proc/<pid>/status of the container's pid 1 (the JVM), read on the host: what the kernel
    holds for the process, with no exec (and no output to lose) in between."""
    pid = docker_client.api.inspect_container(container)["State"]["Pid"]
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":\t") for line in lines) if value}


def test_prod_hardening_holds_inside_the_containers(prod_env, docker_client):
    for node in prod_env.settings.topology.nodes:
        container = docker_client.containers.get(node.container)
        status = _jvm_status(docker_client, node.container)
        assert status["Name"] == "java", (node.name, status["Name"])
        # The JVM runs as 10001 (real, effective, saved, fs), has no capability and cannot gain privileges.
        assert status["Uid"].split() == ["10001"] * 4, (node.name, status["Uid"])
        assert status["CapEff"] == status["CapBnd"] == "0000000000000000", node.name
        assert status["NoNewPrivs"] == "1", node.name
        # So does what an operator execs; the root filesystem refuses a write, and the control:
        # /tmp (a tmpfs) takes one.
        assert _sh_output(container, "id -u").output == b"10001\n", node.name
        refused = _sh_output(container, "echo x > /probe")
        assert refused.exit_code != 0 and b"Read-only file system" in refused.output, node.name
        assert _sh(container, "echo x > /tmp/probe && rm /tmp/probe").exit_code == 0, node.name
        # Even root (docker exec -u 0) is powerless: without CAP_DAC_OVERRIDE it cannot open the
        # node's 0600 config, which its owner, uid 10001, can (the control).
        config = "/etc/kafka/config/" + ("zoo.cfg" if node.role == "zookeeper" else "server.properties")
        assert _sh(container, f"head -c0 {config}").exit_code == 0, node.name
        assert _sh(container, f"head -c0 {config}", user="0").exit_code != 0, node.name
