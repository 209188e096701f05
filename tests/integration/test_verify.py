"""`secure-kafka verify`: every probe passes on a healthy environment, and each can fail.

A probe that cannot fail proves nothing. The TLS offers are proven against deliberately weak
servers; the rest against environments weakened in exactly one way, where exactly the
matching probe must fail and every other one pass. The prod shape is verified in
prod_shape/test_prod_shape.py (one 3+3 cluster per mode and run).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import yaml

from secure_kafka import verify
from secure_kafka.build.planner import runtime_dir
from secure_kafka.environment import Environment
from secure_kafka.model.acl import Binding
from secure_kafka.model.topology import CONTROLLER_PORT, ZK_SECURE_CLIENT_PORT
from secure_kafka.ops import acladmin
from secure_kafka.ops.decision_trail import FINGERPRINT_LINES
from secure_kafka.testing import running_environment
from secure_kafka.verify import probes

LOCAL = "127.0.0.1"
CLI = Path(sys.executable).parent / "secure-kafka"


def failed(card: verify.Scorecard) -> set[str]:
    return {r.probe for r in card.failed}


def test_every_probe_passes_on_the_healthy_dev_env(dev_env):
    card = verify.run(dev_env)
    assert card.passed, card.table()
    assert [r.probe for r in card.results] == verify.probe_ids(dev_env.settings.topology)
    # KRaft mode has no ZooKeeper to probe; ZooKeeper mode every probe there is.
    zookeeper_probes = {p for p in verify.PROBES if p.startswith("zookeeper.")}
    assert len(card.results) == len(verify.PROBES) - (len(zookeeper_probes) if dev_env.settings.metadata_mode == "kraft" else 0)
    # dev enables TLS 1.2: every listener (2 published, INTERNAL, ZooKeeper's client port or
    # the controller's listener) had a session to renegotiate.
    renegotiation = next(r for r in card.results if r.probe == "tls.renegotiation")
    assert renegotiation.observed == "refused by 4 TLS 1.2 listeners", renegotiation.observed


def test_cli_verify_json_on_the_dev_env(dev_env):
    done = subprocess.run([str(CLI), "verify", dev_env.env, "--json", "--quick"], capture_output=True, text=True,
                          env={**os.environ, "SECURE_KAFKA_PROJECT": str(dev_env.project.root)}, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert document["env"] == dev_env.env and document["set"] == "quick" and document["passed"] is True
    quick = verify.probe_ids(dev_env.settings.topology, quick=True)
    assert document["failed"] == 0 and document["total"] == len(quick)
    assert [p["probe"] for p in document["probes"]] == quick
    assert all(set(p) == {"probe", "checks", "expected", "observed", "passed"} for p in document["probes"])


def test_up_reports_the_quick_probes(dev_env):
    result = dev_env.up()
    assert result.verification["set"] == "quick" and result.verification["passed"] is True


# --- each probe can fail ------------------------------------------------------------------------


def test_tls_offers_succeed_against_weak_servers(weak_tls_server):
    """The exact offers of tls.v1.0, tls.v1.1 and tls.weak-cipher, accepted where a server allows them."""
    tls10 = probes.tls_handshake(LOCAL, weak_tls_server(ssl.TLSVersion.TLSv1), None,
                                 **probes.legacy_offer(ssl.TLSVersion.TLSv1))
    assert tls10.ok and tls10.detail == "TLSv1", tls10.detail
    tls11 = probes.tls_handshake(LOCAL, weak_tls_server(ssl.TLSVersion.TLSv1_1), None,
                                 **probes.legacy_offer(ssl.TLSVersion.TLSv1_1))
    assert tls11.ok and tls11.detail == "TLSv1.1", tls11.detail
    cbc = probes.tls_handshake(LOCAL, weak_tls_server(ssl.TLSVersion.TLSv1_2, "AES128-SHA:@SECLEVEL=0"), None,
                               **probes.weak_cipher_offer())
    assert cbc.ok and cbc.cipher == "AES128-SHA", (cbc.detail, cbc.cipher)


def test_an_over_wide_acl_fails_exactly_the_produce_probe(dev_env):
    """Everyone may write every topic (User:* Write on *): reversible, so on the shared env."""
    over_wide = Binding("User:*", "topic", "*", "literal", "Write", "allow")
    admin = dev_env.admin_client()
    acladmin.create(admin, [over_wide])  # returns once the broker shows it
    try:
        card = verify.run(dev_env, quick=True)
    finally:
        acladmin.delete(admin, [over_wide])
    assert failed(card) == {"authz.produce"}, card.table()
    produce = next(r for r in card.results if r.probe == "authz.produce")
    assert produce.observed == "written"


def test_edited_trails_fail_exactly_their_probes(dev_env):
    """One operations entry's outcome rewritten (what someone hiding a failed command would do),
    and one collected decision made to read otherwise, in place and of the same length (so
    collection goes on beside it); both are put back afterwards, so on the shared env."""
    path = dev_env.trail.path
    original = path.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    lines[0] = lines[0].replace('"outcome": "ok"', '"outcome": "failed"')
    assert "".join(lines).encode() != original, lines[0]
    dev_env.collect_decisions()
    node = max(dev_env.decisions.nodes(), key=lambda n: sum(len(t) for name, t in dev_env.decisions.texts() if name == n))
    segment = sorted((dev_env.decisions.directory / node).glob("*.log"))[0]
    first = segment.read_bytes().split(b"\n", 1)[0]
    assert len(dev_env.decisions.tail(node, count=FINGERPRINT_LINES + 1)) > FINGERPRINT_LINES  # the edit is not in the tail
    path.write_text("".join(lines))
    with open(segment, "rb+") as f:
        f.write(first.swapcase())
    try:
        card = verify.run(dev_env, quick=True)
    finally:
        path.write_bytes(original)
        with open(segment, "rb+") as f:
            f.write(first)
    assert failed(card) == {"audit.operations-chain", "audit.decisions-chain"}, card.table()
    chain = next(r for r in card.results if r.probe == "audit.operations-chain")
    assert "entry 1" in chain.observed, chain.observed
    decisions = next(r for r in card.results if r.probe == "audit.decisions-chain")
    assert f"{segment} line 1: changed" in decisions.observed, decisions.observed
    assert dev_env.decisions.verify().ok


def test_plaintext_listener_then_public_bind_fail_exactly_their_probe(metadata_mode, mode_image, tmp_path, docker_client):
    """One small environment of each mode, weakened three times, one thing at a time (a second
    cluster would cost another start): first dev's PLAINTEXT loopback listener, then, with it
    off again, the listeners published on every interface (allowed by allowPublicBind), then
    ZooKeeper answering every four-letter word, or the KRaft controller asking no client
    certificate."""
    with running_environment(tmp_path / "weak", plaintext_loopback=True, metadata_mode=metadata_mode) as env:
        card = verify.run(env, quick=True)
        assert failed(card) == {"ports.plaintext"}, card.table()
        plaintext_port = env.settings.topology.listener_port(env.settings.topology.brokers[0], "plaintext")
        assert str(plaintext_port) in next(r.observed for r in card.results if r.probe == "ports.plaintext")

        stack = env.project.stack_file(env.env)
        document = yaml.safe_load(stack.read_text())
        document["config"].update({"secure-kafka:plaintextLoopback": False, "secure-kafka:bindAddress": "0.0.0.0",
                                   "secure-kafka:allowPublicBind": True})
        stack.write_text(yaml.safe_dump(document))
        public = Environment(env.project, env.env, progress=print)
        result = public.up()  # dev: `up` reports the failing quick probe and still succeeds
        assert result.verification["passed"] is False
        card = verify.run(public, quick=True)
        assert failed(card) == {"ports.bind-address"}, card.table()
        assert "every interface" in next(r.observed for r in card.results if r.probe == "ports.bind-address")

        if metadata_mode == "zookeeper":
            _zookeeper_answers_every_word(public, docker_client)
        else:
            _controller_asks_no_certificate(public, docker_client)


def _zookeeper_answers_every_word(public: Environment, docker_client) -> None:
    """ZooKeeper answering every four-letter word to any certificate of the environment (its
    rendered zoo.cfg edited, the node restarted)."""
    zk = public.settings.topology.zookeepers[0]
    zoo_cfg = public.project.root / runtime_dir(public.env, zk) / "zoo.cfg"
    # ... and accepting every certificate of the environment (ZooKeeper's own TLS context).
    supplier = "ssl.context.supplier.class=io.securekafka.zookeeper.NodeCertificatesOnly\n"
    text = zoo_cfg.read_text()
    assert supplier in text
    zoo_cfg.write_text(text.replace("4lw.commands.whitelist=srvr\n", "4lw.commands.whitelist=*\n").replace(supplier, ""))
    docker_client.containers.get(zk.container).restart(timeout=30)
    zk_ip = docker_client.api.inspect_container(zk.container)["NetworkSettings"]["Networks"][public.settings.topology.network]["IPAddress"]
    admin_cert = (public.certs.client_dir("admin") / "client.crt", public.certs.client_dir("admin") / "client.key")
    deadline = time.monotonic() + 60
    while probes.zookeeper_four_letter_word(zk_ip, ZK_SECURE_CLIENT_PORT, "srvr", admin_cert) is None:
        assert time.monotonic() < deadline, "ZooKeeper did not come back"
        time.sleep(1)
    public.admin_client(120)  # the broker registered again: the other probes see a whole cluster
    card = verify.run(public, quick=True)
    assert failed(card) == {"ports.bind-address", "zookeeper.four-letter-words", "zookeeper.node-certificates-only"}, card.table()
    assert "zk-0: ruok" in next(r.observed for r in card.results if r.probe == "zookeeper.four-letter-words")


def _controller_asks_no_certificate(public: Environment, docker_client) -> None:
    """The controller listener asking for a client certificate without requiring one (its
    rendered config edited, the node restarted): the brokers still present theirs (with none,
    a broker would be User:ANONYMOUS there and fenced), but a client without one gets in."""
    controller = public.settings.topology.controllers[0]
    config = public.project.root / runtime_dir(public.env, controller) / "server.properties"
    config.write_text(config.read_text().replace("ssl.client.auth=required\n", "ssl.client.auth=requested\n"))
    docker_client.containers.get(controller.container).restart(timeout=30)
    ip = docker_client.api.inspect_container(controller.container)["NetworkSettings"]["Networks"][public.settings.topology.network]["IPAddress"]
    deadline = time.monotonic() + 90
    while not probes.tls_handshake(ip, CONTROLLER_PORT, None, controller.name).answered:
        assert time.monotonic() < deadline, "the controller did not come back"
        time.sleep(1)
    public.admin_client(120)  # the broker is back in touch with the quorum
    card = verify.run(public, quick=True)
    # A certificate it is offered is still checked (foreign, expired, not yet valid: refused).
    assert failed(card) == {"ports.bind-address", "mtls.no-cert"}, card.table()
    observed = next(r.observed for r in card.results if r.probe == "mtls.no-cert")
    assert observed.startswith("accepted by controller-0/controller") and "kafka-0" not in observed, observed
