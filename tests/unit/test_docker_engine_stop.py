"""The Docker engine's container steps: a broker that had to be killed waits out its ZooKeeper
session; a container that matches the plan is restarted only when its volume was mounted again or it
keeps exiting;
a port held by someone else is refused, one a removed container still holds gets time to come free."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest

from secure_kafka.build.plan import LABEL_ROLE, LABEL_SPEC_HASH, ContainerSpec, PortBinding, spec_hash
from secure_kafka.engines import docker_engine
from secure_kafka.errors import SecureKafkaError


class FakeApi:
    def __init__(self, role: str, exit_code: int):
        self.info = {"State": {"ExitCode": exit_code}, "Config": {"Labels": {LABEL_ROLE: role}}}
        self.stopped: list[tuple[str, int]] = []

    def stop(self, name, timeout):
        self.stopped.append((name, timeout))

    def inspect_container(self, name):
        return self.info


@pytest.mark.parametrize(
    ("role", "exit_code", "waits"),
    [
        ("broker", 143, False),  # SIGTERM handled: controlled shutdown closed the session
        ("broker", 0, False),
        ("broker", 137, True),  # SIGKILL after the timeout: the registration lingers
        ("zookeeper", 137, False),  # no broker registration to outlive it
    ],
)
def test_stop_waits_for_the_session_of_a_killed_broker_only(monkeypatch, role, exit_code, waits):
    slept: list[float] = []
    monkeypatch.setattr(docker_engine.time, "sleep", slept.append)
    api = FakeApi(role, exit_code)
    engine = docker_engine.DockerEngine(SimpleNamespace(api=api), project_root=None)
    engine.stop("sk-dev-kafka-0")
    assert api.stopped == [("sk-dev-kafka-0", docker_engine.STOP_TIMEOUT_S)]
    assert slept == ([docker_engine.ZOOKEEPER_SESSION_EXPIRY_S] if waits else [])


class ApplyApi:
    """A container that matches the plan and runs: what `up` finds after a volume was remounted."""

    def __init__(self, spec_hash: str, restarting: bool = False):
        self.info = {"State": {"Running": True, "Restarting": restarting, "ExitCode": 0},
                     "Config": {"Labels": {LABEL_ROLE: "broker", LABEL_SPEC_HASH: spec_hash}}}
        self.calls: list[str] = []

    def inspect_container(self, name):
        return self.info

    def stop(self, name, timeout):
        self.calls.append(f"stop {name}")

    def start(self, name):
        self.calls.append(f"start {name}")


@pytest.mark.parametrize(("restart", "restarting", "outcome", "calls"), [
    (False, False, "unchanged", []),
    (True, False, "restarted", ["stop sk-dev-kafka-0", "start sk-dev-kafka-0"]),  # it must mount its volume again
    # exiting at each start (a full volume): started now, not after the restart policy's delay
    (False, True, "restarted", ["stop sk-dev-kafka-0", "start sk-dev-kafka-0"]),
])
def test_a_matching_running_container_is_restarted_only_when_asked_or_looping(restart, restarting, outcome, calls):
    spec = ContainerSpec(name="sk-dev-kafka-0", node="kafka-0", role="broker", image="img", command=("x",), hostname="kafka-0")
    api = ApplyApi(spec_hash(spec), restarting)
    engine = docker_engine.DockerEngine(SimpleNamespace(api=api), project_root=None)
    assert engine.apply_container(None, spec, restart=restart) == outcome
    assert api.calls == calls


@pytest.fixture
def held_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener
    listener.close()


def _spec_publishing(port: int) -> ContainerSpec:
    return ContainerSpec(name="sk-dev-kafka-0", node="kafka-0", role="broker", image="img", command=("x",),
                         hostname="kafka-0", ports=(PortBinding("127.0.0.1", port, 9093),))


def test_a_port_held_by_someone_else_is_refused_at_once(held_port):
    port = held_port.getsockname()[1]
    with pytest.raises(SecureKafkaError, match=f"port 127.0.0.1:{port} for kafka-0 is taken: free it or change portBase"):
        docker_engine.check_ports_free(_spec_publishing(port))


def test_a_port_a_replaced_container_still_holds_gets_time_to_come_free(held_port):
    port = held_port.getsockname()[1]
    threading.Timer(1.0, held_port.close).start()
    docker_engine.check_ports_free(_spec_publishing(port), just_released=True)
