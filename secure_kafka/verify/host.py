"""Host-side probes: how every container runs (user, root filesystem, capabilities, limits),
secrets in what Docker shows of a container, the encrypted volumes and the host's mount table."""

from __future__ import annotations

import json
from pathlib import Path

from ..build.plan import NANOS
from ..build.planner import JVM_OVERHEAD_MB
from ..model.topology import CONTAINER_UID
from ..storage import volumes
from .scorecard import ProbeResult, _where, result
from .target import Target

# --- containers ---------------------------------------------------------------------------------

MIB = 1024 * 1024


def probe_containers(t: Target) -> list[ProbeResult]:
    profile = t.settings.profile
    missing = [n.name for n in t.topology.nodes if not t.running(n)]
    checks: dict[str, list[str]] = {p: [] for p in ("containers.user", "containers.read-only-rootfs",
                                                      "containers.cap-drop", "containers.no-new-privileges",
                                                      "containers.limits")}
    for node in t.topology.nodes:
        info = t.inspected.get(node.name)
        if not info:
            continue
        host = info["HostConfig"]
        if info["Config"].get("User") != f"{CONTAINER_UID}:{CONTAINER_UID}":
            checks["containers.user"].append(f"{node.name}: {info['Config'].get('User') or 'root (image default)'}")
        if not host.get("ReadonlyRootfs"):
            checks["containers.read-only-rootfs"].append(f"{node.name} writable")
        if host.get("CapDrop") != ["ALL"] or host.get("CapAdd"):
            checks["containers.cap-drop"].append(f"{node.name}: drop {host.get('CapDrop')}, add {host.get('CapAdd')}")
        if "no-new-privileges:true" not in (host.get("SecurityOpt") or []) or host.get("Privileged"):
            checks["containers.no-new-privileges"].append(f"{node.name}: {host.get('SecurityOpt')}")
        heap, cpus = profile.resources(node.role)
        limits = {"memory": (host.get("Memory"), (heap + JVM_OVERHEAD_MB) * MIB),
                  "cpus": (host.get("NanoCpus"), int(cpus * NANOS)), "pids": (host.get("PidsLimit"), profile.pids_limit)}
        for what, (actual, wanted) in limits.items():
            if not actual or actual > wanted:
                checks["containers.limits"].append(f"{node.name} {what} {actual or 'unlimited'}")
    expected = {
        "containers.user": f"{CONTAINER_UID}:{CONTAINER_UID}",
        "containers.read-only-rootfs": "read-only",
        "containers.cap-drop": "drop ALL, add none",
        "containers.no-new-privileges": "no-new-privileges:true, not privileged",
        "containers.limits": f"memory heap+{JVM_OVERHEAD_MB} MiB, CPUs and pids ≤ profile {profile.name}",
    }
    present = len(t.topology.nodes) - len(missing)
    results = []
    for probe, wrong in checks.items():
        problems = wrong + [f"{name} not running" for name in missing]
        results.append(result(probe, expected[probe], _where(problems, 3) if problems else f"{present} containers",
                              not problems))
    return results


def probe_secrets_in_containers(t: Target) -> list[ProbeResult]:
    """Every secret value, searched for in the whole inspect document (env, command, labels, ...)."""
    store = t.env.secrets
    values = {name: store.get(name) for name in store.names()}
    values["passphrase"] = t.env.certs.passphrase()
    found = []
    for node in t.topology.nodes:
        info = t.inspected.get(node.name)
        if info is None:
            found.append(f"{node.name} not running")
            continue
        document = json.dumps(info)
        found += [f"{name} in {node.name}" for name, value in values.items() if value and value in document]
    return [result("containers.secrets", "none of the env's secrets", _where(found) if found
                   else f"none of {len(values)} secrets in {len(t.topology.nodes)} containers", not found)]


# --- volumes ----------------------------------------------------------------------------------------


def probe_volumes(t: Target) -> list[ProbeResult]:
    env = t.env
    backend = env.volumes.backend.name
    encrypted, mounts = [], []
    if not t.settings.encrypted_volumes:
        encrypted.append("plain Docker volumes (encryptedVolumes: false)")
    else:
        states = env.volumes.states()
        for node in t.topology.nodes:
            state = states.get(node.name)
            if state == volumes.UNSERVED:
                encrypted.append(f"{node.name} unserved, its daemon gone (`secure-kafka up {env.env}` mounts it again)")
            elif state != volumes.UNLOCKED:
                encrypted.append(f"{node.name} {state}")
            info = t.inspected.get(node.name) or {}
            sources = {m.get("Source") for m in info.get("Mounts", [])}
            if volumes.plaintext_dir(env.volumes.run_dir, node.name) not in sources:
                encrypted.append(f"{node.name} data not on its volume")
        table = _mount_table()
        run_dir = f"{env.volumes.run_dir}/"
        running = {n.name for n in t.topology.nodes if t.running(n)}
        for where, options in table.items():
            if not where.startswith(run_dir):
                continue
            node = where[len(run_dir):].split("/")[0]
            if node not in running:
                mounts.append(f"{where} mounted without a running node")
            if not {"nosuid", "nodev"} <= options:
                mounts.append(f"{where} lacks nosuid/nodev")
        for node in running:
            if volumes.mountpoint(env.volumes.run_dir, node) not in table:
                mounts.append(f"{node} volume not mounted")
    return [
        result("volumes.encrypted", f"every node unlocked ({backend}), data mounted from it",
               _where(encrypted, 3) if encrypted else f"{len(t.topology.nodes)} volumes unlocked ({backend})",
               not encrypted),
        result("volumes.mounts", f"mounted under {volumes.RUN_ROOT} (tmpfs) for running nodes only, nosuid,nodev",
               _where(mounts, 3) if mounts else "only the running nodes' volumes", not mounts and not encrypted),
    ]


def _mount_table() -> dict[str, set[str]]:
    found = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        found[fields[1]] = set(fields[3].split(","))
    return found
