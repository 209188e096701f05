"""The renegotiation probe can fail: proven against OpenSSL servers that allow and refuse it."""

from __future__ import annotations

import socket

from secure_kafka.verify import probes

LOCAL = "127.0.0.1"


def renegotiate(port: int, tls_files) -> probes.RenegotiationResult:
    _, _, client, ca_file = tls_files
    return probes.tls12_renegotiation(LOCAL, port, "localhost", (client.cert, client.key), ca_file)


def test_a_server_that_allows_client_renegotiation_is_caught(openssl_server, tls_files):
    found = renegotiate(openssl_server("-tls1_2", "-client_renegotiation"), tls_files)
    assert found.answered and found.handshake and found.renegotiated, found


def test_a_server_that_refuses_it_passes(openssl_server, tls_files):
    found = renegotiate(openssl_server("-tls1_2"), tls_files)  # OpenSSL 3 refuses client renegotiation by default
    assert found.answered and found.handshake and not found.renegotiated, found
    assert "no renegotiation" in found.detail, found


def test_a_tls13_only_server_has_nothing_to_renegotiate(openssl_server, tls_files):
    found = renegotiate(openssl_server("-tls1_3"), tls_files)
    assert found.answered and not found.handshake and not found.renegotiated, found


def test_silence_is_not_a_refusal(tls_files):
    with socket.socket() as closed:
        closed.bind((LOCAL, 0))
        port = closed.getsockname()[1]
    found = renegotiate(port, tls_files)
    assert not found.answered and not found.renegotiated, found
