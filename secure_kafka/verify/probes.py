"""Low-level security probes: raw TCP, TLS handshakes and Kafka's first request.

Each probe reports what it observed rather than asserting, so tests (and later
``secure-kafka verify``) decide what is expected. A refusal probe is only meaningful if it
can succeed: callers prove each one against a deliberately weak peer too.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..model.topology import CONTAINER_UID

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
    detail: str  # negotiated version, or the error
    peer_serial: int | None = None
    cipher: str | None = None  # negotiated suite (OpenSSL name)
    peer_cert: bytes | None = None  # DER of the certificate the server presented
    # False when nothing answered (connection refused, or silence until the timeout): not a
    # refusal by a live server, so a refusal probe must not count it as one.
    answered: bool = True


# What a client offers to find out whether a server still speaks a legacy protocol: the
# client's own floor lowered (explicit min/max version, @SECLEVEL=0 lets OpenSSL use the
# SHA-1/MD5 handshakes TLS < 1.2 needs), so a refusal can only come from the server.
def legacy_offer(version: ssl.TLSVersion) -> dict:
    return {"min_version": version, "max_version": version, "ciphers": "ALL:@SECLEVEL=0"}


# TLS 1.2 suites without forward secrecy (RSA key exchange) or with CBC-mode MACs; a server
# that negotiates any of them with a client offering nothing else accepts a weak cipher.
WEAK_TLS12_CIPHERS = ("AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256:DES-CBC3-SHA:"
                      "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
                      "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:@SECLEVEL=0")


def weak_cipher_offer() -> dict:
    return {"min_version": ssl.TLSVersion.TLSv1_2, "max_version": ssl.TLSVersion.TLSv1_2,
            "ciphers": WEAK_TLS12_CIPHERS}


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
                cipher = tls.cipher()
                der = tls.getpeercert(binary_form=True)
                serial = _serial(der) if der else None
                if speak_kafka:
                    _require_kafka_answer(tls)
                return HandshakeResult(True, f"{version}", serial, cipher[0] if cipher else None, der)
    except (ConnectionRefusedError, TimeoutError) as exc:
        return HandshakeResult(False, f"no answer: {exc.__class__.__name__}: {exc}", answered=False)
    except (ssl.SSLError, OSError) as exc:
        return HandshakeResult(False, f"{exc.__class__.__name__}: {exc}")


@dataclass(frozen=True)
class RenegotiationResult:
    answered: bool  # something answered on the port (else nothing can be concluded)
    handshake: bool  # a TLS 1.2 session was established (else there is nothing to renegotiate)
    renegotiated: bool  # the server answered a client-initiated renegotiation with a ServerHello
    detail: str


# What `openssl s_client -state` prints: its own state changes, then, after the `R` command,
# RENEGOTIATING and the states of the second handshake.
_RENEGOTIATING = "RENEGOTIATING"
_SERVER_HELLO = "read server hello"
_FIRST_HANDSHAKE_DONE = ("SSL negotiation finished successfully", "read finished")
_FAILED = ("alert", "error", "errno", "write:fatal")


def tls12_renegotiation(host: str, port: int, server_hostname: str, client_cert: tuple[Path, Path],
                        ca_file: Path, timeout: float = 10.0) -> RenegotiationResult:
    """A TLS 1.2 session, then a client-initiated renegotiation (``openssl s_client``'s ``R``).

    Python's ``ssl`` cannot renegotiate, so OpenSSL's own client does it; the key and
    certificate are passed as paths, never their content. Accepted when the server starts
    the second handshake (answers with a ServerHello), refused when it alerts or closes.
    """
    if shutil.which("openssl") is None:
        return RenegotiationResult(False, False, False, "openssl is not installed: `apt-get install openssl`")
    argv = ["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_2", "-state", "-servername", server_hostname,
            "-cert", str(client_cert[0]), "-key", str(client_cert[1]), "-CAfile", str(ca_file)]
    lines: list[str] = []
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        deadline = time.monotonic() + timeout
        asked = False
        while time.monotonic() < deadline and proc.poll() is None:
            text = "\n".join(lines)
            if not asked and any(done in text for done in _FIRST_HANDSHAKE_DONE):
                proc.stdin.write("R\n")
                proc.stdin.flush()
                asked = True
            after = text.split(_RENEGOTIATING, 1)[1] if _RENEGOTIATING in text else ""
            if _SERVER_HELLO in after or any(word in after for word in _FAILED):
                break
            time.sleep(0.05)
        proc.kill()
        reader.join(timeout=2)
    text = "\n".join(lines)
    if _RENEGOTIATING not in text:
        if _SERVER_HELLO not in text:
            answered = "connect:errno" not in text and any(word in text for word in _FAILED)  # errno: no peer
            return RenegotiationResult(answered, False, False, "no TLS 1.2 session: " + _last_error(text))
        return RenegotiationResult(True, True, False, "renegotiation not attempted: " + _last_error(text))
    after = text.split(_RENEGOTIATING, 1)[1]
    if _SERVER_HELLO in after:
        return RenegotiationResult(True, True, True, "renegotiated (the server sent a new ServerHello)")
    return RenegotiationResult(True, True, False, "refused: " + _last_error(after))


def _last_error(text: str) -> str:
    failures = [line.strip() for line in text.splitlines() if any(word in line for word in _FAILED)]
    return (failures[0] if failures else (text.strip().splitlines() or ["no output"])[-1])[:160]


def zookeeper_four_letter_word(host: str, port: int, word: str, client_cert: tuple[Path, Path],
                               timeout: float = 5.0) -> str | None:
    """ZooKeeper's answer to a four-letter word on its TLS client port, or None when nothing
    answered (no connection, no handshake, or the connection closed without a word).

    ZooKeeper answers a word before any authentication, to whoever completes TLS: what it
    answers is what any holder of an environment certificate learns.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # what the server says is the question, not who it is
    ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
            tls.sendall(word.encode())
            answer = b""
            while len(answer) < 65536 and (chunk := tls.recv(4096)):
                answer += chunk
    except (ssl.SSLError, OSError):
        return None
    return answer.decode(errors="replace") or None


def _require_kafka_answer(tls: ssl.SSLSocket) -> None:
    """Sends a Kafka ApiVersions request and reads the answer; raises on a TLS alert."""
    tls.sendall(struct.pack(">i", len(_API_VERSIONS_REQUEST)) + _API_VERSIONS_REQUEST)
    header = _recv_exact(tls, 8)
    if header is None:
        raise ssl.SSLError("connection closed by the server after the handshake")


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def zookeeper_shell(
    image: str,
    network: str,
    server: str,
    tls_dir: Path,
    store_password: str,
    work_dir: Path,
    *command: str,
    tls: bool = True,
    sasl_password: str | None = None,
    sasl_user: str = "kafka",
    tls_properties: dict[str, str] | None = None,
    timeout_s: int = 40,
) -> str:
    """ZooKeeper's own shell in a one-off container on ``network``: its stdout and stderr.

    ``tls_dir`` (mounted read-only) holds ``keystore.p12``/``truststore.p12`` opened by
    ``store_password`` (a broker's: a certificate ZooKeeper accepts, so that a refusal is
    about SASL alone). With ``sasl_password`` the shell logs in as ``sasl_user`` (DIGEST-MD5);
    without, it connects anonymously. ``work_dir`` (owned by the container user, 0700) receives the
    client configuration; the caller removes it. ``tls_properties`` (protocol, enabled
    protocols, cipher suites) must match a TLS 1.3-only ZooKeeper: its client defaults to TLS 1.2
    and names no TLS 1.3 suite.
    """
    lines = [f"zookeeper.sasl.client={'true' if sasl_password is not None else 'false'}"]
    if tls:
        lines += [
            "zookeeper.client.secure=true",
            "zookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
            "zookeeper.ssl.keyStore.location=/etc/kafka/tls/keystore.p12",
            f"zookeeper.ssl.keyStore.password={store_password}",
            "zookeeper.ssl.keyStore.type=PKCS12",
            "zookeeper.ssl.trustStore.location=/etc/kafka/tls/truststore.p12",
            f"zookeeper.ssl.trustStore.password={store_password}",
            "zookeeper.ssl.trustStore.type=PKCS12",
            *(f"{key}={value}" for key, value in (tls_properties or {}).items()),
        ]
    _write_private(work_dir / "client.properties", "\n".join(lines) + "\n")
    jvm = "-Xmx128m"
    if sasl_password is not None:
        _write_private(work_dir / "jaas.conf", "Client { org.apache.zookeeper.server.auth.DigestLoginModule required "
                                               f'username="{sasl_user}" password="{sasl_password}"; }};\n')
        jvm += " -Djava.security.auth.login.config=/probe/jaas.conf"
    hand_to_container_user(work_dir)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", network, *ONE_OFF_HARDENING, "-e", f"JVM_OPTS={jvm}",
         "-v", f"{work_dir}:/probe:ro", "-v", f"{tls_dir}:/etc/kafka/tls:ro", image,
         "timeout", str(timeout_s), "zookeeper-shell", "-server", server,
         "-client-configuration", "/probe/client.properties", *command],
        capture_output=True, text=True, timeout=timeout_s + 60,
    )
    return proc.stdout + proc.stderr


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# How every one-off container of the image runs (probes, Kafka's tools): as the image's user,
# with no capabilities and no way to gain privileges.
ONE_OFF_HARDENING = ("--user", f"{CONTAINER_UID}:{CONTAINER_UID}", "--cap-drop", "ALL",
                     "--security-opt", "no-new-privileges:true")


def hand_to_container_user(directory: Path) -> None:
    """Gives ``directory`` and its files to the image's user (0700/0600): a one-off container reads them."""
    for path in (directory, *directory.iterdir()):
        if os.geteuid() == 0:
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
