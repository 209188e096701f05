"""Encrypted data volumes: one per node, unlocked only while the environment is up.

A node's persistent data (brokers: ``/var/lib/kafka`` with the log dirs and the audit trail;
ZooKeeper: ``/var/lib/zookeeper`` with snapshots and transaction log) lives on an encrypted
volume, unlocked at ``/run/secure-kafka/<project id>/<env>/<node>``. The directory the container mounts,
``<mountpoint>/data``, exists only while the volume is unlocked, so a container never writes
plaintext anywhere else. The mechanism sits behind ``VolumeBackend`` (LUKS fits where
dm-crypt exists; this kernel has none); the stack setting ``volumeBackend`` picks one:

- ``GocryptfsBackend`` (default): a gocryptfs (FUSE, AES-256-GCM) ciphertext directory per
  node, ``.volumes/<env>/<node>.gocryptfs/``, mounted with ``allow_other`` for Docker's bind
  mount. The daemon runs as the container user (uid 10001), not as root: see its docstring.
- ``FscryptLoopBackend``: ext4 native encryption (fscrypt, v2 policy, AES-256-XTS contents,
  AES-256-CTS filenames) on a sparse ext4 image per node, ``.volumes/<env>/<node>.img``,
  loop-mounted. The kernel ioctls are driven directly (``fcntl.ioctl``, layouts from
  ``linux/fscrypt.h``) rather than by Debian's ``fscrypt`` tool: the tool needs a global
  config, per-filesystem metadata and a protector setup, all to hand the same raw key to the
  same ioctls.

Why gocryptfs is the default, measured (docs/architecture.md, "Encryption at rest"): fscrypt
uses the kernel's AES, and kernels without an AES-NI driver (this one: ``/proc/crypto`` has
only ``aes-fixed-time``) encrypt at ~70 MiB/s, while gocryptfs' Go AES-GCM uses AES-NI in
user space (writes 290 MiB/s vs 274 on a plain ext4 loop image, fscrypt 69). On kernels with
``aesni_intel`` fscrypt is the better choice: no daemon, no FUSE hop, kernel-held keys.

Keys: 64 random bytes per volume, in ``certs/<env>/volume-keys/<node>.json`` (0600) wrapped
with AES-256-GCM under a key derived from the environment's passphrase (scrypt, random salt);
the associated data binds a wrapped key to its environment and node. A missing, wrong or
tampered key is an error, never a reason to initialise a volume again: ``mkfs`` and
``gocryptfs -init`` run only on storage this module has just created.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import json
import os
import pwd
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.settings import BACKENDS, DEFAULT_BACKEND
from ..model.topology import CONTAINER_UID
from ..proc import Progress, quiet

RUN_ROOT = "/run/secure-kafka"  # tmpfs: mountpoints vanish at reboot, locked by definition
STORAGE_DIR = ".volumes"  # under the project root, gitignored: ciphertext only
KEYS_DIR = "volume-keys"  # under certs/<env>/
DEFAULT_SIZE_GIB = 2

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


# --- backends ------------------------------------------------------------------------------------

UNLOCKED, LOCKED, ABSENT = "unlocked", "locked", "absent"


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
        """``unlocked``, ``locked`` or ``absent`` (no storage yet)."""


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


class FscryptLoopBackend:
    """ext4 native encryption on a sparse ext4 image, loop-mounted while unlocked."""

    name = "fscrypt"
    suffix = ".img"

    def create(self, volume: Volume, key: bytes) -> None:
        if volume.storage.exists():
            raise SecureKafkaError(f"{volume.storage} exists: refusing to make a filesystem over existing data")
        volume.storage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        volume.partial.unlink(missing_ok=True)  # an interrupted creation: it never held data
        fd = os.open(volume.partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.ftruncate(fd, volume.size_bytes)  # sparse: takes space only as data is written
        finally:
            os.close(fd)
        # -O encrypt: the fscrypt feature; -m 0: no blocks reserved for root (nothing runs as root there).
        _run("mkfs.ext4", "-q", "-O", "encrypt", "-m", "0", "-L", f"sk-{volume.node}"[:16], str(volume.partial))
        os.rename(volume.partial, volume.storage)

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
        volume.partial.unlink(missing_ok=True)

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


def _make_mountpoint(mountpoint: Path, owner: int = 0) -> None:
    """``/run/secure-kafka/<project id>/<env>/<node>``, 0700 and ``owner``'s. The three levels
    above are 0711: searchable, not listable, so an unprivileged FUSE daemon (and fusermount3
    checking on its behalf) can reach its mountpoint."""
    for directory in (mountpoint.parent.parent.parent, mountpoint.parent.parent, mountpoint.parent):
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        directory.chmod(0o711)
    mountpoint.mkdir(mode=0o700, exist_ok=True)
    os.chown(mountpoint, owner, owner)


def _own_tree(storage: Path) -> None:
    """Gives a ciphertext directory to the container user, whose gocryptfs serves it. Volumes
    made by earlier versions (gocryptfs as root) hold root's files; this runs once for them."""
    if storage.stat().st_uid == CONTAINER_UID:
        return
    for directory, subdirectories, files in os.walk(storage):
        for name in (directory, *(os.path.join(directory, n) for n in (*subdirectories, *files))):
            os.lchown(name, CONTAINER_UID, CONTAINER_UID)


def _remove_mountpoint(volume: Volume) -> None:
    """After unmounting: the mountpoint (empty now), then the environment's and the project's
    /run directories once empty."""
    if volume.mountpoint.is_dir():
        volume.mountpoint.rmdir()  # the plaintext path is gone
    for directory in (volume.mountpoint.parent, volume.mountpoint.parent.parent):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


GOCRYPTFS_PASSWORD_INFO = b"secure-kafka/gocryptfs-password/v1"
GOCRYPTFS_EXIT_PASSWORD_INCORRECT = 12  # gocryptfs/internal/exitcodes: PasswordIncorrect
GOCRYPTFS_EXIT_S = 10  # how long an unmounted gocryptfs gets to exit
GOCRYPTFS_FSTYPE = "fuse.gocryptfs"


def gocryptfs_password(key: bytes) -> bytes:
    """The password gocryptfs gets for a volume: derived from its key (HKDF-SHA256), 64 hex digits.

    gocryptfs keeps its own random master key in the ciphertext directory's ``gocryptfs.conf``,
    encrypted under this password; the volume key itself never reaches gocryptfs.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=GOCRYPTFS_PASSWORD_INFO).derive(key).hex().encode()


def _gocryptfs(key: bytes, storage: Path, *options: str, mountpoint: Path | None = None) -> tuple[int, str]:
    """Runs gocryptfs as the container user on ``storage``: (exit code, output).

    The password goes on stdin (never argv or environment). The ciphertext directory is
    handed over as an open descriptor (``/proc/self/fd/N``), so its ancestors (the project
    directory, a 0700 temp dir in tests) need not be searchable by that user. Output goes to
    a file, not a pipe: a mount leaves a daemon behind that inherits it, and a pipe would stay
    open until the volume is unmounted.
    """
    _require_unprivileged_fuse()
    if shutil.which("gocryptfs") is None:
        raise _missing("gocryptfs")
    directory = os.open(storage, os.O_RDONLY | os.O_DIRECTORY)
    # setpriv switches the user, not subprocess's user=/group=: those make Python fork() instead of
    # vfork(), and a forked child of a gRPC process (Pulumi's dynamic provider, where the
    # program unlocks volumes) can crash before it execs (seen: SIGSEGV).
    argv = ["setpriv", f"--reuid={CONTAINER_UID}", f"--regid={CONTAINER_UID}", "--clear-groups",
            "gocryptfs", *options, f"/proc/self/fd/{directory}", *([str(mountpoint)] if mountpoint else [])]
    try:
        with tempfile.TemporaryFile() as log:
            try:
                done = subprocess.run(argv, input=gocryptfs_password(key), stdout=log, stderr=log, pass_fds=(directory,))
            except FileNotFoundError:
                raise _missing("setpriv") from None
            log.seek(0)
            return done.returncode, log.read().decode(errors="replace").strip().replace("\n", " | ")
    finally:
        os.close(directory)


FUSE_DEVICE = Path("/dev/fuse")
FUSE_CONF = Path("/etc/fuse.conf")


def _require_unprivileged_fuse() -> None:
    """What an unprivileged FUSE mount with ``allow_other`` needs from the host (./run setup sets it up)."""
    fix = "run ./run setup, which sets it up"
    try:
        mode = FUSE_DEVICE.stat().st_mode
    except OSError:
        raise SecureKafkaError(f"{FUSE_DEVICE} is missing: this host has no FUSE, use volumeBackend fscrypt") from None
    if mode & 0o006 != 0o006:
        raise SecureKafkaError(f"{FUSE_DEVICE} is mode {mode & 0o777:o}: gocryptfs runs as uid {CONTAINER_UID} and needs "
                               f"0666 (Debian's default): {fix} (or chmod 0666 {FUSE_DEVICE})")
    conf = FUSE_CONF.read_text() if FUSE_CONF.exists() else ""
    if not any(line.strip() == "user_allow_other" for line in conf.splitlines()):
        raise SecureKafkaError(f"{FUSE_CONF} lacks user_allow_other, which lets Docker reach a volume mounted by uid "
                               f"{CONTAINER_UID}: {fix} (or add that line)")
    try:
        pwd.getpwuid(CONTAINER_UID)
    except KeyError:
        raise SecureKafkaError(f"uid {CONTAINER_UID} has no account on this host, and fusermount3 needs one: {fix} "
                               f"(or add a system user with uid and gid {CONTAINER_UID})") from None


def gocryptfs_processes(mountpoint: Path) -> list[int]:
    """Live (not zombie) gocryptfs daemons serving ``mountpoint``, from /proc."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if os.path.basename(argv[0]) == b"gocryptfs" and str(mountpoint).encode() in argv and state != "Z":
            found.append(int(proc.name))
    return found


class GocryptfsBackend:
    """A gocryptfs (FUSE, AES-256-GCM, encrypted names) ciphertext directory, mounted while unlocked.

    The daemon runs as the container user (uid 10001), and with ``allow_other`` (gocryptfs then
    adds ``default_permissions``: the kernel checks modes) so that Docker can bind-mount it.
    Why not as root: gocryptfs 2.3 as root with ``allow_other`` creates each file under the
    caller's uid by switching credentials, and the Debian build switches them for every
    thread at once (gocryptfs issue 893). Under concurrent creates (a broker creating the 50
    partitions of its offsets topic) other threads then fail with EPERM and Kafka takes the
    log directory offline. Unprivileged, nothing switches: every file belongs to uid 10001.
    """

    name = "gocryptfs"
    suffix = ".gocryptfs"

    def create(self, volume: Volume, key: bytes) -> None:
        if volume.storage.exists():
            raise SecureKafkaError(f"{volume.storage} exists: refusing to initialise gocryptfs over existing data")
        volume.storage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.rmtree(volume.partial, ignore_errors=True)  # an interrupted creation: it never held data
        volume.partial.mkdir(mode=0o700)
        os.chown(volume.partial, CONTAINER_UID, CONTAINER_UID)
        # -scryptn 10 (the minimum): the password is 256 random bits, not a guessable phrase.
        code, detail = _gocryptfs(key, volume.partial, "-init", "-q", "-scryptn", "10")
        if code != 0:
            raise SecureKafkaError(f"gocryptfs -init {volume.partial} failed (exit {code}): {detail}")
        os.rename(volume.partial, volume.storage)

    def unlock(self, volume: Volume, key: bytes) -> None:
        if not self._serving(volume):
            if (mount_entry(volume.mountpoint) or ("", ""))[1] == GOCRYPTFS_FSTYPE:  # its daemon died
                _run("fusermount3", "-u", "-z", str(volume.mountpoint))
            _own_tree(volume.storage)
            _make_mountpoint(volume.mountpoint, owner=CONTAINER_UID)
            # -nosyslog: else the daemon pipes its stderr into a `logger` child left in *our*
            # process group; whatever kills that group (Pulumi ending its provider plugin, a
            # Ctrl-C) kills the logger, and the daemon's next warning dies of SIGPIPE: a dead
            # volume under a running broker. With it, the daemon keeps writing to our log file.
            code, detail = _gocryptfs(key, volume.storage, "-q", "-nosyslog", "-allow_other", "-nosuid", "-nodev",
                                      "-noexec", mountpoint=volume.mountpoint)
            if code != 0:
                _remove_mountpoint(volume)
                if code == GOCRYPTFS_EXIT_PASSWORD_INCORRECT:
                    raise SecureKafkaError(
                        f"{volume.storage}: the key of {volume.node} does not open this volume: "
                        "restore the matching certs/<env>/volume-keys file from backup"
                    )
                raise SecureKafkaError(f"gocryptfs {volume.storage} failed (exit {code}): {detail}")
        try:
            self._open(volume)
        except BaseException:
            self.lock(volume)
            raise

    @staticmethod
    def _open(volume: Volume) -> None:
        data = volume.plaintext
        if not data.exists():
            strays = sorted(p.name for p in volume.mountpoint.iterdir())
            if strays:
                raise SecureKafkaError(f"{volume.storage}: unexpected content {strays}: not a secure-kafka volume")
            data.mkdir(mode=0o700)
        os.chown(data, CONTAINER_UID, CONTAINER_UID)
        data.chmod(0o700)

    def lock(self, volume: Volume) -> None:
        if (mount_entry(volume.mountpoint) or ("", ""))[1] == GOCRYPTFS_FSTYPE:  # never another backend's mount
            daemons = gocryptfs_processes(volume.mountpoint)
            try:
                _run("fusermount3", "-u", *([] if daemons else ["-z"]), str(volume.mountpoint))
            except SecureKafkaError as exc:
                raise SecureKafkaError(
                    f"{volume.mountpoint}: cannot unmount ({exc}): stop what uses it, then run down again"
                ) from None
            deadline = time.monotonic() + GOCRYPTFS_EXIT_S
            while gocryptfs_processes(volume.mountpoint):  # it exits once unmounted, its writes done
                if time.monotonic() > deadline:
                    raise SecureKafkaError(f"{volume.mountpoint}: gocryptfs {daemons} still runs after unmounting")
                time.sleep(0.05)
        _remove_mountpoint(volume)

    def destroy(self, volume: Volume) -> None:
        self.lock(volume)
        shutil.rmtree(volume.storage, ignore_errors=True)
        shutil.rmtree(volume.partial, ignore_errors=True)

    def state(self, volume: Volume) -> str:
        if not volume.storage.exists():
            return ABSENT
        return UNLOCKED if self._serving(volume) and os.path.isdir(volume.plaintext) else LOCKED

    @staticmethod
    def _serving(volume: Volume) -> bool:
        """Mounted with a live daemon (a dead one leaves a mount whose stat fails: ENOTCONN)."""
        if (mount_entry(volume.mountpoint) or ("", ""))[1] != GOCRYPTFS_FSTYPE:
            return False
        try:
            os.stat(volume.mountpoint)
        except OSError:
            return False
        return True


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
        """Unlocks every node's volume, creating it on first use; ``{node: created|unlocked}``.

        Every key is read (or made) before anything is mounted: a wrong passphrase or a
        missing key mounts nothing.
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
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(path, wrap_key(keys[node], self.passphrase(), self.env, node), mode=0o600)
                new.add(node)
        outcome = {}
        for node, key in keys.items():
            volume = self.volume(node)
            if node in new:
                self.progress(f"volume {node}: creating encrypted volume {volume.storage} ({self.backend.name})")
                self.backend.create(volume, key)
            if self.backend.state(volume) != UNLOCKED:
                self.progress(f"volume {node}: unlocking at {volume.mountpoint}")
            self.backend.unlock(volume, key)
            outcome[node] = "created" if node in new else "unlocked"
        return outcome

    def close(self) -> None:
        """Locks every volume of the environment (after its containers are gone)."""
        for node in self._known():
            backend = self.backend_of(node)
            volume = self.volume(node, backend)
            if mounted_source(volume.mountpoint) is not None:
                self.progress(f"volume {node}: locking")
            backend.lock(volume)

    def destroy(self) -> None:
        """Deletes every volume and its key. Irreversible."""
        for node in self._known():
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

    def states(self) -> dict[str, str]:
        return {node: (b := self.backend_of(node)).state(self.volume(node, b)) for node in self._known()}
