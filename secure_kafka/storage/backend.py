"""What every volume backend shares: ``Volume``, the ``VolumeBackend`` protocol, its states,
and the helpers both backends use (creation by rename, commands, /proc/self/mounts, the /run
mountpoints).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import SecureKafkaError

UNLOCKED, LOCKED, ABSENT = "unlocked", "locked", "absent"
# Mounted, but nothing serves the mount any more (a FUSE daemon that died): the node using it
# can neither read nor write its data, and must mount it again once it is remounted.
UNSERVED = "unserved"


@dataclass(frozen=True)
class Volume:
    env: str
    node: str
    storage: Path  # the raw backing storage (an image file, a ciphertext directory): ciphertext only
    mountpoint: Path
    plaintext: Path  # what the container mounts; exists only while unlocked
    size_bytes: int  # images only: a ciphertext directory grows with its host filesystem

    @property
    def partial(self) -> Path:
        """The storage while it is being made: renamed to ``storage`` once it is complete."""
        return self.storage.with_name(f".{self.storage.name}.partial")

    def mark_creation_begun(self) -> None:
        """Leaves ``partial`` (an empty file) before the volume's key is written: a key beside
        neither storage nor partial then always means lost data, never a creation cut short."""
        self.storage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.partial.touch(mode=0o600)

    def clear_partial(self) -> None:
        """Removes what an interrupted creation left (it never held data): the marker file, a
        half-made image, or a half-made ciphertext directory."""
        if self.partial.is_dir() and not self.partial.is_symlink():
            shutil.rmtree(self.partial)
        else:
            self.partial.unlink(missing_ok=True)


class VolumeBackend(Protocol):
    """One way to keep a node's data encrypted (gocryptfs, fscrypt on a loop image; LUKS elsewhere)."""

    name: str  # the volumeBackend setting's value
    suffix: str  # of its storage under .volumes/<env>/: tells which backend made a volume

    def create(self, volume: Volume, key: bytes) -> None:
        """Makes a new, empty volume at ``volume.storage``, which must not exist."""

    def unlock(self, volume: Volume, key: bytes) -> None:
        """Mounts the volume and opens it with ``key``; ``volume.plaintext`` is then usable by uid 10001."""

    def lock(self, volume: Volume) -> None:
        """Forgets the key, unmounts, releases devices; ``volume.plaintext`` is gone. Idempotent."""

    def destroy(self, volume: Volume) -> None:
        """Locks and deletes the volume's storage. Irreversible."""

    def state(self, volume: Volume) -> str:
        """``unlocked``, ``locked``, ``unserved`` (mounted, its daemon gone) or ``absent`` (no storage yet)."""


@contextlib.contextmanager
def creating(volume: Volume, what: str) -> Iterator[Path]:
    """Where a backend makes a new volume: ``volume.partial``, renamed to ``volume.storage``
    once the block completes, so a storage that exists is always complete. Refuses to ``what``
    over an existing volume; clears what an interrupted creation left at ``volume.partial``."""
    if volume.storage.exists():
        raise SecureKafkaError(f"{volume.storage} exists: refusing to {what} over existing data")
    volume.storage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    volume.clear_partial()
    yield volume.partial
    os.rename(volume.partial, volume.storage)


_PACKAGE_OF = {"mkfs.ext4": "e2fsprogs", "losetup": "mount", "mount": "mount", "umount": "mount",
               "gocryptfs": "gocryptfs", "fusermount3": "fuse3", "setpriv": "util-linux"}


def _missing(command: str) -> SecureKafkaError:
    return SecureKafkaError(f"{command} is not installed: install {_PACKAGE_OF.get(command, command)} (./run setup does)")


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise _missing(argv[0]) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace("\n", " | ")
        raise SecureKafkaError(f"{' '.join(argv[:2])} ... failed (exit {done.returncode}): {detail}")
    return done.stdout


def mounted_source(target: Path) -> str | None:
    """The device mounted at ``target`` (from /proc/self/mounts), or None."""
    entry = mount_entry(target)
    return entry[0] if entry else None


def mount_entry(target: Path) -> tuple[str, str] | None:
    """(source, filesystem type) of what is mounted at ``target``, or None."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, where, fstype = line.split()[:3]
        if where == str(target):
            return source, fstype
    return None


def _make_mountpoint(mountpoint: Path, owner: int = 0) -> None:
    """``/run/secure-kafka/<project id>/<env>/<node>``, 0700 and ``owner``'s. The three levels
    above are 0711: searchable, not listable, so an unprivileged FUSE daemon (and fusermount3
    checking on its behalf) can reach its mountpoint."""
    for directory in (mountpoint.parent.parent.parent, mountpoint.parent.parent, mountpoint.parent):
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        directory.chmod(0o711)
    mountpoint.mkdir(mode=0o700, exist_ok=True)
    os.chown(mountpoint, owner, owner)


def _remove_mountpoint(volume: Volume) -> None:
    """After unmounting: the mountpoint (empty now), then the environment's and the project's
    /run directories once empty."""
    if volume.mountpoint.is_dir():
        volume.mountpoint.rmdir()  # the plaintext path is gone
    for directory in (volume.mountpoint.parent, volume.mountpoint.parent.parent):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
