"""The outside scanner (sslyze, tests/outside_scanner.py) can fail: proven against an OpenSSL
server that offers what Mozilla's "modern" profile forbids, with a server that offers only what
it allows as the control. The integration suite runs it against every listener of prod."""

from __future__ import annotations

import socket

from outside_scanner import scan
from tls_endpoints import Endpoint

LOCAL = "127.0.0.1"


def findings(port: int, tls_files) -> list[str]:
    _, _, client, ca_file = tls_files
    return scan([Endpoint("server", "server", LOCAL, port, "localhost")], ca_file, {"server": (client.cert, client.key)})["server"]


def test_a_modern_server_has_no_finding(openssl_server, tls_files):
    assert findings(openssl_server("-tls1_3", "-groups", "X25519:P-256:P-384"), tls_files) == []


def test_a_weak_server_is_caught(openssl_server, tls_files):
    found = findings(openssl_server("-cipher", "ALL:!aNULL:@SECLEVEL=0", "-client_renegotiation",
                                    "-min_protocol", "TLSv1", "-max_protocol", "TLSv1.3"), tls_files)
    said = "\n".join(found)
    for expected in ("tls_1_0_cipher_suites", "tls_1_1_cipher_suites", "tls_versions", "ciphers",
                     "tls_curves", "client-initiated renegotiation accepted"):
        assert expected in said, found


def test_a_listener_that_never_answers_is_a_finding(tls_files):
    with socket.socket() as closed:
        closed.bind((LOCAL, 0))
        port = closed.getsockname()[1]
    assert findings(port, tls_files)[0].startswith("not scanned")
