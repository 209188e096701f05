"""The outside scanners (sslyze and testssl.sh, tests/outside_scanner.py) can fail: proven
against an OpenSSL server that offers what Mozilla's "modern" profile forbids, with a server
that offers only what it allows as the control. The integration suite runs them against every
listener of prod."""

from __future__ import annotations

import socket

import pytest
from outside_scanner import TESTSSL_RENEGOTIATION, scan, judge_testssl, run_testssl
from tls_endpoints import Endpoint

LOCAL = "127.0.0.1"
SCANNERS = {"sslyze": scan, "testssl": run_testssl}
# What each scanner must say of a server with TLS 1.0 to 1.3, every cipher and client renegotiation
# (testssl.sh cannot test renegotiation where a client certificate is required: sslyze does).
WEAK_SERVER_FINDINGS = {
    "sslyze": ("tls_1_0_cipher_suites", "tls_1_1_cipher_suites", "tls_versions", "ciphers", "tls_curves",
               "client-initiated renegotiation accepted"),
    "testssl": ("TLS1:", "TLS1_1:", "BEAST", "LUCKY13:"),
}


def findings(scanner: str, port: int, tls_files) -> list[str]:
    _, _, client, ca_file = tls_files
    endpoint = Endpoint("server", "server", LOCAL, port, "localhost")
    return SCANNERS[scanner]([endpoint], ca_file, {"server": (client.cert, client.key)})["server"]


@pytest.mark.parametrize("scanner", SCANNERS)
def test_a_modern_server_has_no_finding(scanner, openssl_server, tls_files):
    assert findings(scanner, openssl_server("-tls1_3", "-groups", "X25519:P-256:P-384"), tls_files) == []


@pytest.mark.parametrize("scanner", SCANNERS)
def test_a_weak_server_is_caught(scanner, openssl_server, tls_files):
    found = findings(scanner, openssl_server("-cipher", "ALL:!aNULL:@SECLEVEL=0", "-client_renegotiation",
                                             "-min_protocol", "TLSv1", "-max_protocol", "TLSv1.3"), tls_files)
    said = "\n".join(found)
    for expected in WEAK_SERVER_FINDINGS[scanner]:
        assert expected in said, found


@pytest.mark.parametrize("scanner", SCANNERS)
def test_a_listener_that_never_answers_is_a_finding(scanner, tls_files):
    with socket.socket() as closed:
        closed.bind((LOCAL, 0))
        port = closed.getsockname()[1]
    assert findings(scanner, port, tls_files)[0].startswith("not scanned")


RENEGOTIATION_VERDICT = {"id": TESTSSL_RENEGOTIATION, "severity": "MEDIUM", "finding": "VULNERABLE, potential DoS threat"}
SCANNED = {"id": "TLS1_3", "severity": "OK", "finding": "offered with final"}


@pytest.mark.parametrize(("entries", "refused", "expected"), [
    # testssl.sh's renegotiation verdict stands unless our probe saw the renegotiation refused
    ([SCANNED, RENEGOTIATION_VERDICT], False, [f"{TESTSSL_RENEGOTIATION}: MEDIUM VULNERABLE, potential DoS threat"]),
    ([SCANNED, RENEGOTIATION_VERDICT], True, []),
    # ... and set aside only that one finding
    ([SCANNED, RENEGOTIATION_VERDICT, {"id": "TLS1", "severity": "LOW", "finding": "offered"}], True, ["TLS1: LOW offered"]),
    ([SCANNED, {"id": "cert_chain_of_trust", "severity": "CRITICAL", "finding": "failed"}], True,
     ["cert_chain_of_trust: CRITICAL failed"]),
    ([SCANNED, {"id": "secure_client_renego", "severity": "WARN", "finding": "client x509-based authentication"}], False, []),
    ([{"id": "scanProblem", "severity": "FATAL", "finding": "Can't connect"}], True, ["not scanned: Can't connect"]),
])
def test_testssl_verdicts(entries, refused, expected):
    assert judge_testssl(entries, lambda: refused) == expected
