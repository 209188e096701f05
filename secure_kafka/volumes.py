"""Encrypted data volumes: one per node, unlocked only while the environment is up.

A node's persistent data (brokers: ``/var/lib/kafka`` with the log dirs and the audit trail;
ZooKeeper: ``/var/lib/zookeeper`` with snapshots and transaction log) lives on an encrypted
volume. The mechanism sits behind ``VolumeBackend`` so LUKS can be added where dm-crypt
exists; this kernel has none, so the backend is ``FscryptLoopBackend``: ext4 native
encryption (fscrypt, v2 policy, AES-256-XTS contents, AES-256-CTS filenames) on a sparse
ext4 image per node, loop-mounted at ``/run/secure-kafka/<env>/<node>``. The directory the
container mounts, ``<mountpoint>/data``, is the encrypted one; it exists only while the
filesystem is mounted, so a container never writes plaintext anywhere else.

Chosen over gocryptfs by measurement (docs/architecture.md, "Encryption at rest"): kernel
crypto without a FUSE hop, and no ``allow_other`` for Docker to bind-mount it. The kernel
ioctls are driven directly (``fcntl.ioctl``, layouts from ``linux/fscrypt.h``) rather than by
Debian's ``fscrypt`` tool: the tool needs a global config, per-filesystem metadata and a
protector setup, all to hand the same raw key to the same ioctls.

Keys: 64 random bytes per volume, in ``certs/<env>/volume-keys/<node>.json`` (0600) wrapped
with AES-256-GCM under a key derived from the environment's passphrase (scrypt, random salt);
the associated data binds a wrapped key to its environment and node. A missing, wrong or
tampered key is an error, never a reason to initialise a volume again: ``mkfs`` runs only on
an image this module has just created.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import json
import os
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import SecureKafkaError
from .fsutil import write_atomic
from .proc import Progress, quiet

CONTAINER_UID = 10001  # user kafka of the runtime image: owns the plaintext directory
RUN_ROOT = "/run/secure-kafka"  # tmpfs: mountpoints vanish at reboot, locked by definition
IMAGES_DIR = ".volumes"  # under the project root, gitignored
KEYS_DIR = "volume-keys"  # under certs/<env>/
DEFAULT_SIZE_GIB = 2

# --- pure names (the planner uses them; no I/O) ----------------------------------------------


def mountpoint(env: str, node: str) -> str:
    """Where a node's volume is mounted while the environment is up."""
    return f"{RUN_ROOT}/{env}/{node}"


def plaintext_dir(env: str, node: str) -> str:
    """The encrypted directory inside the mounted volume: what the container mounts."""
    return f"{mountpoint(env, node)}/data"


def image_path(project_root: Path, env: str, node: str) -> Path:
    return project_root / IMAGES_DIR / env / f"{node}.img"


def key_path(certs_dir: Path, node: str) -> Path:
    return certs_dir / KEYS_DIR / f"{node}.json"


# --- key wrapping ------------------------------------------------------------------------------

KEY_FORMAT = 1
MASTER_KEY_BYTES = 64  # fscrypt v2 master key: HKDF-SHA512 input, 512 bits
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # ~32 MiB, ~0.1 s: once per volume per `up`


def _aad(env: str, node: str) -> bytes:
    # Binds a wrapped key to its volume: a key file copied onto another node does not open.
    return f"secure-kafka/volume-key/v{KEY_FORMAT}/{env}/{node}".encode()


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def wrap_key(key: bytes, passphrase: str, env: str, node: str) -> str:
    """The key file's content: ``key`` encrypted under a key derived from ``passphrase``."""
    salt, nonce = os.urandom(16), os.urandom(12)
    wrapped = AESGCM(_kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, key, _aad(env, node))
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return json.dumps({
        "format": KEY_FORMAT, "env": env, "node": node,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": b64(salt)},
        "cipher": "AES-256-GCM", "nonce": b64(nonce), "wrapped_key": b64(wrapped),
    }, indent=1) + "\n"


def unwrap_key(text: str, passphrase: str, env: str, node: str, source: str) -> bytes:
    """The key inside a key file; ``source`` names the file in errors."""
    try:
        document = json.loads(text)
        kdf = document["kdf"]
        if document["format"] != KEY_FORMAT or kdf["name"] != "scrypt" or document["cipher"] != "AES-256-GCM":
            raise ValueError("unknown format")
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(document["nonce"])
        wrapped = base64.b64decode(document["wrapped_key"])
        kek = _kek(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
    except (ValueError, KeyError, TypeError):
        raise SecureKafkaError(f"{source}: not a volume key file: restore it from backup") from None
    try:
        return AESGCM(kek).decrypt(nonce, wrapped, _aad(env, node))
    except (InvalidTag, ValueError):
        raise SecureKafkaError(
            f"{source}: cannot unwrap the volume key: wrong passphrase for {env!r} (SECURE_KAFKA_PASSPHRASE) "
            "or a damaged or foreign key file"
        ) from None


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
        if exc.errno == errno.ENODATA:
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


# --- backends ------------------------------------------------------------------------------------

UNLOCKED, LOCKED, ABSENT = "unlocked", "locked", "absent"


@dataclass(frozen=True)
class Volume:
    env: str
    node: str
    image: Path  # the raw backing storage: ciphertext only
    mountpoint: Path
    plaintext: Path  # what the container mounts; exists only while unlocked
    size_bytes: int

    @property
    def partial(self) -> Path:
        """The image while it is being made: renamed to ``image`` once it is a filesystem."""
        return self.image.with_name(f".{self.image.name}.partial")


class VolumeBackend(Protocol):
    """One way to keep a node's data encrypted (fscrypt on a loop image here; LUKS elsewhere)."""

    name: str

    def create(self, volume: Volume, key: bytes) -> None:
        """Makes a new, empty volume at ``volume.image``, which must not exist."""

    def unlock(self, volume: Volume, key: bytes) -> None:
        """Mounts the volume and opens it with ``key``; ``volume.plaintext`` is then usable by uid 10001."""

    def lock(self, volume: Volume) -> None:
        """Forgets the key, unmounts, releases devices; ``volume.plaintext`` is gone. Idempotent."""

    def destroy(self, volume: Volume) -> None:
        """Locks and deletes the volume's storage. Irreversible."""

    def state(self, volume: Volume) -> str:
        """``unlocked``, ``locked`` or ``absent`` (no storage yet)."""


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SecureKafkaError(f"{argv[0]} is not installed: install e2fsprogs and mount (./run setup does)") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace("\n", " | ")
        raise SecureKafkaError(f"{' '.join(argv[:2])} ... failed (exit {done.returncode}): {detail}")
    return done.stdout


def mounted_source(target: Path) -> str | None:
    """The device mounted at ``target`` (from /proc/self/mounts), or None."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, where = line.split()[:2]
        if where == str(target):
            return source
    return None


class FscryptLoopBackend:
    """ext4 native encryption on a sparse ext4 image, loop-mounted while unlocked."""

    name = "fscrypt-loop"

    def create(self, volume: Volume, key: bytes) -> None:
        if volume.image.exists():
            raise SecureKafkaError(f"{volume.image} exists: refusing to make a filesystem over existing data")
        volume.image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        volume.partial.unlink(missing_ok=True)  # an interrupted creation: it never held data
        fd = os.open(volume.partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.ftruncate(fd, volume.size_bytes)  # sparse: takes space only as data is written
        finally:
            os.close(fd)
        # -O encrypt: the fscrypt feature; -m 0: no blocks reserved for root (nothing runs as root there).
        _run("mkfs.ext4", "-q", "-O", "encrypt", "-m", "0", "-L", f"sk-{volume.node}"[:16], str(volume.partial))
        os.rename(volume.partial, volume.image)

    def unlock(self, volume: Volume, key: bytes) -> None:
        if mounted_source(volume.mountpoint) is None:
            self._detach_stale(volume)
            volume.mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
            loop = _run("losetup", "--find", "--show", str(volume.image)).strip()
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
                    f"{volume.image}: the key of {volume.node} does not open this volume: "
                    "restore the matching certs/<env>/volume-keys file from backup"
                )
        else:
            strays = sorted(p.name for p in volume.mountpoint.iterdir() if p.name != "lost+found")
            if strays:
                raise SecureKafkaError(f"{volume.image}: unexpected content {strays}: not a secure-kafka volume")
            data.mkdir(mode=0o700)
            fscrypt_set_policy(str(data), identifier)  # first use: everything below is encrypted
        os.chown(data, CONTAINER_UID, CONTAINER_UID)
        data.chmod(0o700)

    def lock(self, volume: Volume) -> None:
        source = mounted_source(volume.mountpoint)
        if source is not None:
            identifier = fscrypt_policy_identifier(str(volume.plaintext)) if volume.plaintext.exists() else None
            if identifier is not None and not fscrypt_remove_key(str(volume.mountpoint), identifier):
                raise SecureKafkaError(
                    f"{volume.mountpoint}: files still in use, key not fully removed: stop what uses it, then run down again"
                )
            _run("umount", str(volume.mountpoint))
            if source.startswith("/dev/loop"):
                _run("losetup", "-d", source)
        self._detach_stale(volume)
        if volume.mountpoint.is_dir():
            volume.mountpoint.rmdir()  # empty once unmounted: the plaintext path is gone
        if volume.mountpoint.parent.is_dir() and not any(volume.mountpoint.parent.iterdir()):
            volume.mountpoint.parent.rmdir()

    def destroy(self, volume: Volume) -> None:
        self.lock(volume)
        volume.image.unlink(missing_ok=True)
        volume.partial.unlink(missing_ok=True)

    def state(self, volume: Volume) -> str:
        if not volume.image.exists():
            return ABSENT
        if mounted_source(volume.mountpoint) is None or not volume.plaintext.exists():
            return LOCKED
        identifier = fscrypt_policy_identifier(str(volume.plaintext))
        present = identifier is not None and fscrypt_key_present(str(volume.mountpoint), identifier)
        return UNLOCKED if present else LOCKED

    @staticmethod
    def _detach_stale(volume: Volume) -> None:
        """Loop devices left attached to the image (an interrupted run) and not mounted."""
        if not volume.image.exists():
            return
        for line in _run("losetup", "--noheadings", "--output", "NAME", "--associated", str(volume.image)).split():
            _run("losetup", "-d", line)


# --- an environment's volumes ---------------------------------------------------------------------


class EncryptedVolumes:
    """An environment's volumes: images under ``.volumes/<env>/``, keys under ``certs/<env>/volume-keys/``."""

    def __init__(
        self,
        project_root: Path,
        certs_dir: Path,
        env: str,
        nodes: tuple[str, ...],
        size_gib: int,
        passphrase: Callable[[], str],
        progress: Progress = quiet,
        backend: VolumeBackend | None = None,
    ):
        self.root = project_root.absolute()
        self.certs_dir = certs_dir
        self.env = env
        self.nodes = nodes
        self.size_bytes = size_gib * 2**30
        self.passphrase = passphrase
        self.progress = progress
        self.backend: VolumeBackend = backend or FscryptLoopBackend()

    def volume(self, node: str) -> Volume:
        return Volume(self.env, node, image_path(self.root, self.env, node), Path(mountpoint(self.env, node)),
                      Path(plaintext_dir(self.env, node)), self.size_bytes)

    def _known(self) -> list[str]:
        """Nodes of the topology, plus any with an image or a mountpoint left from a larger topology."""
        found = {p.name.removesuffix(".img") for p in (self.root / IMAGES_DIR / self.env).glob("*.img")}
        run_dir = Path(RUN_ROOT) / self.env
        found |= {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
        return [*self.nodes, *sorted(found - set(self.nodes))]

    def open(self) -> dict[str, str]:
        """Unlocks every node's volume, creating it on first use; ``{node: created|unlocked}``.

        Every key is read (or made) before anything is mounted: a wrong passphrase or a
        missing key mounts nothing.
        """
        keys: dict[str, bytes] = {}
        new: set[str] = set()
        for node in self.nodes:
            volume, path = self.volume(node), key_path(self.certs_dir, node)
            relative = f"certs/{self.env}/{KEYS_DIR}/{node}.json"
            if path.exists():
                if not volume.image.exists() and not volume.partial.exists():
                    raise SecureKafkaError(
                        f"{volume.image}: volume of {node} missing while its key exists: restore the image from "
                        f"backup, or `secure-kafka down {self.env} --purge` to start empty"
                    )
                keys[node] = unwrap_key(path.read_text(), self.passphrase(), self.env, node, relative)
                new |= {node} if not volume.image.exists() else set()
            elif volume.image.exists():
                raise SecureKafkaError(
                    f"{relative}: missing, so the volume of {node} ({volume.image}) cannot be opened: "
                    f"restore the key file from backup (never re-created over existing data)"
                )
            else:
                keys[node] = os.urandom(MASTER_KEY_BYTES)
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(path, wrap_key(keys[node], self.passphrase(), self.env, node), mode=0o600)
                new.add(node)
        outcome = {}
        for node, key in keys.items():
            volume = self.volume(node)
            if node in new:
                self.progress(f"volume {node}: creating encrypted volume {volume.image} ({self.backend.name})")
                self.backend.create(volume, key)
            if self.backend.state(volume) != UNLOCKED:
                self.progress(f"volume {node}: unlocking at {volume.mountpoint}")
            self.backend.unlock(volume, key)
            outcome[node] = "created" if node in new else "unlocked"
        return outcome

    def close(self) -> None:
        """Locks every volume of the environment (after its containers are gone)."""
        for node in self._known():
            volume = self.volume(node)
            if mounted_source(volume.mountpoint) is not None:
                self.progress(f"volume {node}: locking")
            self.backend.lock(volume)

    def destroy(self) -> None:
        """Deletes every volume and its key. Irreversible."""
        for node in self._known():
            volume = self.volume(node)
            if volume.image.exists():
                self.progress(f"volume {node}: destroying {volume.image}")
            self.backend.destroy(volume)
            key_path(self.certs_dir, node).unlink(missing_ok=True)
        for directory in (self.root / IMAGES_DIR / self.env, self.certs_dir / KEYS_DIR):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()

    def states(self) -> dict[str, str]:
        return {node: self.backend.state(self.volume(node)) for node in self._known()}
