"""The test hosts of the multi-host tests (tests/docker_hosts.py) are what #16 needs them to
be: separate Docker engines at their own addresses, reachable only by a client holding a
certificate of the hosts' CA, able to reach each other's published ports, and gone without
a trace afterwards."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import requests
from docker_hosts import ENGINE_PORT, STATE_ROOT, DockerHost, docker_hosts

from secure_kafka import pki
from secure_kafka.build.image import BASE_IMAGE

SERVED = "served-by-the-first-host"
# A one-shot TCP server in the base image (perl-base is in every Debian): says SERVED, exits.
SERVE_ONCE = ("perl", "-MIO::Socket::INET", "-e",
              f'$s=IO::Socket::INET->new(LocalPort=>7000,Listen=>1,ReuseAddr=>1) or die; $c=$s->accept; print $c "{SERVED}\\n"')


@pytest.fixture(scope="module")
def hosts(docker_client):
    with docker_hosts(2, images=[BASE_IMAGE]) as made:
        yield made


def plain_http_version(host: DockerHost) -> bytes:
    """What the engine's port answers to an API request sent without TLS."""
    with socket.create_connection((host.address, ENGINE_PORT), timeout=5) as conn:
        conn.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        return conn.recv(4096)


def tls_version_request(host: DockerHost, client_dir: Path | None) -> None:
    """An API request over TLS that verifies the engine, with ``client_dir``'s certificate or none."""
    context = ssl.create_default_context(cafile=str(host.cert_dir / "ca.crt"))
    if client_dir:
        context.load_cert_chain(str(client_dir / "client.crt"), str(client_dir / "client.key"))
    with socket.create_connection((host.address, ENGINE_PORT), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host.address) as conn:
            conn.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = conn.recv(4096)
            if not answer:
                raise ssl.SSLError("the engine closed the connection")


def test_each_engine_answers_only_a_client_with_a_certificate_of_the_hosts_ca(hosts, tmp_path):
    for host in hosts:
        assert host.client().version()["ApiVersion"]  # the control: a mutually authenticated client
        # No API without TLS: the engine answers a plain request with an error, never its version.
        answer = plain_http_version(host)
        assert b"ApiVersion" not in answer and b"400" in answer.split(b"\r\n")[0], answer[:200]
        # TLS without a client certificate: refused in the handshake (TLS 1.3: at the first read).
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls_version_request(host, None)
        # A certificate of another CA: refused too.
        stranger = pki.CA.create("stranger", "ec-p256", 1, "elsewhere").issue_cert("suite", "client", validity_days=1)
        stranger.write_pem(tmp_path / "stranger")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls_version_request(host, tmp_path / "stranger")
        with pytest.raises(requests.RequestException):
            host.client(tmp_path / "stranger").version()
        # The engine listens on its address only: not on Docker's unencrypted port.
        with pytest.raises(OSError):
            socket.create_connection((host.address, 2375), timeout=3).close()


def test_hosts_are_separate_engines_and_reach_each_others_published_ports(hosts):
    first, second = hosts
    assert first.client().info()["DockerRootDir"] != second.client().info()["DockerRootDir"]
    for host in hosts:  # the engines have no default bridge: each container joins a network made for it
        host.client().networks.create("reach")
    server = first.client().containers.run(BASE_IMAGE, list(SERVE_ONCE), detach=True, network="reach",
                                           ports={"7000/tcp": (first.address, 7000)})
    try:
        assert not second.client().containers.list(all=True, filters={"id": server.id})
        reply = second.client().containers.run(
            BASE_IMAGE, ["bash", "-c", f"for i in $(seq 50); do timeout 2 cat </dev/tcp/{first.address}/7000 && exit; sleep 0.2; done; exit 1"],
            network="reach", remove=True)
        assert reply.decode().strip() == SERVED
    finally:
        server.remove(force=True)
        for host in hosts:
            host.client().networks.get("reach").remove()


def test_the_hosts_leave_nothing_behind():
    with docker_hosts(1) as (host,):
        state, name = host.state_dir, host.name
        assert host.client().ping()
    assert not state.exists() and not any(STATE_ROOT.glob(f"{state.parent.name}*"))
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert name[:9] not in links, links
    assert str(state) not in Path("/proc/mounts").read_text()
    assert subprocess.run(["pgrep", "-f", str(state)], capture_output=True).returncode == 1
    # Not probed by connecting: with the bridge gone, its addresses would route off the machine.
    assert name[:9] not in subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
