"""Leftovers of environments that no longer exist, found on this host and removed.

A run killed half-way (``up``, a test session, a CI job cancelled), or a checkout deleted
while its environment ran, leaves Docker containers, networks and volumes, unlocked volume
mounts under ``/run/secure-kafka/`` (an unlocked mount is a plaintext view of a node's
data) and loop devices behind, and no ``down`` can reach them once the stack file is gone.

Every such object says which project (the id in its labels or its path) and environment it
belongs to; the paths it holds (a container's bind mounts, a gocryptfs daemon's ciphertext
directory, a loop device's image) name the project's checkout, confirmed by the id, which
is a hash of the checkout's path. An environment is then:

- ``live``: its checkout has ``Pulumi.<env>.yaml``: never touched (``down`` is its way out);
- ``orphaned``: its checkout or its stack file is gone: ``remove`` takes everything away;
- ``unknown``: nothing left names its checkout (say, a network alone): listed, never removed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker

from ..build.plan import LABEL_ENV, LABEL_PROJECT
from ..engines.docker_engine import DockerEngine
from ..errors import SecureKafkaError
from ..model.settings import ENV_NAME, Project
from ..proc import Progress, quiet
from ..storage.backend import Volume, mount_entry
from ..storage.fscrypt import FscryptLoopBackend
from ..storage.gocryptfs import GOCRYPTFS_FSTYPE, GocryptfsBackend, gocryptfs_processes
from ..storage.volumes import RUN_ROOT, STORAGE_DIR, mountpoint, plaintext_dir, run_dir

__all__ = ["LIVE", "ORPHANED", "UNKNOWN", "Leftover", "HostEnvironment", "find", "remove",
           "environment_of_mountpoint", "environment_of_storage", "project_root"]

LIVE, ORPHANED, UNKNOWN = "live", "orphaned", "unknown"
PROJECT_ID = re.compile(r"^[0-9a-f]{8}$")
# <root>/.volumes/<env>/<node>.gocryptfs or .img: a node's ciphertext storage (storage.volumes).
STORAGE_PATH = re.compile(rf"^(?P<root>/.*)/{re.escape(STORAGE_DIR)}/(?P<env>[^/]+)/(?P<node>[^/]+)\.(gocryptfs|img)$")


@dataclass(frozen=True)
class Leftover:
    kind: str  # container, network, volume, mount, loop
    name: str  # container/network/volume name, mountpoint, loop device


@dataclass
class HostEnvironment:
    """What this host holds of one environment of one project."""

    project_id: str
    env: str
    root: Path | None = None  # the checkout, where a leftover names it
    leftovers: list[Leftover] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.root is None:
            return UNKNOWN
        return LIVE if (self.root / f"Pulumi.{self.env}.yaml").is_file() else ORPHANED

    def to_json(self) -> dict:
        return {"project_id": self.project_id, "env": self.env, "root": str(self.root) if self.root else None,
                "state": self.state, "leftovers": [{"kind": x.kind, "name": x.name} for x in self.leftovers]}


# --- pure: what a path says ------------------------------------------------------------------


def project_root(project_id: str, paths: Iterable[str]) -> Path | None:
    """The checkout among the ancestors of ``paths`` whose project id is ``project_id``."""
    for path in paths:
        for candidate in Path(path).parents:
            if candidate != Path("/") and Project(candidate).id == project_id:
                return candidate
    return None


def environment_of_mountpoint(target: str, run_root: str = RUN_ROOT) -> tuple[str, str, str] | None:
    """(project id, env, node) of a volume mountpoint ``<run root>/<project id>/<env>/<node>``."""
    parts = target[len(run_root) + 1:].split("/") if target.startswith(run_root + "/") else []
    if len(parts) == 3 and PROJECT_ID.match(parts[0]) and ENV_NAME.match(parts[1]):
        return parts[0], parts[1], parts[2]
    return None


def environment_of_storage(path: str) -> tuple[Path, str] | None:
    """(checkout, env) of a node's ciphertext storage path (a loop device's image, a gocryptfs
    daemon's directory); a deleted file's `` (deleted)`` suffix is ignored."""
    match = STORAGE_PATH.match(path.removesuffix(" (deleted)"))
    if match and ENV_NAME.match(match["env"]):
        return Path(match["root"]), match["env"]
    return None


# --- the host ---------------------------------------------------------------------------------


class _Census:
    def __init__(self) -> None:
        self.found: dict[tuple[str, str], HostEnvironment] = {}
        self.paths: dict[tuple[str, str], list[str]] = {}

    def add(self, project_id: str, env: str, leftover: Leftover, paths: Iterable[str] = ()) -> None:
        key = (project_id, env)
        self.found.setdefault(key, HostEnvironment(project_id, env)).leftovers.append(leftover)
        self.paths.setdefault(key, []).extend(paths)

    def environments(self) -> list[HostEnvironment]:
        for key, found in self.found.items():
            found.root = project_root(found.project_id, self.paths[key])
        return sorted(self.found.values(), key=lambda e: (e.project_id, e.env))


def find(client: docker.DockerClient) -> list[HostEnvironment]:
    """Every environment of every project that this host holds anything of."""
    census = _Census()
    api = client.api
    ours = {"label": [LABEL_PROJECT]}
    for c in api.containers(all=True, filters=ours):
        labels = c["Labels"]
        census.add(labels[LABEL_PROJECT], labels.get(LABEL_ENV, ""), Leftover("container", c["Names"][0].lstrip("/")),
                   [m.get("Source", "") for m in c.get("Mounts", [])])
    for n in api.networks(filters=ours):
        census.add(n["Labels"][LABEL_PROJECT], n["Labels"].get(LABEL_ENV, ""), Leftover("network", n["Name"]))
    for v in api.volumes(filters=ours).get("Volumes") or []:
        census.add(v["Labels"][LABEL_PROJECT], v["Labels"].get(LABEL_ENV, ""), Leftover("volume", v["Name"]))
    loops = _loop_devices()
    for target, source, fstype in _mounts():
        owner = environment_of_mountpoint(target)
        if owner is None:
            continue
        if fstype == GOCRYPTFS_FSTYPE:
            storage = _gocryptfs_storage(Path(target))
        else:
            storage = loops.pop(source, "")
        census.add(owner[0], owner[1], Leftover("mount", target), [storage])
    for device, image in loops.items():  # attached, not mounted: a run killed between the two
        if located := environment_of_storage(image):
            root, env = located
            census.add(Project(root).id, env, Leftover("loop", device), [image])
    return census.environments()


def _mounts() -> list[tuple[str, str, str]]:
    """(mountpoint, source, fstype) of every mount, mountpoints' escapes undone."""
    result = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target, fstype = line.split()[:3]
        result.append((target.replace("\\040", " "), source, fstype))
    return result


def _loop_devices() -> dict[str, str]:
    """{/dev/loopN: backing file} of every attached loop device."""
    try:
        done = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return {}
    if done.returncode != 0 or not done.stdout.strip():
        return {}
    return {d["name"]: d.get("back-file") or "" for d in json.loads(done.stdout).get("loopdevices", [])}


def _gocryptfs_storage(target: Path) -> str:
    """The ciphertext directory a gocryptfs daemon serves at ``target``: it gets the directory
    as an inherited descriptor, so its command line says only /proc/self/fd/N; its open files do."""
    for pid in gocryptfs_processes(target):
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        for link in links:
            if environment_of_storage(link):
                return link
    return ""


# --- removal ------------------------------------------------------------------------------------


def remove(client: docker.DockerClient, found: HostEnvironment, progress: Progress = quiet) -> None:
    """Removes everything the host holds of an orphaned environment; refuses any other."""
    if found.state != ORPHANED:
        raise SecureKafkaError(f"{found.project_id}/{found.env} is {found.state}, not orphaned: refusing to remove it"
                               + (f" (take it down from {found.root})" if found.state == LIVE else ""))
    assert found.root is not None
    labels = {LABEL_PROJECT: found.project_id, LABEL_ENV: found.env}
    # Containers first (gracefully: they flush what they write), so no mount is still in use.
    DockerEngine(client, found.root, progress).down(labels, purge=True)
    for leftover in found.leftovers:
        if leftover.kind == "mount":
            progress(f"mount {leftover.name}: unmounting")
            _lock(Path(leftover.name), found)
        elif leftover.kind == "loop":
            progress(f"loop device {leftover.name}: detaching")
            done = subprocess.run(["losetup", "-d", leftover.name], capture_output=True, text=True)
            if done.returncode != 0:
                raise SecureKafkaError(f"losetup -d {leftover.name} failed: {done.stderr.strip()}: detach it by hand")


def _lock(target: Path, found: HostEnvironment) -> None:
    """Unmounts a leftover volume with its backend's own ``lock`` (it knows how its mounts and
    keys go away), on the volume as the backend names it."""
    node = target.name
    env_run_dir = run_dir(found.project_id, found.env)
    entry = mount_entry(target)
    if entry is None:
        return  # gone meanwhile
    backend = GocryptfsBackend() if entry[1] == GOCRYPTFS_FSTYPE else FscryptLoopBackend()
    assert found.root is not None
    volume = Volume(found.env, node, found.root / STORAGE_DIR / found.env / f"{node}{backend.suffix}",
                    Path(mountpoint(env_run_dir, node)), Path(plaintext_dir(env_run_dir, node)), 0)
    backend.lock(volume)
