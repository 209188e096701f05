"""Low-level security probes: raw TCP, TLS handshakes and Kafka's first request.

Each probe reports what it observed rather than asserting, so tests (and later
``secure-kafka verify``) decide what is expected. A refusal probe is only meaningful if it
can succeed: callers prove each one against a deliberately weak peer too.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

# ApiVersions v0 request: api_key 18, version 0, correlation id, client id "probe".
_CORRELATION_ID = 0x5EC0AF
_API_VERSIONS_REQUEST = struct.pack(">hhih", 18, 0, _CORRELATION_ID, 5) + b"probe"


def kafka_answers_plaintext(host: str, port: int, timeout: float = 5.0) -> bool:
    """True if a Kafka broker answers an unencrypted ApiVersions request on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(_API_VERSIONS_REQUEST)) + _API_VERSIONS_REQUEST)
            header = _recv_exact(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, correlation_id = struct.unpack(">ii", header)
    return correlation_id == _CORRELATION_ID


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@dataclass(frozen=True)
class HandshakeResult:
    ok: bool
    detail: str  # negotiated version and peer subject, or the error
    peer_serial: int | None = None


def tls_handshake(
    host: str,
    port: int,
    ca_file: Path | None,
    server_hostname: str | None = None,
    client_cert: tuple[Path, Path] | None = None,
    min_version: ssl.TLSVersion | None = None,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    speak_kafka: bool = False,
    timeout: float = 5.0,
) -> HandshakeResult:
    """A TLS handshake with full control of what the client offers.

    To probe for legacy protocols the client's own floor must be lowered (``min_version``
    and ``@SECLEVEL=0`` ciphers): Debian's OpenSSL refuses TLS < 1.2 by default, which would
    make a refusal test pass against any server.

    With mTLS a TLS 1.3 server rejects a bad client certificate only after the handshake:
    ``speak_kafka`` sends an ApiVersions request over the session and requires an answer,
    which surfaces that alert (a Kafka broker answers ApiVersions before authentication).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca_file))
        ctx.check_hostname = server_hostname is not None
    if client_cert:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    if ciphers:
        ctx.set_ciphers(ciphers)
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_hostname or host) as tls:
                version = tls.version()
                der = tls.getpeercert(binary_form=True)
                serial = _serial(der) if der else None
                if speak_kafka:
                    _require_kafka_answer(tls)
                return HandshakeResult(True, f"{version}", serial)
    except (ssl.SSLError, OSError) as exc:
        return HandshakeResult(False, f"{exc.__class__.__name__}: {exc}")


def _require_kafka_answer(tls: ssl.SSLSocket) -> None:
    """Sends a Kafka ApiVersions request and reads the answer; raises on a TLS alert."""
    tls.sendall(struct.pack(">i", len(_API_VERSIONS_REQUEST)) + _API_VERSIONS_REQUEST)
    header = _recv_exact(tls, 8)
    if header is None:
        raise ssl.SSLError("connection closed by the server after the handshake")


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number
