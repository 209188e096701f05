"""Docker hosts on this one machine, for the multi-host tests (#16).

Each host is a network namespace with its own ``dockerd`` (own data root, exec root and
containerd), attached by a veth pair to a bridge this module makes, with its own address on
it. Its engine listens only there, on ``ENGINE_PORT``, with ``--tlsverify``: a client must
present a certificate of the hosts' CA, and there is no unix socket and no TCP socket without
TLS. Tests reach the hosts at those addresses and nowhere else, and everything (daemons,
their containers and mounts, namespaces, links, the bridge, the files) is removed when the
block ends, also on failure.

``nsenter --net`` rather than ``ip netns exec``: the latter also gives the daemon a fresh
``/sys`` without the cgroup mounts, and dockerd refuses to start ("Devices cgroup isn't
mounted").
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.tls import TLSConfig

from secure_kafka import pki
from secure_kafka.dockerclient import connect
from secure_kafka.testing import signals_deferred, sigterm_interrupts

ENGINE_PORT = 2376  # Docker's registered port for its TLS endpoint
API_VERSION = "1.41"  # Docker 20.10's, which Debian bookworm ships; later engines serve it too
# The suite's own addresses: 10.213.N.0/24, N chosen per run among those no link uses yet.
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
# Where the hosts' daemons keep their state: short paths (containerd's socket lives under the
# exec root, and a unix socket path may not exceed 107 bytes), on the machine's own disk
# (overlay2 cannot stack on an overlay).
STATE_ROOT = Path("/var/lib/secure-kafka-test-hosts")
DAEMON_START_S = 60
DAEMON_STOP_S = 30


@dataclass(frozen=True)
class DockerHost:
    """One test host: its namespace, its address on the suite's bridge, and the client
    certificate (``ca.crt``, ``client.crt``, ``client.key``) its engine accepts."""

    name: str
    address: str
    cert_dir: Path
    state_dir: Path

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"

    def tls(self, cert_dir: Path | None = None) -> TLSConfig:
        """Mutual TLS with the engine, with this host's client certificate or ``cert_dir``'s."""
        where = cert_dir or self.cert_dir
        return TLSConfig(client_cert=(str(where / "client.crt"), str(where / "client.key")),
                         ca_cert=str(where / "ca.crt"), verify=True)

    def client(self, cert_dir: Path | None = None) -> docker.DockerClient:
        # An explicit API version, so that no request goes out before trust_env is off: requests
        # would let $REQUESTS_CA_BUNDLE (set on this machine) replace the hosts' CA.
        client = docker.DockerClient(base_url=f"https://{self.address}:{ENGINE_PORT}", tls=self.tls(cert_dir),
                                     timeout=120, version=API_VERSION)
        client.api.trust_env = False
        return client


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextmanager
def _undone_on_failure(step) -> Iterator[None]:
    """A step's ``__exit__`` also when its ``__enter__`` fails half-way: an ExitStack only
    undoes what entered."""
    try:
        yield
    except BaseException:
        step.__exit__(None, None, None)
        raise


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of ``SUBNETS`` that no address on this machine is in yet."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], check=True, capture_output=True, text=True).stdout
    taken = {ipaddress.ip_interface(word).network for line in used.splitlines() for word in line.split()
             if "/" in word and word[0].isdigit()}
    for subnet in SUBNETS.subnets(new_prefix=24):
        if not any(subnet.overlaps(net) for net in taken):
            return subnet
    raise RuntimeError(f"every /24 of {SUBNETS} is in use on this machine")


class _Bridge:
    """The suite's bridge: the machine's side of every host link, at the subnet's first address."""

    def __init__(self, name: str, subnet: ipaddress.IPv4Network):
        self.name = name
        self.subnet = subnet
        self.gateway = str(subnet.network_address + 1)
        # Frames between two hosts cross this bridge, and with br_netfilter on (Docker turns it
        # on) they meet the machine's FORWARD chain, whose policy the machine's dockerd set to DROP.
        self.forward_rule = ("FORWARD", "-i", name, "-o", name, "-j", "ACCEPT")

    def __enter__(self) -> _Bridge:
        with _undone_on_failure(self):
            _run("ip", "link", "add", self.name, "type", "bridge")
            _run("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.name)
            _run("ip", "link", "set", self.name, "up")
            _run("iptables", "-I", *self.forward_rule)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["iptables", "-D", *self.forward_rule], capture_output=True)
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


class _Namespace:
    """A network namespace linked to the bridge, with ``address`` and a default route through it."""

    def __init__(self, name: str, bridge: _Bridge, address: str):
        self.name, self.bridge, self.address = name, bridge, address
        self.outside = f"{name}-o"  # the link's end on the machine's side (15 characters at most)

    def __enter__(self) -> _Namespace:
        with _undone_on_failure(self):
            _run("ip", "netns", "add", self.name)
            _run("ip", "link", "add", self.outside, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            _run("ip", "link", "set", self.outside, "master", self.bridge.name, "up")
            inside = ("ip", "netns", "exec", self.name)
            _run(*inside, "ip", "addr", "add", f"{self.address}/{self.bridge.subnet.prefixlen}", "dev", "eth0")
            _run(*inside, "ip", "link", "set", "eth0", "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            _run(*inside, "ip", "route", "add", "default", "via", self.bridge.gateway)
        return self

    def __exit__(self, *exc) -> None:
        # Deleting the namespace deletes its end of the link, and with it the machine's end; the
        # second call is for a link made while its namespace end never got there.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True)


class _Daemon:
    """``dockerd`` inside a namespace, listening only on its address, with ``--tlsverify``."""

    def __init__(self, namespace: _Namespace, state_dir: Path, server_certs: pki.PemPaths):
        self.namespace, self.state_dir, self.certs = namespace, state_dir, server_certs
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> _Daemon:
        log = (self.state_dir / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.namespace.name}", "dockerd",
             "--data-root", str(self.state_dir / "data"), "--exec-root", str(self.state_dir / "exec"),
             "--pidfile", str(self.state_dir / "dockerd.pid"), "--cgroup-parent", self.namespace.name,
             "--bridge", "none",  # no default bridge: the environment makes its own network
             "-H", f"tcp://{self.namespace.address}:{ENGINE_PORT}", "--tlsverify",
             "--tlscacert", str(self.certs.ca), "--tlscert", str(self.certs.cert), "--tlskey", str(self.certs.key)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        # dockerd stops its containers and its containerd on SIGTERM.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(DAEMON_STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        subprocess.run(["pkill", "-KILL", "-f", str(self.state_dir)], capture_output=True)  # shims, if any outlived it
        mounts = [point for point in (line.split()[1] for line in Path("/proc/mounts").read_text().splitlines())
                  if point.startswith(str(self.state_dir))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)


def _wait_answering(host: DockerHost, daemon: _Daemon) -> None:
    deadline = time.monotonic() + DAEMON_START_S
    while True:
        try:
            host.client().ping()
            return
        except (docker.errors.DockerException, requests.RequestException):  # not listening yet
            if daemon.process.poll() is not None or time.monotonic() > deadline:
                log = (host.state_dir / "dockerd.log").read_text()[-2000:]
                raise RuntimeError(f"dockerd of test host {host.name} did not answer at {host.url}: {log}") from None
            time.sleep(0.2)


def load_images(hosts: Sequence[DockerHost], images: Sequence[str]) -> None:
    """Copies images from the machine's engine onto every host (no host can pull)."""
    local = connect()
    for image in images:
        archive = b"".join(local.images.get(image).save(named=True))
        for host in hosts:
            host.client().images.load(archive)


@contextmanager
def _closed_to_the_end(stack: ExitStack) -> Iterator[ExitStack]:
    try:
        yield stack
    finally:
        with signals_deferred(print):
            stack.close()


@contextmanager
def docker_hosts(count: int, images: Sequence[str] = ()) -> Iterator[list[DockerHost]]:
    """``count`` test hosts, each with ``images`` loaded; all removed when the block ends."""
    run = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    state = STATE_ROOT / run
    # Torn down on SIGTERM too (a runner's, `timeout`'s), and to its end.
    with sigterm_interrupts(), _closed_to_the_end(ExitStack()) as stack:
        stack.callback(shutil.rmtree, state, ignore_errors=True)
        ca = pki.CA.create(f"test-hosts-{run}", "ec-p256", validity_days=2, env=f"test-hosts-{run}")
        client = ca.issue_cert("suite", "client", validity_days=2)
        bridge = stack.enter_context(_Bridge(f"skh{run}", subnet))
        hosts = []
        for index in range(count):
            name = f"skh{run}{index}"
            address = str(subnet.network_address + 11 + index)
            host = DockerHost(name, address, state / f"{index}" / "client", state / f"{index}")
            host.state_dir.mkdir(parents=True)
            client.write_pem(host.cert_dir)
            server = ca.issue_cert(name, "engine", sans=[address], validity_days=2, server=True, client=False)
            namespace = stack.enter_context(_Namespace(name, bridge, address))
            daemon = stack.enter_context(_Daemon(namespace, host.state_dir, server.write_pem(host.state_dir / "server", "engine")))
            hosts.append((host, daemon))
        for host, daemon in hosts:
            _wait_answering(host, daemon)
        load_images([host for host, _ in hosts], images)
        yield [host for host, _ in hosts]
