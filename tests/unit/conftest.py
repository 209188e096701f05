"""Unit-test setup: Pulumi's mocks are in place before any test imports the Pulumi program.

The program (``infra/``) is tested under
``pulumi.runtime.set_mocks``: no Pulumi CLI, no engine, no docker plugin.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pulumi
import pulumi_mocks as mocks  # tests/pulumi_mocks.py
import pytest

from secure_kafka.pki import CA
from secure_kafka.pki.secretstore import SecretStore

LOCAL = "127.0.0.1"

pulumi.runtime.set_mocks(mocks.RecordingMocks(), project=mocks.PROJECT, stack="dev", preview=False)


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    """An empty secret store of a test's own (render and planner tests)."""
    return SecretStore(tmp_path / "secrets.json")


@pytest.fixture
def tls_files(tmp_path):
    # As an environment's leaves are, for outside scanners' sake: months of validity and a CRL
    # distribution point (testssl.sh rates "expires < 30 days" and "no CRL URI" as problems).
    ca = CA.create("reneg-ca", "ec-p256", 400, env="reneg")
    server = ca.issue_cert("localhost", kind="broker", sans=["localhost"], validity_days=90,
                           key_algorithm="ec-p256", server=True, client=False,
                           crl_uri="file:///etc/kafka/tls/reneg-ca.crl")
    client = ca.issue_cert("admin", kind="client", sans=[], validity_days=7, key_algorithm="ec-p256",
                           server=False, client=True)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    return ca, server.write_pem(tmp_path / "server", "server"), client.write_pem(tmp_path / "client", "client"), tmp_path / "ca.crt"


@pytest.fixture
def openssl_server(tls_files):
    """``start(*flags) -> port``: ``openssl s_server`` with a client certificate required, ``flags``
    choosing the rest (``-tls1_2``, ``-client_renegotiation``, ...): a server that a probe or a
    scanner must catch, or pass."""
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
