"""The four-letter-word probe can fail: a TLS server that answers words is caught, ZooKeeper's
own refusal passes, and silence is no refusal."""

from __future__ import annotations

import socket
import ssl

import pytest
from tls_server import serve_tls

from secure_kafka.pki import CA
from secure_kafka.verify import probes
from secure_kafka.verify.zookeeper import NOT_WHITELISTED, four_letter_verdict

LOCAL = "127.0.0.1"


@pytest.fixture
def server(tmp_path):
    """``start(answer) -> port``: a TLS server requiring a client certificate that answers every
    word with ``answer(word)`` and closes, as ZooKeeper's Netty port does."""
    ca = CA.create("zk-ca", "ec-p256", 30, env="zk")
    served = ca.issue_cert("zk-0", kind="zookeeper", sans=["zk-0"], validity_days=7, server=True, client=True)
    client = ca.issue_cert("admin", kind="client", validity_days=7)
    server_pem, client_pem = served.write_pem(tmp_path / "s", "server"), client.write_pem(tmp_path / "c", "client")
    listeners: list[socket.socket] = []

    def start(answer) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(server_pem.cert), str(server_pem.key))
        ctx.load_verify_locations(str(server_pem.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        listener = serve_tls(ctx, lambda tls: tls.sendall(answer(tls.recv(4).decode()).encode()))
        listeners.append(listener)
        return listener.getsockname()[1]

    yield start, (client_pem.cert, client_pem.key)
    for listener in listeners:
        listener.close()


def test_a_server_that_answers_is_caught(server):
    start, cert = server
    port = start(lambda word: "imok" if word == "ruok" else f"{word} output\n")
    assert four_letter_verdict("ruok", probes.zookeeper_four_letter_word(LOCAL, port, "ruok", cert)) == "answered"
    assert four_letter_verdict("conf", probes.zookeeper_four_letter_word(LOCAL, port, "conf", cert)) == "answered"


def test_zookeepers_refusal_passes(server):
    start, cert = server
    port = start(lambda word: f"{word} {NOT_WHITELISTED}.")
    assert four_letter_verdict("envi", probes.zookeeper_four_letter_word(LOCAL, port, "envi", cert)) == "refused"


def test_silence_or_no_connection_is_no_refusal(server):
    start, cert = server
    port = start(lambda word: "")
    assert four_letter_verdict("stat", probes.zookeeper_four_letter_word(LOCAL, port, "stat", cert)) == "silent"
    with socket.socket() as closed:
        closed.bind((LOCAL, 0))
        free = closed.getsockname()[1]
    assert probes.zookeeper_four_letter_word(LOCAL, free, "stat", cert) is None
