"""ext4 native encryption (fscrypt, v2 policy, AES-256-XTS contents, AES-256-CTS filenames)
on a sparse ext4 image per node, ``.volumes/<env>/<node>.img``, loop-mounted while unlocked.

The kernel ioctls are driven directly (``fcntl.ioctl``, layouts from ``linux/fscrypt.h``)
rather than by Debian's ``fscrypt`` tool: the tool needs a global config, per-filesystem
metadata and a protector setup, all to hand the same raw key to the same ioctls.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

from ..errors import SecureKafkaError
from ..model.topology import CONTAINER_UID
from .backend import (
    ABSENT,
    LOCKED,
    UNLOCKED,
    Volume,
    _make_mountpoint,
    _remove_mountpoint,
    _run,
    creating,
    mounted_source,
)

# --- fscrypt ioctls (linux/fscrypt.h) ------------------------------------------------------------


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("f") << 8) | nr


_IOR, _IOWR = 2, 3
FS_IOC_SET_ENCRYPTION_POLICY = _ioc(_IOR, 19, 12)  # sized by fscrypt_policy_v1; the version byte decides
FS_IOC_GET_ENCRYPTION_POLICY_EX = _ioc(_IOWR, 22, 9)
FS_IOC_ADD_ENCRYPTION_KEY = _ioc(_IOWR, 23, 80)
FS_IOC_REMOVE_ENCRYPTION_KEY = _ioc(_IOWR, 24, 64)
FS_IOC_GET_ENCRYPTION_KEY_STATUS = _ioc(_IOWR, 26, 128)
FSCRYPT_POLICY_V2 = 2
FSCRYPT_MODE_AES_256_XTS, FSCRYPT_MODE_AES_256_CTS = 1, 4
FSCRYPT_POLICY_FLAGS_PAD_32 = 0x03
FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER = 2
FSCRYPT_KEY_STATUS_PRESENT = 2
FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY = 0x1


def _key_spec(identifier: bytes = b"") -> bytes:
    # struct fscrypt_key_specifier: __u32 type, __u32 reserved, __u8 u[32]
    return struct.pack("=II32s", FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER, 0, identifier)


def fscrypt_add_key(directory: str, key: bytes) -> bytes:
    """Adds a v2 master key to the filesystem of ``directory``; returns its identifier."""
    arg = bytearray(_key_spec() + struct.pack("=II32x", len(key), 0) + key)
    try:
        _ioctl(directory, FS_IOC_ADD_ENCRYPTION_KEY, arg)
        return bytes(arg[8:24])  # the kernel writes key_spec.u.identifier
    finally:
        ctypes.memset((ctypes.c_char * len(arg)).from_buffer(arg), 0, len(arg))  # no key copy left behind


def fscrypt_remove_key(directory: str, identifier: bytes) -> bool:
    """Removes a master key (the filesystem's files become ciphertext); False if files are busy."""
    arg = bytearray(_key_spec(identifier) + bytes(24))
    _ioctl(directory, FS_IOC_REMOVE_ENCRYPTION_KEY, arg)
    (flags,) = struct.unpack_from("=I", arg, 40)
    return not flags & FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY


def fscrypt_key_present(directory: str, identifier: bytes) -> bool:
    arg = bytearray(_key_spec(identifier) + bytes(88))
    _ioctl(directory, FS_IOC_GET_ENCRYPTION_KEY_STATUS, arg)
    (status,) = struct.unpack_from("=I", arg, 64)
    return status == FSCRYPT_KEY_STATUS_PRESENT


def fscrypt_set_policy(directory: str, identifier: bytes) -> None:
    """Encrypts ``directory`` (empty) with ``identifier``'s key: AES-256-XTS / AES-256-CTS, v2."""
    policy = struct.pack("=BBBBB3x16s", FSCRYPT_POLICY_V2, FSCRYPT_MODE_AES_256_XTS,
                         FSCRYPT_MODE_AES_256_CTS, FSCRYPT_POLICY_FLAGS_PAD_32, 0, identifier)
    _ioctl(directory, FS_IOC_SET_ENCRYPTION_POLICY, bytearray(policy))


def fscrypt_policy_identifier(directory: str) -> bytes | None:
    """The key identifier of ``directory``'s v2 policy; None when it is not encrypted."""
    arg = bytearray(struct.pack("=Q", 24) + bytes(24))
    try:
        _ioctl(directory, FS_IOC_GET_ENCRYPTION_POLICY_EX, arg)
    except OSError as exc:
        # ENODATA: no policy; ENOTTY, EOPNOTSUPP: a filesystem without fscrypt (tmpfs, a FUSE
        # mount, ext4 without the encrypt feature), so no volume of ours is open there.
        if exc.errno in (errno.ENODATA, errno.ENOTTY, errno.EOPNOTSUPP):
            return None
        raise
    if arg[8] != FSCRYPT_POLICY_V2:
        raise SecureKafkaError(f"{directory}: encrypted with an fscrypt v{arg[8]} policy, expected v2")
    return bytes(arg[16:32])


def _ioctl(directory: str, request: int, arg: bytearray) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, request, arg, True)
    finally:
        os.close(fd)


# --- the backend -------------------------------------------------------------------------------


class FscryptLoopBackend:
    """ext4 native encryption on a sparse ext4 image, loop-mounted while unlocked."""

    name = "fscrypt"
    suffix = ".img"

    def create(self, volume: Volume, key: bytes) -> None:
        with creating(volume, "make a filesystem") as image:
            fd = os.open(image, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.ftruncate(fd, volume.size_bytes)  # sparse: takes space only as data is written
            finally:
                os.close(fd)
            # -O encrypt: the fscrypt feature; -m 0: no blocks reserved for root (nothing runs as root there).
            _run("mkfs.ext4", "-q", "-O", "encrypt", "-m", "0", "-L", f"sk-{volume.node}"[:16], str(image))

    def unlock(self, volume: Volume, key: bytes) -> None:
        if mounted_source(volume.mountpoint) is None:
            self._detach_stale(volume)
            _make_mountpoint(volume.mountpoint)
            loop = _run("losetup", "--find", "--show", str(volume.storage)).strip()
            try:
                _run("mount", "-t", "ext4", "-o", "nosuid,nodev,noexec", loop, str(volume.mountpoint))
            except SecureKafkaError:
                _run("losetup", "-d", loop)
                volume.mountpoint.rmdir()
                raise
        try:
            self._open(volume, key)
        except BaseException:
            self.lock(volume)
            raise

    def _open(self, volume: Volume, key: bytes) -> None:
        identifier = fscrypt_add_key(str(volume.mountpoint), key)
        data = volume.plaintext
        if data.exists():
            if fscrypt_policy_identifier(str(data)) != identifier:
                fscrypt_remove_key(str(volume.mountpoint), identifier)
                raise SecureKafkaError(
                    f"{volume.storage}: the key of {volume.node} does not open this volume: "
                    "restore the matching certs/<env>/volume-keys file from backup"
                )
        else:
            strays = sorted(p.name for p in volume.mountpoint.iterdir() if p.name != "lost+found")
            if strays:
                raise SecureKafkaError(f"{volume.storage}: unexpected content {strays}: not a secure-kafka volume")
            data.mkdir(mode=0o700)
            fscrypt_set_policy(str(data), identifier)  # first use: everything below is encrypted
        os.chown(data, CONTAINER_UID, CONTAINER_UID)
        data.chmod(0o700)

    def lock(self, volume: Volume) -> None:
        source = mounted_source(volume.mountpoint)
        if source is not None:
            identifier = fscrypt_policy_identifier(str(volume.plaintext)) if volume.plaintext.exists() else None
            if identifier is not None and not fscrypt_key_present(str(volume.mountpoint), identifier):
                identifier = None  # never added (a wrong key was refused): removing it would fail with ENOKEY
            if identifier is not None and not fscrypt_remove_key(str(volume.mountpoint), identifier):
                raise SecureKafkaError(
                    f"{volume.mountpoint}: files still in use, key not fully removed: stop what uses it, then run down again"
                )
            _run("umount", str(volume.mountpoint))
            if source.startswith("/dev/loop"):
                _run("losetup", "-d", source)
        self._detach_stale(volume)
        _remove_mountpoint(volume)

    def destroy(self, volume: Volume) -> None:
        self.lock(volume)
        volume.storage.unlink(missing_ok=True)
        volume.clear_partial()

    def state(self, volume: Volume) -> str:
        if not volume.storage.exists():
            return ABSENT
        if mounted_source(volume.mountpoint) is None or not volume.plaintext.exists():
            return LOCKED
        identifier = fscrypt_policy_identifier(str(volume.plaintext))
        present = identifier is not None and fscrypt_key_present(str(volume.mountpoint), identifier)
        return UNLOCKED if present else LOCKED

    @staticmethod
    def _detach_stale(volume: Volume) -> None:
        """Loop devices left attached to the image (an interrupted run) and not mounted."""
        if not volume.storage.exists():
            return
        for line in _run("losetup", "--noheadings", "--output", "NAME", "--associated", str(volume.storage)).split():
            _run("losetup", "-d", line)
