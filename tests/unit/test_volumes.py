"""Encrypted volumes without the kernel: key wrapping, the refusals around keys, the plan's mounts."""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from secure_kafka.build import plan
from secure_kafka.build.planner import build_plan
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles
from secure_kafka.model.settings import defaults, from_config, to_config
from secure_kafka.pki.secretstore import SecretStore
from secure_kafka.storage import fscrypt, gocryptfs, volumes
from secure_kafka.storage.backend import creating

KEY = os.urandom(volumes.MASTER_KEY_BYTES)
ROOT = Path("/srv/project")


def test_wrapped_key_round_trip_and_file_holds_no_key():
    text = volumes.wrap_key(KEY, "pass phrase", "dev", "kafka-0")
    assert volumes.unwrap_key(text, "pass phrase", "dev", "kafka-0", "k.json") == KEY
    document = json.loads(text)
    assert document["kdf"]["name"] == "scrypt" and document["cipher"] == "AES-256-GCM"
    assert KEY not in text.encode() and base64.b64encode(KEY).decode() not in text
    # Fresh salt and nonce every time: two wraps of one key differ.
    assert volumes.wrap_key(KEY, "pass phrase", "dev", "kafka-0") != text


def test_wrong_passphrase_refused():
    text = volumes.wrap_key(KEY, "right", "dev", "kafka-0")
    with pytest.raises(SecureKafkaError, match=r"k.json: cannot unwrap the volume key: wrong passphrase"):
        volumes.unwrap_key(text, "wrong", "dev", "kafka-0", "k.json")


@pytest.mark.parametrize("field", ["wrapped_key", "nonce"])
def test_tampered_key_file_refused(field):
    document = json.loads(volumes.wrap_key(KEY, "pw", "dev", "kafka-0"))
    raw = bytearray(base64.b64decode(document[field]))
    raw[0] ^= 1
    document[field] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SecureKafkaError, match="cannot unwrap"):
        volumes.unwrap_key(json.dumps(document), "pw", "dev", "kafka-0", "k.json")


@pytest.mark.parametrize("env, node", [("dev", "kafka-1"), ("prod", "kafka-0")])
def test_key_file_of_another_volume_refused(env, node):
    text = volumes.wrap_key(KEY, "pw", "dev", "kafka-0")
    with pytest.raises(SecureKafkaError, match="cannot unwrap"):
        volumes.unwrap_key(text, "pw", env, node, "k.json")


@pytest.mark.parametrize("text", ["", "{}", "not json", '{"format": 1}'])
def test_garbled_key_file_refused(text):
    with pytest.raises(SecureKafkaError, match="k.json: not a volume key file"):
        volumes.unwrap_key(text, "pw", "dev", "kafka-0", "k.json")


class RecordingBackend:
    """Stands in for the kernel: records calls, keeps 'images' as files."""

    name = "recording"
    suffix = ".img"

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def create(self, volume, key):
        with creating(volume, "make a volume") as image:
            image.write_bytes(b"")
        self.calls.append(("create", volume.node))

    def unlock(self, volume, key):
        self.calls.append(("unlock", volume.node))

    def lock(self, volume):
        self.calls.append(("lock", volume.node))

    def destroy(self, volume):
        volume.storage.unlink(missing_ok=True)
        self.calls.append(("destroy", volume.node))

    def state(self, volume):
        return volumes.LOCKED if volume.storage.exists() else volumes.ABSENT


def env_volumes(tmp_path: Path, passphrase: str = "pw") -> tuple[volumes.EncryptedVolumes, RecordingBackend]:
    backend = RecordingBackend()
    return volumes.EncryptedVolumes(tmp_path, tmp_path / "certs" / "dev", "dev", str(tmp_path / "run" / "dev"),
                                    ("zk-0", "kafka-0"), 1, lambda: passphrase, backend=backend), backend


def test_first_open_creates_keys_0600_and_volumes(tmp_path):
    vols, backend = env_volumes(tmp_path)
    assert vols.open() == {"zk-0": "created", "kafka-0": "created"}
    for node in ("zk-0", "kafka-0"):
        key_file = volumes.key_path(tmp_path / "certs" / "dev", node)
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert vols.volume(node).storage == tmp_path / ".volumes" / "dev" / f"{node}.img"
    assert backend.calls == [("create", "zk-0"), ("unlock", "zk-0"), ("create", "kafka-0"), ("unlock", "kafka-0")]
    again, backend = env_volumes(tmp_path)
    assert again.open() == {"zk-0": "unlocked", "kafka-0": "unlocked"}
    assert ("create", "zk-0") not in backend.calls


def test_wrong_passphrase_opens_nothing(tmp_path):
    env_volumes(tmp_path)[0].open()
    vols, backend = env_volumes(tmp_path, passphrase="wrong")
    with pytest.raises(SecureKafkaError, match="wrong passphrase"):
        vols.open()
    assert backend.calls == []


def test_missing_key_with_existing_image_is_an_error_never_a_new_volume(tmp_path):
    vols, _ = env_volumes(tmp_path)
    vols.open()
    volumes.key_path(tmp_path / "certs" / "dev", "kafka-0").unlink()
    vols, backend = env_volumes(tmp_path)
    with pytest.raises(SecureKafkaError, match=r"certs/dev/volume-keys/kafka-0.json: missing.*restore the key file"):
        vols.open()
    assert backend.calls == []  # not even zk-0: all keys are read before anything is opened
    assert not volumes.key_path(tmp_path / "certs" / "dev", "kafka-0").exists()


def test_missing_image_with_existing_key_is_an_error(tmp_path):
    vols, _ = env_volumes(tmp_path)
    vols.open()
    vols.volume("zk-0").storage.unlink()
    vols, backend = env_volumes(tmp_path)
    with pytest.raises(SecureKafkaError, match=r"zk-0.img: volume of zk-0 missing while its key exists"):
        vols.open()
    assert backend.calls == []


def test_interrupted_creation_is_completed_with_the_kept_key(tmp_path):
    vols, _ = env_volumes(tmp_path)
    vols.open()
    key_before = volumes.key_path(tmp_path / "certs" / "dev", "zk-0").read_text()
    image = vols.volume("zk-0").storage
    image.rename(vols.volume("zk-0").partial)  # as if mkfs had not finished
    vols, backend = env_volumes(tmp_path)
    assert vols.open()["zk-0"] == "created"
    assert volumes.key_path(tmp_path / "certs" / "dev", "zk-0").read_text() == key_before


def test_killed_between_key_and_storage_the_next_open_creates_with_the_kept_key(tmp_path):
    # The window the killed-`up` test found: the marker is left before the key, so a key with
    # neither storage nor marker is only ever lost data.
    vols, _ = env_volumes(tmp_path)
    vols.open()
    key_before = volumes.key_path(tmp_path / "certs" / "dev", "zk-0").read_text()
    vols.volume("zk-0").storage.unlink()
    vols.volume("zk-0").mark_creation_begun()
    vols, backend = env_volumes(tmp_path)
    assert vols.open()["zk-0"] == "created"
    assert volumes.key_path(tmp_path / "certs" / "dev", "zk-0").read_text() == key_before
    assert not vols.volume("zk-0").partial.exists()


@pytest.mark.parametrize("left", ["marker", "image", "ciphertext directory"])
def test_creation_clears_what_an_interrupted_one_left(tmp_path, left):
    volume = env_volumes(tmp_path)[0].volume("zk-0")
    volume.mark_creation_begun()
    if left == "image":
        volume.partial.write_bytes(b"half an ext4")
    elif left == "ciphertext directory":
        volume.partial.unlink()
        (volume.partial / "sub").mkdir(parents=True)
        (volume.partial / "sub" / "gocryptfs.conf").write_text("{}")
    with creating(volume, "make a volume") as partial:
        assert not partial.exists()
        partial.write_bytes(b"new")
    assert volume.storage.read_bytes() == b"new" and not volume.partial.exists()


def test_destroy_removes_images_and_keys(tmp_path):
    vols, backend = env_volumes(tmp_path)
    vols.open()
    vols.destroy()
    assert not (tmp_path / ".volumes" / "dev").exists()
    assert not (tmp_path / "certs" / "dev" / volumes.KEYS_DIR).exists()


def test_close_and_destroy_of_some_nodes_leave_the_others(tmp_path):
    """What a migration does to the controllers' volumes on --abort, and to ZooKeeper's once retired."""
    vols, backend = env_volumes(tmp_path)
    vols.open()
    backend.calls.clear()
    vols.close(["zk-0"])
    vols.destroy(["zk-0"])
    assert backend.calls == [("lock", "zk-0"), ("destroy", "zk-0")]
    assert not vols.volume("zk-0").storage.exists() and vols.volume("kafka-0").storage.exists()
    assert not volumes.key_path(tmp_path / "certs" / "dev", "zk-0").exists()
    assert volumes.key_path(tmp_path / "certs" / "dev", "kafka-0").exists()


def test_paths_are_pure_functions_of_project_env_and_node():
    run_dir = volumes.run_dir("0a1b2c3d", "dev")
    assert run_dir == "/run/secure-kafka/0a1b2c3d/dev"  # per project: another checkout's dev is elsewhere
    assert volumes.mountpoint(run_dir, "kafka-0") == "/run/secure-kafka/0a1b2c3d/dev/kafka-0"
    assert volumes.plaintext_dir(run_dir, "kafka-0") == "/run/secure-kafka/0a1b2c3d/dev/kafka-0/data"
    assert volumes.run_dir("0a1b2c3d", "dev", root="/tmp/r") == "/tmp/r/0a1b2c3d/dev"


def test_ioctl_numbers_match_linux_fscrypt_h():
    assert fscrypt.FS_IOC_SET_ENCRYPTION_POLICY == 0x800C6613
    assert fscrypt.FS_IOC_GET_ENCRYPTION_POLICY_EX == 0xC0096616
    assert fscrypt.FS_IOC_ADD_ENCRYPTION_KEY == 0xC0506617
    assert fscrypt.FS_IOC_REMOVE_ENCRYPTION_KEY == 0xC0406618
    assert fscrypt.FS_IOC_GET_ENCRYPTION_KEY_STATUS == 0xC080661A


# --- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [profiles.DEV, profiles.PROD], ids=["dev", "prod"])
def test_plan_binds_the_unlocked_volume_when_encrypted(tmp_path, profile):
    settings = defaults(profile.name, profile)
    assert settings.encrypted_volumes
    cluster = build_plan(ROOT, settings, SecretStore(tmp_path / "secrets.json"), "img:test")
    assert cluster.volumes == ()
    for spec in cluster.containers:
        target = "/var/lib/kafka" if spec.role == "broker" else "/var/lib/zookeeper"
        data = [m for m in spec.mounts if m.target == target]
        assert data == [plan.Mount("bind", f"/run/secure-kafka/{settings.project_id}/{settings.env}/{spec.node}/data",
                                   target)]
        assert not any(m.kind == "volume" for m in spec.mounts)


def test_plan_uses_named_volumes_when_not_encrypted(tmp_path):
    settings = dataclasses.replace(defaults("dev", profiles.DEV), encrypted_volumes=False)
    cluster = build_plan(ROOT, settings, SecretStore(tmp_path / "secrets.json"), "img:test")
    assert cluster.volumes == ("sk-dev-unscoped-zk-0-data", "sk-dev-unscoped-kafka-0-data")
    for spec in cluster.containers:
        assert plan.Mount("volume", f"sk-dev-unscoped-{spec.node}-data",
                          "/var/lib/kafka" if spec.role == "broker" else "/var/lib/zookeeper") in spec.mounts
        assert not any(m.source.startswith("/run/secure-kafka") for m in spec.mounts)


def test_no_volume_key_material_in_plan_labels_or_env(tmp_path):
    project, env = tmp_path / "project", "dev"
    vols = volumes.EncryptedVolumes(project, project / "certs" / env, env, str(tmp_path / "run"), ("zk-0", "kafka-0"),
                                    1, lambda: "pw", backend=RecordingBackend())
    vols.open()
    keys = [volumes.unwrap_key(volumes.key_path(project / "certs" / env, n).read_text(), "pw", env, n, "k")
            for n in ("zk-0", "kafka-0")]
    cluster = build_plan(project, defaults(env, profiles.DEV), SecretStore(tmp_path / "secrets.json"), "img:test")
    for spec in cluster.containers:
        exposed = json.dumps([spec.env, spec.labels, spec.command, [dataclasses.asdict(m) for m in spec.mounts],
                              cluster.labels])
        exposed_files = "".join(f.content for f in spec.files)
        for key in keys:
            for form in (key.hex(), base64.b64encode(key).decode()):
                assert form not in exposed and form not in exposed_files
        assert "volume-keys" not in exposed and "pw" not in spec.env.values()


# --- the backend setting -----------------------------------------------------------------------


def test_backend_defaults_to_gocryptfs_and_is_a_stack_setting():
    assert volumes.DEFAULT_BACKEND == "gocryptfs"
    for profile in (profiles.DEV, profiles.CI, profiles.PROD):
        assert defaults("x", profile).volume_backend == "gocryptfs"
    assert to_config(defaults("dev", profiles.DEV))["secure-kafka:volumeBackend"] == "gocryptfs"
    chosen = from_config("dev", {"profile": "dev", "volumeBackend": "fscrypt"}, "Pulumi.dev.yaml")
    assert chosen.volume_backend == "fscrypt"


@pytest.mark.parametrize("value, message", [
    ("luks", r"Pulumi.dev.yaml: secure-kafka:volumeBackend must be gocryptfs or fscrypt, got 'luks'"),
    (True, r"secure-kafka:volumeBackend must be str, got bool"),
])
def test_unknown_backend_refused(value, message):
    with pytest.raises(SecureKafkaError, match=message):
        from_config("dev", {"profile": "dev", "volumeBackend": value}, "Pulumi.dev.yaml")


@pytest.mark.parametrize("name, cls, suffix", [("gocryptfs", volumes.GocryptfsBackend, ".gocryptfs"),
                                                ("fscrypt", volumes.FscryptLoopBackend, ".img")])
def test_backend_choice_decides_the_storage_not_the_plaintext_path(tmp_path, name, cls, suffix):
    backend = volumes.make_backend(name)
    assert isinstance(backend, cls) and backend.name == name
    run_dir = volumes.run_dir("unscoped", "dev")
    vols = volumes.EncryptedVolumes(ROOT, ROOT / "certs" / "dev", "dev", run_dir, ("kafka-0",), 1, lambda: "pw",
                                    backend=backend)
    volume = vols.volume("kafka-0")
    assert volume.storage == ROOT / ".volumes" / "dev" / f"kafka-0{suffix}"
    assert volume.partial == ROOT / ".volumes" / "dev" / f".kafka-0{suffix}.partial"
    # The plan's bind-mount source is the same whichever backend: the plan needs no backend.
    assert str(volume.plaintext) == volumes.plaintext_dir(run_dir, "kafka-0") == "/run/secure-kafka/unscoped/dev/kafka-0/data"
    settings = dataclasses.replace(defaults("dev", profiles.DEV), volume_backend=name)
    cluster = build_plan(ROOT, settings, SecretStore(tmp_path / "secrets.json"), "img:test")
    assert plan.Mount("bind", str(volume.plaintext), "/var/lib/kafka") in cluster.containers[1].mounts


def test_environment_uses_the_configured_backend(tmp_path):
    from secure_kafka.environment import Environment
    from secure_kafka.model.settings import Project

    project = Project(tmp_path)
    project.write(dataclasses.replace(defaults("dev", profiles.DEV), volume_backend="fscrypt"))
    assert Environment(project, "dev").volumes.backend.name == "fscrypt"
    project.stack_file("dev").unlink()
    project.write(defaults("dev", profiles.DEV))
    assert Environment(project, "dev").volumes.backend.name == "gocryptfs"


@pytest.mark.parametrize("made, configured", [("fscrypt", "gocryptfs"), ("gocryptfs", "fscrypt")])
def test_volume_of_another_backend_refused_never_made_again(tmp_path, made, configured):
    made_by = volumes.make_backend(made)
    storage = volumes.storage_path(tmp_path, "dev", "kafka-0", made_by.suffix)
    storage.parent.mkdir(parents=True)
    storage.mkdir() if made == "gocryptfs" else storage.write_bytes(b"ciphertext")
    vols = volumes.EncryptedVolumes(tmp_path, tmp_path / "certs" / "dev", "dev", str(tmp_path / "run" / "dev"),
                                    ("zk-0", "kafka-0"), 1, lambda: "pw", backend=volumes.make_backend(configured))
    with pytest.raises(SecureKafkaError, match=(
            rf"kafka-0{made_by.suffix}: the volume of kafka-0 is {made}, but volumeBackend is {configured}: "
            rf"set secure-kafka:volumeBackend to {made} in Pulumi.dev.yaml, or `secure-kafka down dev --purge`")):
        vols.open()
    assert not (tmp_path / "certs").exists()  # not even zk-0's key: checked before anything is made
    assert sorted(p.name for p in storage.parent.iterdir()) == [storage.name]
    # down and status still find it, through the backend that made it.
    assert vols.backend_of("kafka-0").name == made and vols.backend_of("zk-0").name == configured
    assert vols.states() == {"zk-0": volumes.ABSENT, "kafka-0": volumes.LOCKED}


def test_gocryptfs_password_is_derived_per_key_and_is_not_the_key():
    password = gocryptfs.gocryptfs_password(KEY)
    assert len(password) == 64 and int(password, 16) >= 0  # 256 bits, hex: one line on stdin
    assert password == gocryptfs.gocryptfs_password(KEY)
    assert password != gocryptfs.gocryptfs_password(os.urandom(volumes.MASTER_KEY_BYTES))
    assert KEY.hex().encode() not in password and password not in KEY.hex().encode()


def test_gocryptfs_gets_its_password_on_stdin_only(tmp_path, monkeypatch):
    seen = {}

    def fake_run(argv, **kwargs):
        seen.update(argv=argv, **kwargs)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(gocryptfs.subprocess, "run", fake_run)
    monkeypatch.setattr(gocryptfs.os, "chown", lambda *args: None)
    monkeypatch.setattr(gocryptfs, "_require_unprivileged_fuse", lambda: None)
    volume = volumes.Volume("dev", "kafka-0", tmp_path / "kafka-0.gocryptfs", tmp_path / "mnt", tmp_path / "mnt" / "data", 0)
    volumes.GocryptfsBackend().create(volume, KEY)
    password = gocryptfs.gocryptfs_password(KEY)
    assert seen["input"] == password
    assert not any(password.decode() in arg or KEY.hex() in arg for arg in seen["argv"])
    assert "env" not in seen  # the daemon inherits our environment: nothing is added to it
    # Unprivileged (setpriv, so that Python may vfork), and handed the ciphertext directory as a
    # descriptor (its ancestors may be 0700).
    uid = volumes.CONTAINER_UID
    assert seen["argv"][:6] == ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "gocryptfs", "-init"]
    assert volume.storage.is_dir() and not volume.partial.exists()
    assert not {"user", "group", "extra_groups", "preexec_fn"} & set(seen)
    assert seen["argv"][-1] == f"/proc/self/fd/{seen['pass_fds'][0]}"


@pytest.mark.parametrize(
    ("device_mode", "conf", "has_account", "message"),
    [
        (0o666, "user_allow_other\n", True, None),
        (0o666, "# user_allow_other\nmount_max = 1000\n", True, "lacks user_allow_other"),
        (0o666, None, True, "lacks user_allow_other"),
        (0o600, "user_allow_other\n", True, "mode 600: gocryptfs runs as uid 10001"),
        (0o660, "user_allow_other\n", True, "mode 660"),
        (0o666, "user_allow_other\n", False, "uid 10001 has no account on this host"),
        (None, "user_allow_other\n", True, "has no FUSE, use volumeBackend fscrypt"),
    ],
)
def test_unprivileged_fuse_prerequisites(tmp_path, monkeypatch, device_mode, conf, has_account, message):
    device, fuse_conf = tmp_path / "fuse", tmp_path / "fuse.conf"
    if device_mode is not None:
        device.touch()
        device.chmod(device_mode)
    if conf is not None:
        fuse_conf.write_text(conf)

    def getpwuid(uid):
        if not has_account:
            raise KeyError(uid)
        return ("secure-kafka",)

    monkeypatch.setattr(gocryptfs, "FUSE_DEVICE", device)
    monkeypatch.setattr(gocryptfs, "FUSE_CONF", fuse_conf)
    monkeypatch.setattr(gocryptfs.pwd, "getpwuid", getpwuid)
    if message is None:
        gocryptfs._require_unprivileged_fuse()
        return
    with pytest.raises(SecureKafkaError, match=message) as caught:
        gocryptfs._require_unprivileged_fuse()
    assert "\n" not in str(caught.value) and "./run setup" in str(caught.value) or "fscrypt" in str(caught.value)


@pytest.mark.parametrize("error, expected", [
    (errno.ENODATA, None),  # no policy on the directory
    (errno.ENOTTY, None),  # tmpfs, a FUSE mount: no fscrypt at all
    (errno.EOPNOTSUPP, None),  # ext4 without the encrypt feature
    (errno.EACCES, OSError),  # anything else is not "unencrypted"
])
def test_a_directory_without_fscrypt_has_no_policy(monkeypatch, error, expected):
    """`status` once died with a raw ENOTTY where a volume's mountpoint was no fscrypt filesystem."""
    def ioctl(*_args):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(fscrypt, "_ioctl", ioctl)
    if expected is OSError:
        with pytest.raises(OSError):
            fscrypt.fscrypt_policy_identifier("/somewhere")
    else:
        assert fscrypt.fscrypt_policy_identifier("/somewhere") is None


def test_a_real_directory_without_fscrypt_has_no_policy(tmp_path):
    assert fscrypt.fscrypt_policy_identifier(str(tmp_path)) is None


def test_open_reports_a_volume_whose_daemon_died_as_remounted(tmp_path):
    vols, backend = env_volumes(tmp_path)
    vols.open()
    backend.state = lambda volume: volumes.UNSERVED if volume.node == "kafka-0" else volumes.UNLOCKED
    assert vols.open() == {"zk-0": "unlocked", "kafka-0": "remounted"}
    assert backend.calls[-2:] == [("unlock", "zk-0"), ("unlock", "kafka-0")]


@pytest.mark.parametrize("fstype, serving, plaintext, state", [
    ("fuse.gocryptfs", True, True, volumes.UNLOCKED),
    ("fuse.gocryptfs", True, False, volumes.LOCKED),
    ("fuse.gocryptfs", False, True, volumes.UNSERVED),   # its daemon died: the mount stays behind
    (None, False, False, volumes.LOCKED),
    ("ext4", False, False, volumes.LOCKED),              # another backend's mount is not ours to call unserved
])
def test_gocryptfs_state(tmp_path, monkeypatch, fstype, serving, plaintext, state):
    volume = volumes.Volume("dev", "kafka-0", tmp_path / "kafka-0.gocryptfs", tmp_path / "mnt", tmp_path / "mnt" / "data", 0)
    volume.storage.mkdir()
    if plaintext:
        volume.plaintext.mkdir(parents=True)
    monkeypatch.setattr(gocryptfs, "mount_entry", lambda target: ("/proc/self/fd/3", fstype) if fstype else None)
    monkeypatch.setattr(volumes.GocryptfsBackend, "_serving", staticmethod(lambda volume: serving))
    assert volumes.GocryptfsBackend().state(volume) == state


@pytest.mark.parametrize("total, free, warning", [
    (2**30, 205 * 2**20, None),                                            # 80 % used: quiet
    (2**30, 150 * 2**20, "volume of kafka-0 is 85% full (150 MiB free)"),
    (2**30, 32 * 2**20, "volume of kafka-0 is 96% full (32 MiB free)"),     # a node still starts
    (2**30, 32 * 2**20 - 1, "volume of kafka-0 is full (31 MiB free): "),   # under the start floor
    (2**30, 2**19, "volume of kafka-0 is full (0 MiB free): "),
    (100 * 2**20, 20 * 2**20, "volume of kafka-0 is full (20 MiB free): "),  # small: full at 80 %
    (0, 0, None),                                                          # nothing to measure
])
def test_fullness_warning(total, free, warning):
    said = volumes.fullness_warning("kafka-0", total, free, "dev")
    assert (said is None) if warning is None else said.startswith(warning), said
    if said:
        assert "secure-kafka up dev" in said or "before it fills" in said


def test_fullness_is_measured_on_unlocked_volumes_only(tmp_path):
    vols, backend = env_volumes(tmp_path)
    vols.open()
    vols.volume("kafka-0").plaintext.mkdir(parents=True)
    backend.state = lambda volume: volumes.UNLOCKED if volume.node == "kafka-0" else volumes.LOCKED
    measured = vols.fullness()
    assert list(measured) == ["kafka-0"]
    stats = os.statvfs(tmp_path)
    assert measured["kafka-0"][0] == stats.f_blocks * stats.f_frsize
