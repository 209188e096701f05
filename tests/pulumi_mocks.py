"""Running the Pulumi program under Pulumi's own mocks (``pulumi.runtime.set_mocks``).

The unit tests run the program this way (the integration suite also runs it under the real
engine, tests/integration/test_pulumi_up.py): every resource registration is recorded as the engine
would receive it — type, name, parent, ``depends_on`` URNs, inputs, whether an input is
secret — and the stack's outputs with their secretness.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings

from secure_kafka.build.plan import NANOS

PROJECT = "secure-kafka"
DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


class Registration(NamedTuple):
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]  # URNs of explicit and implicit dependencies
    inputs: dict[str, Any]  # secrets unwrapped
    has_secret: bool  # whether any input was a secret


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs as outputs and fills in what a real provider would add."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = "sha256:" + hashlib.sha256(args.inputs["name"].encode()).hexdigest()
        if args.typ == DYNAMIC_TYPE:
            outputs.update(scram_users_created=["admin"], round_trip_s=0.25)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs, has_secret = rpc.deserialize_properties_unwrap_secrets(request.object)
            self.registrations.append(Registration(
                request.type, request.name, response.urn, request.parent, list(request.dependencies), inputs, has_secret,
            ))
        return response

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


def stack_file_config(path: Path) -> dict[str, str]:
    """A stack file's config as Pulumi hands it to a program: strings, other values as JSON."""
    document = yaml.safe_load(path.read_text()) or {}
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in (document.get("config") or {}).items()}


def run(body: Callable[[], Any], *, stack: str, config: dict[str, str], preview: bool = False) -> tuple[RecordingMonitor, Any]:
    """Runs ``body`` as a Pulumi program under mocks; returns the monitor and ``body``'s resolved result.

    ``body`` may return outputs (resolved before this returns). Each run starts from a
    fresh root stack, config and monitor.
    """
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(config)
    monitor = RecordingMonitor(RecordingMocks())
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        return pulumi.Output.from_input(body()).apply(lambda value: result.__setitem__("value", value))

    program()
    return monitor, result.get("value")


async def stack_outputs() -> dict[str, tuple[Any, bool]]:
    """The root stack's exported outputs: ``{name: (value, is_secret)}``."""
    stack = runtime_settings.get_root_resource()
    resolved = {}
    for name, value in stack.outputs.items():  # type: ignore[union-attr]
        output = pulumi.Output.from_input(value)
        resolved[name] = (await output.future(), await output.is_secret())
    return resolved


# --- parity: what Docker was asked for, from either engine ---------------------------------

MIB = 1024 * 1024


def _seconds(duration: str) -> int:
    if not duration.endswith("s"):
        raise ValueError(f"unexpected duration {duration!r}")
    return int(float(duration[:-1]) * NANOS)


def docker_view_of_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A ``docker.Container``'s recorded inputs in the shape of ``docker inspect``'s answer."""
    hc = inputs.get("healthcheck")
    return {
        "name": inputs["name"],
        "image": inputs["image"],
        "hostname": inputs["hostname"],
        "command": list(inputs["command"]),
        "env": sorted(inputs.get("envs") or []),
        "user": inputs["user"],
        "labels": {label["label"]: label["value"] for label in inputs.get("labels") or []},
        "mounts": sorted((m["type"], m["source"], m["target"], bool(m.get("readOnly"))) for m in inputs.get("mounts") or []),
        "tmpfs": dict(inputs.get("tmpfs") or {}),
        "ports": sorted((p["ip"], p["external"], p["internal"], p.get("protocol", "tcp")) for p in inputs.get("ports") or []),
        "healthcheck": None if hc is None else {
            "test": list(hc["tests"]), "interval": _seconds(hc["interval"]), "timeout": _seconds(hc["timeout"]),
            "retries": hc["retries"], "start_period": _seconds(hc["startPeriod"]),
        },
        "read_only": bool(inputs.get("readOnly")),
        "cap_drop": sorted((inputs.get("capabilities") or {}).get("drops") or []),
        "cap_add": sorted((inputs.get("capabilities") or {}).get("adds") or []),
        "security_opt": sorted(inputs.get("securityOpts") or []),
        "memory": (inputs.get("memory") or 0) * MIB,
        "memory_swap": (inputs.get("memorySwap") or 0) * MIB,
        "nano_cpus": int(float(inputs["cpus"]) * NANOS) if inputs.get("cpus") else 0,
        "restart": inputs.get("restart") or "no",
        "log": (inputs.get("logDriver") or "json-file", dict(inputs.get("logOpts") or {})),
        "network_mode": inputs.get("networkMode"),
        "aliases": {n["name"]: sorted(n.get("aliases") or []) for n in inputs.get("networksAdvanced") or []},
    }


def docker_view_of_inspect(info: dict[str, Any], image_info: dict[str, Any]) -> dict[str, Any]:
    """``docker inspect`` of a container, less what its image adds (env, labels)."""
    config, host = info["Config"], info["HostConfig"]
    image_env = set(image_info["Config"].get("Env") or [])
    image_labels = image_info["Config"].get("Labels") or {}
    hc = config.get("Healthcheck")
    ports = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        port, _, protocol = key.partition("/")
        ports += [(b["HostIp"], int(b["HostPort"]), int(port), protocol) for b in bindings]
    networks = info["NetworkSettings"]["Networks"]
    return {
        "name": info["Name"].lstrip("/"),
        "image": config["Image"],
        "hostname": config["Hostname"],
        "command": list(config["Cmd"]),
        "env": sorted(e for e in config.get("Env") or [] if e not in image_env),
        "user": config["User"],
        "labels": {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v},
        "mounts": sorted((m["Type"], m["Source"], m["Target"], bool(m.get("ReadOnly"))) for m in host.get("Mounts") or []),
        "tmpfs": dict(host.get("Tmpfs") or {}),
        "ports": sorted(ports),
        "healthcheck": None if not hc else {
            "test": list(hc["Test"]), "interval": hc["Interval"], "timeout": hc["Timeout"],
            "retries": hc["Retries"], "start_period": hc["StartPeriod"],
        },
        "read_only": bool(host.get("ReadonlyRootfs")),
        "cap_drop": sorted(host.get("CapDrop") or []),
        "cap_add": sorted(host.get("CapAdd") or []),
        "security_opt": sorted(host.get("SecurityOpt") or []),
        "memory": host.get("Memory") or 0,
        "memory_swap": host.get("MemorySwap") or 0,
        "nano_cpus": host.get("NanoCpus") or 0,
        "restart": (host.get("RestartPolicy") or {}).get("Name") or "no",
        "log": ((host.get("LogConfig") or {}).get("Type"), dict((host.get("LogConfig") or {}).get("Config") or {})),
        "network_mode": host.get("NetworkMode"),
        # Docker adds the container's own id/name as aliases; the engines ask for the node's name.
        "aliases": {name: sorted(a for a in net.get("Aliases") or [] if a != info["Id"][:12] and a != info["Name"].lstrip("/"))
                    for name, net in networks.items()},
    }
