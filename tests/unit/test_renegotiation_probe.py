"""The renegotiation probe can fail: proven against OpenSSL servers that allow and refuse it."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from secure_kafka.pki import CA
from secure_kafka.verify import probes

LOCAL = "127.0.0.1"


@pytest.fixture
def tls_files(tmp_path):
    ca = CA.create("reneg-ca", "ec-p256", 30, env="reneg")
    server = ca.issue_cert("localhost", kind="broker", sans=["localhost"], validity_days=7,
                           key_algorithm="ec-p256", server=True, client=False)
    client = ca.issue_cert("admin", kind="client", sans=[], validity_days=7, key_algorithm="ec-p256",
                           server=False, client=True)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    return ca, server.write_pem(tmp_path / "server", "server"), client.write_pem(tmp_path / "client", "client"), tmp_path / "ca.crt"


@pytest.fixture
def openssl_server(tls_files):
    """``start(*flags) -> port``: ``openssl s_server`` with TLS 1.2 and a client certificate required."""
    _, server, _, ca_file = tls_files
    started: list[subprocess.Popen] = []

    def start(*flags: str) -> int:
        with socket.socket() as probe:
            probe.bind((LOCAL, 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen(["openssl", "s_server", "-accept", f"{LOCAL}:{port}", "-cert", str(server.cert),
                                 "-key", str(server.key), "-CAfile", str(ca_file), "-Verify", "1", *flags],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((LOCAL, port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise AssertionError("openssl s_server did not start")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


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
