"""gocryptfs (FUSE, AES-256-GCM, encrypted names): a ciphertext directory per node,
``.volumes/<env>/<node>.gocryptfs/``, mounted while unlocked by a daemon running as the
container user (``GocryptfsBackend`` says why).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import SecureKafkaError
from ..model.topology import CONTAINER_UID
from .backend import (
    ABSENT,
    LOCKED,
    UNLOCKED,
    UNSERVED,
    Volume,
    _make_mountpoint,
    _missing,
    _remove_mountpoint,
    _run,
    creating,
    mount_entry,
)

GOCRYPTFS_PASSWORD_INFO = b"secure-kafka/gocryptfs-password/v1"
GOCRYPTFS_EXIT_PASSWORD_INCORRECT = 12  # gocryptfs/internal/exitcodes: PasswordIncorrect
GOCRYPTFS_EXIT_S = 10  # how long an unmounted gocryptfs gets to exit
GOCRYPTFS_FSTYPE = "fuse.gocryptfs"
# How a volume is mounted. -nosyslog: see unlock. benchmarks/at_rest_bench.py adds to these to
# measure a lever (--gocryptfs-option -kernel_cache).
MOUNT_OPTIONS = ("-q", "-nosyslog", "-allow_other", "-nosuid", "-nodev", "-noexec")


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


def _gocryptfs_mounted(volume: Volume) -> bool:
    """A gocryptfs mount (served or not) is at the volume's mountpoint: never another backend's."""
    return (mount_entry(volume.mountpoint) or ("", ""))[1] == GOCRYPTFS_FSTYPE


def _own_tree(storage: Path) -> None:
    """Gives a ciphertext directory to the container user, whose gocryptfs serves it. Volumes
    made by earlier versions (gocryptfs as root) hold root's files; this runs once for them."""
    if storage.stat().st_uid == CONTAINER_UID:
        return
    for directory, subdirectories, files in os.walk(storage):
        for name in (directory, *(os.path.join(directory, n) for n in (*subdirectories, *files))):
            os.lchown(name, CONTAINER_UID, CONTAINER_UID)


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
        with creating(volume, "initialise gocryptfs") as ciphertext:
            ciphertext.mkdir(mode=0o700)
            os.chown(ciphertext, CONTAINER_UID, CONTAINER_UID)
            # -scryptn 10 (the minimum): the password is 256 random bits, not a guessable phrase.
            code, detail = _gocryptfs(key, ciphertext, "-init", "-q", "-scryptn", "10")
            if code != 0:
                raise SecureKafkaError(f"gocryptfs -init {ciphertext} failed (exit {code}): {detail}")

    def unlock(self, volume: Volume, key: bytes) -> None:
        if not self._serving(volume):
            if _gocryptfs_mounted(volume):  # its daemon died
                _run("fusermount3", "-u", "-z", str(volume.mountpoint))
            _own_tree(volume.storage)
            _make_mountpoint(volume.mountpoint, owner=CONTAINER_UID)
            # -nosyslog: else the daemon pipes its stderr into a `logger` child left in *our*
            # process group; whatever kills that group (Pulumi ending its provider plugin, a
            # Ctrl-C) kills the logger, and the daemon's next warning dies of SIGPIPE: a dead
            # volume under a running broker. With it, the daemon keeps writing to our log file.
            code, detail = _gocryptfs(key, volume.storage, *MOUNT_OPTIONS, mountpoint=volume.mountpoint)
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
        if _gocryptfs_mounted(volume):  # never another backend's mount
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
        volume.clear_partial()

    def state(self, volume: Volume) -> str:
        if not volume.storage.exists():
            return ABSENT
        if self._serving(volume):
            return UNLOCKED if os.path.isdir(volume.plaintext) else LOCKED
        return UNSERVED if _gocryptfs_mounted(volume) else LOCKED

    @staticmethod
    def _serving(volume: Volume) -> bool:
        """Mounted with a live daemon (a dead one leaves a mount whose stat fails: ENOTCONN)."""
        if not _gocryptfs_mounted(volume):
            return False
        try:
            os.stat(volume.mountpoint)
        except OSError:
            return False
        return True

