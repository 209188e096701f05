"""The verify scorecard: table, one-line summary and the stable JSON document."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest

from secure_kafka import verify
from secure_kafka.verify import checks, network, probes
from secure_kafka.verify.trail import denials_in


def card(*passed: bool, quick: bool = False) -> verify.Scorecard:
    ids = list(verify.PROBES)
    results = tuple(verify.result(ids[i], "refused", "refused by 2 listeners" if ok else "accepted by kafka-0/ssl", ok)
                    for i, ok in enumerate(passed))
    return verify.Scorecard("dev", "dev", quick, results)


def test_probe_catalogue_has_at_least_twenty_probes_with_stable_ids():
    assert len(verify.PROBES) >= 20
    assert all(re.fullmatch(r"[a-z]+\.[a-z0-9.-]+", p) for p in verify.PROBES)
    assert verify.SLOW_PROBES < set(verify.PROBES)
    covered = [probe for _group, ids in verify.GROUPS for probe in ids]
    assert sorted(covered) == sorted(verify.PROBES)  # every probe run by exactly one group


def test_json_document_is_stable():
    document = card(True, False).to_json()
    assert json.loads(json.dumps(document)) == document
    assert document == {
        "format": 1, "env": "dev", "profile": "dev", "set": "full", "passed": False, "total": 2, "failed": 1,
        "probes": [
            {"probe": "ports.plaintext", "checks": verify.PROBES["ports.plaintext"], "expected": "refused",
             "observed": "refused by 2 listeners", "passed": True},
            {"probe": "ports.bind-address", "checks": verify.PROBES["ports.bind-address"], "expected": "refused",
             "observed": "accepted by kafka-0/ssl", "passed": False},
        ],
    }
    assert card(True, quick=True).to_json()["set"] == "quick"


def test_summary_names_the_failures():
    assert card(True, True).summary() == "verify dev: 2/2 probes passed"
    assert card(True, False, False, quick=True).summary() == \
        "verify dev: 1/3 quick probes passed; FAILED: ports.bind-address, tls.v1.0"


def test_table_has_a_row_per_probe_and_wraps_long_cells():
    lines = card(True, False).table().splitlines()
    assert lines[0].split() == ["probe", "expected", "observed", "result"]
    assert lines[2].startswith("ports.plaintext") and lines[2].endswith("PASS")
    assert lines[3].startswith("ports.bind-address") and lines[3].endswith("FAIL")
    long = verify.Scorecard("dev", "dev", False, (verify.result("tls.sans", "x" * 70, "ok", True),))
    rows = long.table(width=60).splitlines()[2:]
    assert len(rows) == 2 and rows[0].endswith("PASS") and rows[1].strip() == "x" * 10


def test_a_broken_probe_fails_every_probe_of_its_group():
    def broken(_target):
        raise RuntimeError("docker went away")

    results = checks._run_group(broken, ("tls.v1.0", "tls.v1.1"), target=None)
    assert [(r.probe, r.passed, r.observed) for r in results] == [
        ("tls.v1.0", False, "probe error: docker went away"), ("tls.v1.1", False, "probe error: docker went away")]


def _outcome(ok: bool, answered: bool = True) -> probes.HandshakeResult:
    return probes.HandshakeResult(ok, "TLSv1.1" if ok else "SSLError: alert", cipher="AES128-SHA" if ok else None,
                                  answered=answered)


@pytest.mark.parametrize(
    ("outcomes", "passed", "observed"),
    [
        ({"kafka-0/SSL": _outcome(False), "zk-0/tls": _outcome(False)}, True, "refused by 2 listeners"),
        ({"kafka-0/SSL": _outcome(True), "zk-0/tls": _outcome(False)}, False, "accepted by kafka-0/SSL"),
        # A listener that is down, or silent until the timeout, has refused nothing.
        ({"kafka-0/SSL": _outcome(False, answered=False), "zk-0/tls": _outcome(False)}, False,
         "no answer from kafka-0/SSL"),
        ({"kafka-0/SSL": _outcome(True), "zk-0/tls": _outcome(False, answered=False)}, False,
         "accepted by kafka-0/SSL (TLSv1.1 AES128-SHA); no answer from zk-0/tls"),
        ({}, False, "refused by 0 listeners"),  # nothing probed proves nothing
    ],
)
def test_a_refusal_probe_needs_every_listener_to_answer_and_refuse(outcomes, passed, observed):
    outcome = network._refused("tls.v1.1", outcomes)
    assert outcome.passed is passed
    assert outcome.observed.startswith(observed)


def test_silence_and_a_closed_port_are_no_answer_not_a_refusal():
    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = probes.tls_handshake("127.0.0.1", silent.getsockname()[1], None, timeout=0.5)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: the connection is refused
        refused = probes.tls_handshake("127.0.0.1", closed.getsockname()[1], None, timeout=0.5)
    for result in (quiet, refused):
        assert not result.ok and not result.answered and result.detail.startswith("no answer")


def test_a_server_that_closes_on_the_hello_has_answered():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def hang_up():
            connection, _ = server.accept()
            connection.recv(1024)  # the ClientHello
            connection.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        result = probes.tls_handshake("127.0.0.1", server.getsockname()[1], None, timeout=2)
        thread.join()
    assert not result.ok and result.answered


@pytest.mark.parametrize("probe, output, expected", [
    ("zookeeper.anonymous-read", "... client failed to authenticate ...", "refused"),
    ("zookeeper.anonymous-read", "[0, 1, 2]", "answered"),
    ("zookeeper.anonymous-read", "client failed to authenticate\n[0]", "answered"),  # an answer wins
    ("zookeeper.anonymous-read", "ERROR Exiting JVM with code 1 (org.apache.zookeeper.util.ServiceUtils)", "inconclusive"),
    ("zookeeper.anonymous-write", "Created /intruder", "answered"),
    ("zookeeper.anonymous-write", "client failed to authenticate", "refused"),
    ("zookeeper.plaintext", "KeeperErrorCode = ConnectionLoss for /brokers/ids", "refused"),
    ("zookeeper.plaintext", "client failed to authenticate", "inconclusive"),  # not this probe's refusal
    ("zookeeper.plaintext", "", "inconclusive"),
])
def test_zookeeper_shell_outputs_are_judged_by_what_they_prove(probe, output, expected):
    """Only an answer or the refusal's own words decide a ZooKeeper probe; anything else is
    asked again (twice at most) and then fails as unexpected."""
    assert verify.zookeeper_verdict(probe, output, "/intruder") == expected


def test_the_denials_probe_finds_only_denials_of_its_own_user():
    def line(principal: str, decision: str) -> str:
        return (f"[2026-12-06 12:00:00,000] INFO Principal = {principal} is {decision} Operation = Write from host = "
                f"172.18.0.1 on resource = Topic:LITERAL:t for request = Produce with resourceRefCount = 1\n")

    texts = [("kafka-0", line("User:probe-1", "Allowed") + line("User:other", "Denied"))]
    assert denials_in(texts, "User:probe-1") == []  # allowed, or someone else's: the probe fails
    texts.append(("kafka-1", line("User:probe-1", "Denied")))
    assert [(d.node, d.principal) for d in denials_in(texts, "User:probe-1")] == [("kafka-1", "User:probe-1")]
