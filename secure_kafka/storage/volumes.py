"""Encrypted data volumes: one per node, unlocked only while the environment is up.

A node's persistent data (brokers: ``/var/lib/kafka`` with the log dirs and the audit trail;
ZooKeeper: ``/var/lib/zookeeper`` with snapshots and transaction log) lives on an encrypted
volume, unlocked at ``/run/secure-kafka/<project id>/<env>/<node>``. The directory the container mounts,
``<mountpoint>/data``, exists only while the volume is unlocked, so a container never writes
plaintext anywhere else. The mechanism sits behind ``VolumeBackend`` (LUKS fits where
dm-crypt exists; this kernel has none); the stack setting ``volumeBackend`` picks one:

- ``GocryptfsBackend`` (default, ``gocryptfs.py``): a gocryptfs (FUSE, AES-256-GCM) ciphertext
  directory per node, ``.volumes/<env>/<node>.gocryptfs/``, mounted with ``allow_other`` for
  Docker's bind mount. The daemon runs as the container user (uid 10001), not as root: see its
  docstring.
- ``FscryptLoopBackend`` (``fscrypt.py``): ext4 native encryption (fscrypt, v2 policy,
  AES-256-XTS contents, AES-256-CTS filenames) on a sparse ext4 image per node,
  ``.volumes/<env>/<node>.img``, loop-mounted, driving the kernel ioctls directly (that
  module says why).

What both share (``Volume``, the states, mount helpers) is in ``backend.py``.

Why gocryptfs is the default, measured (docs/architecture.md, "Encryption at rest"): fscrypt
uses the kernel's AES, and kernels without an AES-NI driver (this one: ``/proc/crypto`` has
only ``aes-fixed-time``) encrypt at ~70 MiB/s, while gocryptfs' Go AES-GCM uses AES-NI in
user space (writes 290 MiB/s vs 274 on a plain ext4 loop image, fscrypt 69). On kernels with
``aesni_intel`` fscrypt is the better choice: no daemon, no FUSE hop, kernel-held keys.

Keys (``keys.py``): 64 random bytes per volume, in ``certs/<env>/volume-keys/<node>.json``
(0600), wrapped under a key derived from the environment's passphrase and bound to its
environment and node. A missing, wrong or tampered key is an error, never a reason to
initialise a volume again: ``mkfs`` and ``gocryptfs -init`` run only on storage the backend
has just created.

This module holds the pure names (paths; the planner uses them), ``make_backend`` and
``EncryptedVolumes``, and re-exports what callers use of the others (``__all__``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.settings import BACKENDS, DEFAULT_BACKEND
from ..model.topology import CONTAINER_UID
from ..proc import Progress, quiet
from .backend import ABSENT, LOCKED, UNLOCKED, UNSERVED, Volume, VolumeBackend, mounted_source
from .fscrypt import (
    FS_IOC_ADD_ENCRYPTION_KEY,
    FS_IOC_GET_ENCRYPTION_KEY_STATUS,
    FS_IOC_GET_ENCRYPTION_POLICY_EX,
    FS_IOC_REMOVE_ENCRYPTION_KEY,
    FS_IOC_SET_ENCRYPTION_POLICY,
    FscryptLoopBackend,
    fscrypt_policy_identifier,
)
from .gocryptfs import GocryptfsBackend, gocryptfs_password, gocryptfs_processes
from .keys import MASTER_KEY_BYTES, unwrap_key, wrap_key

__all__ = [
    # this module's
    "RUN_ROOT", "STORAGE_DIR", "KEYS_DIR", "DEFAULT_SIZE_GIB", "FULL_WARNING_PCT", "START_FLOOR_MIB",
    "run_dir", "mountpoint", "plaintext_dir", "storage_path", "key_path", "fullness_warning",
    "make_backend", "EncryptedVolumes",
    # re-exported from backend, gocryptfs, fscrypt, keys and the settings (patch them where they are defined)
    "Volume", "VolumeBackend", "UNLOCKED", "LOCKED", "UNSERVED", "ABSENT",
    "GocryptfsBackend", "gocryptfs_processes", "gocryptfs_password",
    "FscryptLoopBackend", "fscrypt_policy_identifier", "FS_IOC_SET_ENCRYPTION_POLICY", "FS_IOC_GET_ENCRYPTION_POLICY_EX",
    "FS_IOC_ADD_ENCRYPTION_KEY", "FS_IOC_REMOVE_ENCRYPTION_KEY", "FS_IOC_GET_ENCRYPTION_KEY_STATUS",
    "MASTER_KEY_BYTES", "wrap_key", "unwrap_key",
    "BACKENDS", "DEFAULT_BACKEND", "CONTAINER_UID",
]

RUN_ROOT = "/run/secure-kafka"  # tmpfs: mountpoints vanish at reboot, locked by definition
STORAGE_DIR = ".volumes"  # under the project root, gitignored: ciphertext only
KEYS_DIR = "volume-keys"  # under certs/<env>/
DEFAULT_SIZE_GIB = 2
# `status` warns from here on: Kafka takes a log directory offline when a write fails for want
# of space, and a broker whose only log directory is offline stops.
FULL_WARNING_PCT = 85
# A node does not start with less free space than this (docker/bin/storage-space-guard, which
# says why: Kafka's recovery on a full volume can empty a segment of acknowledged records).
# The planner hands it to every container; `status` calls a volume under it full.
START_FLOOR_MIB = 32

# --- pure names (the planner uses them; no I/O) ----------------------------------------------


def run_dir(project_id: str, env: str, root: str = RUN_ROOT) -> str:
    """Where an environment's volumes are mounted: per project (``settings.Project.id``), so
    two checkouts' environments of one name never share a mountpoint."""
    return f"{root}/{project_id}/{env}"


def mountpoint(env_run_dir: str, node: str) -> str:
    """Where a node's volume is mounted while the environment is up."""
    return f"{env_run_dir}/{node}"


def plaintext_dir(env_run_dir: str, node: str) -> str:
    """The encrypted directory inside the mounted volume: what the container mounts."""
    return f"{mountpoint(env_run_dir, node)}/data"


def storage_path(project_root: Path, env: str, node: str, suffix: str) -> Path:
    """A node's ciphertext storage (``suffix`` names the backend's kind: ``.img``, ``.gocryptfs``)."""
    return project_root / STORAGE_DIR / env / f"{node}{suffix}"


def key_path(certs_dir: Path, node: str) -> Path:
    return certs_dir / KEYS_DIR / f"{node}.json"


def fullness_warning(node: str, total_bytes: int, free_bytes: int, env: str) -> str | None:
    """What `status` says of a volume at or past ``FULL_WARNING_PCT``, or with less than
    ``START_FLOOR_MIB`` free (None otherwise)."""
    if total_bytes <= 0:
        return None
    used_pct = 100 * (total_bytes - free_bytes) // total_bytes
    free_mib = free_bytes // 2**20
    if free_mib < START_FLOOR_MIB:
        return (f"volume of {node} is full ({free_mib} MiB free): Kafka takes a full log directory offline, and {node} "
                f"does not start again under {START_FLOOR_MIB} MiB free: free space (lower retention, delete topics), "
                f"then run `secure-kafka up {env}`")
    if used_pct < FULL_WARNING_PCT:
        return None
    return (f"volume of {node} is {used_pct}% full ({free_mib} MiB free): lower retention or delete topics before "
            f"it fills (a full volume stops {node})")


# --- backends ----------------------------------------------------------------------------------


def make_backend(name: str) -> VolumeBackend:
    """The backend of a volumeBackend setting."""
    if name == "gocryptfs":
        return GocryptfsBackend()
    if name == "fscrypt":
        return FscryptLoopBackend()
    raise SecureKafkaError(f"unknown volume backend {name!r}: use {' or '.join(BACKENDS)}")


# --- an environment's volumes ---------------------------------------------------------------------


class EncryptedVolumes:
    """An environment's volumes: storage under ``.volumes/<env>/``, keys under ``certs/<env>/volume-keys/``.

    ``backend`` (the volumeBackend setting) makes and opens volumes; a volume another backend
    made is refused by ``open`` (never re-created beside it) and still locked, destroyed and
    reported by the backend that made it.
    """

    def __init__(
        self,
        project_root: Path,
        certs_dir: Path,
        env: str,
        env_run_dir: str,
        nodes: tuple[str, ...],
        size_gib: int,
        passphrase: Callable[[], str],
        progress: Progress = quiet,
        backend: VolumeBackend | None = None,
    ):
        self.root = project_root.absolute()
        self.certs_dir = certs_dir
        self.env = env
        self.run_dir = env_run_dir
        self.nodes = nodes
        self.size_bytes = size_gib * 2**30
        self.passphrase = passphrase
        self.progress = progress
        self.backend: VolumeBackend = backend or make_backend(DEFAULT_BACKEND)
        self._backends = [self.backend, *(make_backend(n) for n in BACKENDS if n != self.backend.name)]

    def volume(self, node: str, backend: VolumeBackend | None = None) -> Volume:
        suffix = (backend or self.backend).suffix
        return Volume(self.env, node, storage_path(self.root, self.env, node, suffix), Path(mountpoint(self.run_dir, node)),
                      Path(plaintext_dir(self.run_dir, node)), self.size_bytes)

    def backend_of(self, node: str) -> VolumeBackend:
        """The backend whose storage a node has (also half made), else the configured one."""
        for backend in self._backends:
            volume = self.volume(node, backend)
            if volume.storage.exists() or volume.partial.exists():
                return backend
        return self.backend

    def _known(self) -> list[str]:
        """Nodes of the topology, plus any with storage or a mountpoint left from a larger topology."""
        storage_dir = self.root / STORAGE_DIR / self.env
        suffixes = {b.suffix for b in self._backends}
        entries = storage_dir.iterdir() if storage_dir.is_dir() else ()
        found = {p.name.removesuffix(s) for p in entries for s in suffixes if p.name.endswith(s) and p.name[0] != "."}
        mounted = Path(self.run_dir)
        found |= {p.name for p in mounted.iterdir()} if mounted.is_dir() else set()
        return [*self.nodes, *sorted(found - set(self.nodes))]

    def open(self) -> dict[str, str]:
        """Unlocks every node's volume, creating it on first use; ``{node: created|unlocked|remounted}``.

        Every key is read (or made) before anything is mounted: a wrong passphrase or a
        missing key mounts nothing. ``remounted``: the volume was mounted but unserved (its
        daemon died), and is served again; a container started before still holds the dead
        mount, and must be restarted to use the new one.
        """
        for node in self.nodes:
            if (made_by := self.backend_of(node)) is not self.backend:
                raise SecureKafkaError(
                    f"{self.volume(node, made_by).storage}: the volume of {node} is {made_by.name}, but volumeBackend "
                    f"is {self.backend.name}: set secure-kafka:volumeBackend to {made_by.name} in Pulumi.{self.env}.yaml, "
                    f"or `secure-kafka down {self.env} --purge` to start empty"
                )
        keys: dict[str, bytes] = {}
        new: set[str] = set()
        for node in self.nodes:
            volume, path = self.volume(node), key_path(self.certs_dir, node)
            relative = f"certs/{self.env}/{KEYS_DIR}/{node}.json"
            if path.exists():
                if not volume.storage.exists() and not volume.partial.exists():
                    raise SecureKafkaError(
                        f"{volume.storage}: volume of {node} missing while its key exists: restore it from "
                        f"backup, or `secure-kafka down {self.env} --purge` to start empty"
                    )
                keys[node] = unwrap_key(path.read_text(), self.passphrase(), self.env, node, relative)
                new |= {node} if not volume.storage.exists() else set()
            elif volume.storage.exists():
                raise SecureKafkaError(
                    f"{relative}: missing, so the volume of {node} ({volume.storage}) cannot be opened: "
                    f"restore the key file from backup (never re-created over existing data)"
                )
            else:
                keys[node] = os.urandom(MASTER_KEY_BYTES)
                volume.mark_creation_begun()
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(path, wrap_key(keys[node], self.passphrase(), self.env, node), mode=0o600)
                new.add(node)
        outcome = {}
        for node, key in keys.items():
            volume = self.volume(node)
            if node in new:
                self.progress(f"volume {node}: creating encrypted volume {volume.storage} ({self.backend.name})")
                self.backend.create(volume, key)
            state = self.backend.state(volume)
            if state == UNSERVED:
                self.progress(f"volume {node}: mounted but unserved (its daemon is gone): mounting it again")
            elif state != UNLOCKED:
                self.progress(f"volume {node}: unlocking at {volume.mountpoint}")
            self.backend.unlock(volume, key)
            outcome[node] = "created" if node in new else "remounted" if state == UNSERVED else "unlocked"
        return outcome

    def close(self, nodes: Sequence[str] | None = None) -> None:
        """Locks every volume of the environment, or those of ``nodes`` (after their containers are gone)."""
        for node in self._known() if nodes is None else nodes:
            backend = self.backend_of(node)
            volume = self.volume(node, backend)
            if mounted_source(volume.mountpoint) is not None:
                self.progress(f"volume {node}: locking")
            backend.lock(volume)

    def destroy(self, nodes: Sequence[str] | None = None) -> None:
        """Deletes every volume and its key, or those of ``nodes``. Irreversible."""
        for node in self._known() if nodes is None else nodes:
            made_by = self.backend_of(node)
            for backend in self._backends:
                volume = self.volume(node, backend)
                if backend is made_by or volume.storage.exists() or volume.partial.exists():
                    if volume.storage.exists():
                        self.progress(f"volume {node}: destroying {volume.storage}")
                    backend.destroy(volume)
            key_path(self.certs_dir, node).unlink(missing_ok=True)
        for directory in (self.root / STORAGE_DIR / self.env, self.certs_dir / KEYS_DIR):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()

    def fullness(self, states: dict[str, str] | None = None) -> dict[str, tuple[int, int]]:
        """{node: (total bytes, free bytes)} of every unlocked volume, as its filesystem counts
        them (a gocryptfs volume: the host filesystem's; an fscrypt one: its image's).
        ``states``: ``states()`` where the caller has it already."""
        found = {}
        for node, state in (states if states is not None else self.states()).items():
            if state == UNLOCKED:
                stats = os.statvfs(self.volume(node).plaintext)
                found[node] = (stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize)
        return found

    def states(self) -> dict[str, str]:
        return {node: (b := self.backend_of(node)).state(self.volume(node, b)) for node in self._known()}
