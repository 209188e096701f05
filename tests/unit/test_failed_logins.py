"""Failed logins read back from a node's audit file: Kafka's network layer's lines, as each
mode's image writes them, parsed into who (the user a SCRAM client claimed), where (the
listener, by the local port) and from where (the client's address as the node saw it)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from secure_kafka.ops import audit

LISTENERS = {9091: "INTERNAL", 19001: "SASL_SSL_EXT", 19002: "SSL_EXT"}
SCRAM = ("Authentication failed: invalid credentials for user mallory with SASL mechanism SCRAM-SHA-512")


def line(reason: str, context: str = "[SocketServer listenerType=ZK_BROKER, nodeId=0] ", port: int = 19001,
         client: str = "/172.21.0.1", re_auth: str = "", suffix: str = "-22") -> str:
    return (f"[2026-12-06 01:38:20,369] INFO {context}Failed {re_auth}authentication with {client} "
            f"(channelId=172.21.0.3:{port}-172.21.0.1:33894{suffix}) ({reason})")


@pytest.mark.parametrize(("text", "principal", "listener", "host"), [
    (line(SCRAM), "User:mallory", "SASL_SSL_EXT", "172.21.0.1"),
    # Kafka 4.x's broker (its channel ids name the processor too), and a failed re-authentication (KIP-368)
    (line(SCRAM, "[SocketServer listenerType=BROKER, nodeId=1] ", suffix="-3-14"), "User:mallory", "SASL_SSL_EXT",
     "172.21.0.1"),
    (line(SCRAM, re_auth="re-"), "User:mallory", "SASL_SSL_EXT", "172.21.0.1"),
    # no logging context at all
    (line(SCRAM, context=""), "User:mallory", "SASL_SSL_EXT", "172.21.0.1"),
    (line("SSL handshake failed", port=19002), None, "SSL_EXT", "172.21.0.1"),
    (line("SSL handshake failed", port=9091, client="kafka-1.sk-net/172.21.0.4"), None, "INTERNAL", "172.21.0.4"),
    (line("SSL handshake failed", port=9999), None, "port 9999", "172.21.0.1"),
    # a hostile name arrives escaped by the broker's SCRAM provider: one line, one principal
    (line(SCRAM.replace("mallory", r"evil\x0aINFO\x20Principal\x20\x3d\x20User\x3aadmin")),
     r"User:evil\x0aINFO\x20Principal\x20\x3d\x20User\x3aadmin", "SASL_SSL_EXT", "172.21.0.1"),
])
def test_a_failed_login_is_parsed(text, principal, listener, host):
    [login] = audit.parse_failed_logins(text, "kafka-0", LISTENERS)
    assert (login.principal, login.listener, login.host, login.node) == (principal, listener, host, "kafka-0")
    assert login.time == datetime(2026, 12, 6, 1, 38, 20, 369000, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", [
    # a decision, and the authorizer's other lines
    "[2026-11-29 06:15:35,047] INFO Principal = User:alice is Denied Operation = Describe from host = 172.23.0.1 "
    "on resource = Topic:LITERAL:a for request = Metadata with resourceRefCount = 1",
    # the node failing to log in to a peer (client side: its channel id is the peer's node id)
    "[2026-12-06 01:38:20,369] INFO [Controller id=0] Failed authentication with kafka-1/172.21.0.4 (channelId=1) "
    "(SSL handshake failed)",
    "garbage", "",
])
def test_other_lines_are_not_failed_logins(text):
    assert audit.parse_failed_logins(text, "kafka-0", LISTENERS) == []


def test_text_and_json_say_who_where_and_why():
    [scram, tls] = audit.parse_failed_logins("\n".join([line(SCRAM), line("SSL handshake failed", port=19002)]),
                                             "kafka-0", LISTENERS)
    assert str(scram) == ("2026-12-06 01:38:20 kafka-0 FAILED LOGIN User:mallory on SASL_SSL_EXT from 172.21.0.1: "
                          "SCRAM-SHA-512 credentials refused")
    assert str(tls).endswith("FAILED LOGIN (no principal) on SSL_EXT from 172.21.0.1: SSL handshake failed")
    assert tls.to_json() == {"time": "2026-12-06T01:38:20.369000Z", "node": "kafka-0", "principal": None,
                             "listener": "SSL_EXT", "host": "172.21.0.1", "reason": "SSL handshake failed"}
