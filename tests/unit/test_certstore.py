"""certstore: an environment's PKI on disk, its bad inputs, and real TLS handshakes with it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from secure_kafka import pki
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles, settings
from secure_kafka.pki import certstore, keyfile
from secure_kafka.pki.certstore import CertStore
from secure_kafka.pki.secretstore import SecretStore, store_password_name

AS_ROOT = os.geteuid() == 0
PROD_PASSPHRASE = "a long enough prod passphrase"


@pytest.fixture
def project(tmp_path, monkeypatch) -> settings.Project:
    monkeypatch.delenv(certstore.PASSPHRASE_ENV, raising=False)
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    return settings.Project(tmp_path)


def make_store(project, env="dev", profile=profiles.DEV, prompt=None, **overrides) -> CertStore:
    defaults = dataclasses.replace(settings.defaults(env, profile), project_id=project.id)
    return CertStore(project, dataclasses.replace(defaults, **overrides), prompt=prompt)


@pytest.fixture
def dev(project) -> CertStore:
    store = make_store(project)
    store.init()
    return store


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and content: 'nothing changed' is equality."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def leftovers(project: settings.Project) -> list[str]:
    """Temp dirs of builds that should have been cleaned up."""
    return sorted(p.name for p in project.root.rglob(".*") if ".init-" in p.name or ".new-" in p.name or "previous" in p.name)


# -- init: what it creates -------------------------------------------------------------------


def test_init_creates_the_documented_layout(dev):
    root = dev.root
    expected = {
        "passphrase", "secrets.json", "manifest.json", "ca", "ca/ca.crt", "ca/ca.key",
        "nodes", "nodes/zk-0", "nodes/kafka-0", "clients", "clients/admin", "crl", "crl/secure-kafka-dev-ca.crl",
        *(f"nodes/{n}/{f}" for n in ("zk-0", "kafka-0")
          for f in ("keystore.p12", "truststore.p12", "node.crt", "secure-kafka-dev-ca.crl")),
        *(f"clients/admin/{f}" for f in ("client.crt", "client.key", "ca.crt", "keystore.p12", "truststore.p12")),
    }
    assert set(snapshot(root)) == expected
    public = {"ca/ca.crt", "clients/admin/client.crt", "clients/admin/ca.crt", "nodes/zk-0/node.crt", "nodes/kafka-0/node.crt",
              "crl/secure-kafka-dev-ca.crl", *(f"nodes/{n}/secure-kafka-dev-ca.crl" for n in ("zk-0", "kafka-0"))}
    for relative in expected:
        path = root / relative
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, relative
        else:
            assert mode == (0o644 if relative in public else 0o600), relative
    assert root.stat().st_mode & 0o777 == 0o700
    with pytest.raises(TypeError, match="encrypted"):  # the CA key is useless without the passphrase
        serialization.load_pem_private_key((root / "ca/ca.key").read_bytes(), password=None)


def test_a_ca_key_of_an_earlier_version_is_rewritten_with_scrypt_on_unlock(dev):
    passphrase = dev.passphrase()
    ca = dev.load()
    weak = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(passphrase.encode()))
    dev.ca_key_path.write_bytes(weak)  # what round one wrote: PBKDF2, 2048 iterations
    assert not keyfile.is_scrypt_protected(dev.ca_key_path.read_bytes())
    cert_before = dev.ca_cert_path.read_bytes()
    assert dev.load().cert == ca.cert
    migrated = dev.ca_key_path.read_bytes()
    assert keyfile.is_scrypt_protected(migrated) and migrated != weak
    assert dev.ca_key_path.stat().st_mode & 0o777 == 0o600 and dev.ca_cert_path.read_bytes() == cert_before
    reloaded = serialization.load_pem_private_key(migrated, passphrase.encode())
    assert reloaded.private_numbers() == ca.key.private_numbers()
    assert dev.load().cert == ca.cert and dev.ca_key_path.read_bytes() == migrated  # once only
    assert dev.verify() == []


@pytest.mark.skipif(not AS_ROOT, reason="only root can hand files to the container user")
def test_node_dirs_belong_to_the_container_user_and_client_dirs_to_root(dev):
    for node in ("zk-0", "kafka-0"):
        directory = dev.node_dir(node)
        for path in (directory, *directory.iterdir()):
            assert (path.stat().st_uid, path.stat().st_gid) == (certstore.CONTAINER_UID, certstore.CONTAINER_UID)
    for path in (dev.root, dev.root / "ca" / "ca.key", dev.client_dir("admin"), dev.client_dir("admin") / "client.key"):
        assert path.stat().st_uid == 0


def test_node_certificates_have_the_topology_sans(dev):
    for node in dev.settings.topology.nodes:
        stores = dev.node_stores(node.name)
        keystore = pkcs12.load_pkcs12(stores.keystore.read_bytes(), stores.password.encode())
        cert = keystore.cert.certificate
        expected = list(node.dns_names) + (["localhost", "127.0.0.1"] if node.role == "broker" else [])
        assert pki.sans_of(cert) == expected
        assert pki.extended_key_usages(cert) == {"serverAuth", "clientAuth"}
        assert cert.subject.rfc4514_string() == f"CN={node.name},OU={node.role},O=secure-kafka,L=dev"
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=825)
        assert (dev.node_dir(node.name) / "node.crt").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)


def test_stores_open_with_their_secret_store_password(dev):
    ca_cert = x509.load_pem_x509_certificate(dev.ca_cert_path.read_bytes())
    secrets = SecretStore(dev.root / "secrets.json")
    for owner, stores in [("zk-0", dev.node_stores("zk-0")), ("kafka-0", dev.node_stores("kafka-0")),
                          ("admin", dev.client_files("admin").stores)]:
        assert stores.password == secrets.get(store_password_name(owner))
        keystore = pkcs12.load_pkcs12(stores.keystore.read_bytes(), stores.password.encode())
        assert keystore.cert.friendly_name == owner.encode()
        assert pki.public_keys_match(keystore.key, keystore.cert.certificate)
        assert [c.certificate for c in keystore.additional_certs] == [ca_cert]
        truststore = pkcs12.load_pkcs12(stores.truststore.read_bytes(), stores.password.encode())
        assert truststore.key is None and [c.certificate for c in truststore.additional_certs] == [ca_cert]
    assert len({dev.node_stores(n).password for n in ("zk-0", "kafka-0")}) == 2  # one password per owner


def test_admin_client_pem_files(dev):
    files = dev.client_files("admin")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    assert pki.public_keys_match(key, cert)
    assert cert.subject.rfc4514_string() == "CN=admin,OU=client,O=secure-kafka,L=dev"
    assert pki.extended_key_usages(cert) == {"clientAuth"}
    assert files.ca.read_bytes() == dev.ca_cert_path.read_bytes()
    assert files.directory == dev.root / "clients" / "admin"


def test_manifest_records_every_certificate(dev):
    document = json.loads(dev.manifest_path.read_text())
    assert document["format"] == 1 and document["env"] == "dev"
    by_name = {r["name"]: r for r in document["certificates"]}
    assert set(by_name) == {"ca", "zk-0", "kafka-0", "admin"}
    for name, record in by_name.items():
        path = {"ca": "ca/ca.crt", "admin": "clients/admin/client.crt"}.get(name, f"nodes/{name}/node.crt")
        cert = x509.load_pem_x509_certificate((dev.root / path).read_bytes())
        assert record["sha256"] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        assert record["serial"] == format(cert.serial_number, "x")
        assert record["subject"] == cert.subject.rfc4514_string()
        assert record["sans"] == pki.sans_of(cert)
        assert record["not_after"] == cert.not_valid_after_utc.isoformat()
        assert record["generation"] == 1 and record["active"] is True


def test_manifest_keeps_generations():
    manifest = certstore.Manifest("dev", [])
    cert = pki.CA.create("ca", "ec-p256", 10, "dev").cert
    first = manifest.add(certstore.CertRecord.of("kafka-0", "broker", cert, "nodes/kafka-0"))
    second = manifest.add(certstore.CertRecord.of("kafka-0", "broker", cert, "nodes/kafka-0"))
    assert (first.generation, second.generation) == (1, 2)
    assert [(r.generation, r.active) for r in manifest.records] == [(1, False), (2, True)]
    assert manifest.current("kafka-0") == second


def test_list_and_verify_of_a_fresh_environment(dev):
    records = dev.list()
    assert [r.name for r in records] == ["ca", "zk-0", "kafka-0", "admin"]
    assert all(r.days_left in (824, 825) for r in records if r.kind != "ca")
    assert dev.verify() == []


def test_prod_shape(project, monkeypatch):
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, PROD_PASSPHRASE)
    store = make_store(project, "prod", profiles.PROD)
    records = store.init()
    assert [r.name for r in records] == ["ca", "zk-0", "zk-1", "zk-2", "kafka-0", "kafka-1", "kafka-2", "admin"]
    assert not store.passphrase_path.exists()  # prod never keeps its passphrase on disk
    cert = x509.load_pem_x509_certificate((store.node_dir("kafka-2") / "node.crt").read_bytes())
    assert cert.public_key().curve.name == "secp384r1"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=397)
    assert store.verify() == []


# -- the passphrase ----------------------------------------------------------------------------


def test_dev_generates_and_keeps_its_passphrase(dev):
    kept = dev.passphrase_path.read_text().strip()
    assert len(kept) >= 40 and dev.passphrase_path.stat().st_mode & 0o777 == 0o600
    pki.CA.load(dev.ca_cert_path, dev.ca_key_path, kept)
    # A fresh process finds it again without env var or prompt.
    assert CertStore(dev.project, dev.settings).passphrase() == kept


def test_env_var_passphrase_wins_and_is_not_written(project, monkeypatch):
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, "from the environment")
    store = make_store(project)
    store.init()
    assert not store.passphrase_path.exists()
    pki.CA.load(store.ca_cert_path, store.ca_key_path, "from the environment")


def test_prompted_passphrase(project):
    asked = []
    store = make_store(project, "prod", profiles.PROD, prompt=lambda env: asked.append(env) or PROD_PASSPHRASE)
    store.init()
    assert asked == ["prod", "prod"]  # asked twice: a typo would lock the CA key for good
    pki.CA.load(store.ca_cert_path, store.ca_key_path, PROD_PASSPHRASE)


def test_prompted_passphrases_must_match(project):
    answers = iter([PROD_PASSPHRASE, PROD_PASSPHRASE + "x"])
    store = make_store(project, "prod", profiles.PROD, prompt=lambda env: next(answers))
    with pytest.raises(SecureKafkaError) as error:
        store.init()
    assert str(error.value) == "the two passphrases differ: run the command again and type the same one twice"
    assert not store.root.exists() and leftovers(project) == []


@pytest.mark.parametrize(
    "env_value, prompt_value, message",
    [
        (None, None, "profile prod needs a passphrase for the CA key of 'prod': set SECURE_KAFKA_PASSPHRASE"),
        ("short", None, "SECURE_KAFKA_PASSPHRASE is shorter than 12 characters, too weak for profile prod: use a longer one"),
    ],
)
def test_prod_without_a_usable_passphrase_is_refused(project, monkeypatch, env_value, prompt_value, message):
    if env_value:
        monkeypatch.setenv(certstore.PASSPHRASE_ENV, env_value)
    store = make_store(project, "prod", profiles.PROD, prompt=lambda env: prompt_value)
    with pytest.raises(SecureKafkaError) as error:
        store.init()
    assert str(error.value) == message
    assert not (project.root / "certs" / "prod").exists() and leftovers(project) == []


def test_existing_env_without_passphrase_is_an_error(project, monkeypatch):
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, PROD_PASSPHRASE)
    make_store(project, "prod", profiles.PROD).init()
    monkeypatch.delenv(certstore.PASSPHRASE_ENV)
    with pytest.raises(SecureKafkaError, match="^no passphrase for environment 'prod': set SECURE_KAFKA_PASSPHRASE"):
        make_store(project, "prod", profiles.PROD).load()


def test_init_keeps_what_predates_the_ca(project):
    """A passphrase and secrets made before the CA (volume setup, users) survive init."""
    root = project.certs_dir("dev")
    root.mkdir(parents=True, mode=0o700)
    (root / "passphrase").write_text("made earlier by the volume setup\n")
    SecretStore(root / "secrets.json").set("scram:app", "kept-scram-password")
    (root / "runtime" / "kafka-0").mkdir(parents=True)
    (root / "runtime" / "kafka-0" / "server.properties").write_text("x=1\n")
    store = make_store(project)
    store.init()
    pki.CA.load(store.ca_cert_path, store.ca_key_path, "made earlier by the volume setup")
    assert SecretStore(root / "secrets.json").get("scram:app") == "kept-scram-password"
    assert (root / "runtime" / "kafka-0" / "server.properties").read_text() == "x=1\n"
    assert store.verify() == [] and leftovers(project) == []


# -- bad input ---------------------------------------------------------------------------------


def test_init_over_an_existing_environment_is_refused_and_changes_nothing(dev):
    before = snapshot(dev.root)
    with pytest.raises(SecureKafkaError) as error:
        make_store(dev.project).init()
    assert str(error.value) == (
        "certs/dev/ca exists already: environment 'dev' has its PKI; use `secure-kafka certs rotate dev` to renew it"
    )
    assert snapshot(dev.root) == before and leftovers(dev.project) == []


@pytest.mark.parametrize(
    "env, profile, overrides, message",
    [
        ("prod", profiles.PROD, {"key_algorithm": "ec-p256"},
         "secure-kafka:keyAlgorithm 'ec-p256' is not allowed by profile prod: use one of ec-p384, rsa-3072, rsa-4096"),
        ("prod", profiles.PROD, {"leaf_validity_days": 398},
         "secure-kafka:leafValidityDays 398 is outside profile prod's bound of 1..397 days: lower it in Pulumi.prod.yaml"),
        ("dev", profiles.DEV, {"leaf_validity_days": 0},
         "secure-kafka:leafValidityDays 0 is outside profile dev's bound of 1..825 days: lower it in Pulumi.dev.yaml"),
        ("dev", profiles.DEV, {"key_algorithm": "ed25519"},
         "secure-kafka:keyAlgorithm 'ed25519' is not allowed by profile dev: use one of ec-p256, ec-p384, rsa-3072, rsa-4096"),
    ],
)
def test_profile_bounds(project, monkeypatch, env, profile, overrides, message):
    monkeypatch.setenv(certstore.PASSPHRASE_ENV, PROD_PASSPHRASE)
    with pytest.raises(SecureKafkaError) as error:
        make_store(project, env, profile, **overrides).init()
    assert str(error.value) == message
    assert not (project.root / "certs").exists()


def test_a_failure_mid_build_leaves_nothing(project, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "certs/.dev.init-x/clients/admin/keystore.p12")

    monkeypatch.setattr(CertStore, "write_client_files", staticmethod(disk_full))
    with pytest.raises(SecureKafkaError) as error:
        make_store(project).init()
    assert str(error.value) == (
        "certs/.dev.init-x/clients/admin/keystore.p12: No space left on device: "
        "fix permissions or free space, then run `secure-kafka certs init dev` again"
    )
    assert list((project.root / "certs").iterdir()) == []


def test_certs_path_not_a_directory(project):
    (project.root / "certs").write_text("oops")
    with pytest.raises(SecureKafkaError, match=r"certs: File exists: fix permissions or free space, then run"):
        make_store(project).init()


def test_missing_environment(project):
    store = make_store(project)
    message = "certs/dev/ca/ca.crt not found: create the PKI with `secure-kafka certs init dev`"
    for action in (store.load, store.list):
        with pytest.raises(SecureKafkaError) as error:
            action()
        assert str(error.value) == message
    assert store.verify() == ["certs/dev/ca/ca.crt: missing: create the PKI with `secure-kafka certs init dev`"]


def corrupt_ca_cert(store: CertStore) -> None:
    store.ca_cert_path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def remove_ca_cert(store: CertStore) -> None:
    store.ca_cert_path.unlink()


def wrong_passphrase(store: CertStore) -> None:
    store.passphrase_path.write_text("not the passphrase\n")


def foreign_ca_key(store: CertStore) -> None:
    other = pki.CA.create("other", "ec-p256", 10, "dev")
    key = other.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(store.passphrase().encode()),
    )
    store.ca_key_path.write_bytes(key)


@pytest.mark.parametrize(
    "damage, message",
    [
        (corrupt_ca_cert, r"^/.*/certs/dev/ca/ca\.crt: not a PEM certificate \(damaged\?\): restore it from backup$"),
        (remove_ca_cert, r"^/.*/certs/dev/ca/ca\.crt: CA certificate missing: restore it from backup$"),
        (wrong_passphrase, r"^/.*/certs/dev/ca/ca\.key: cannot decrypt the CA key: wrong passphrase \(check SECURE_KAFKA_PASSPHRASE\) or a damaged file$"),
        (foreign_ca_key, r"^/.*/certs/dev/ca/ca\.key: the key does not belong to ca\.crt: restore the matching pair from backup$"),
    ],
)
def test_bad_ca(dev, damage, message):
    damage(dev)
    store = make_store(dev.project)  # a fresh process: nothing cached
    before = snapshot(dev.root)
    with pytest.raises(SecureKafkaError, match=message):
        store.load()
    with pytest.raises(SecureKafkaError, match=message):
        store.add_client("app")
    problems = store.verify()
    assert len(problems) == 1 and re.match(message, problems[0])
    assert snapshot(dev.root) == before and leftovers(dev.project) == []


def test_expired_ca(project, monkeypatch):
    """A CI environment created 40 days ago: its 30-day CA and 7-day leaves have expired."""
    long_ago = pki.now() - dt.timedelta(days=40)
    with monkeypatch.context() as past:
        past.setattr(pki, "now", lambda: long_ago)
        store = make_store(project, "ci", profiles.CI)
        store.init()
    expired_on = (long_ago - pki.CLOCK_SKEW + dt.timedelta(days=30)).strftime("%Y-%m-%d")
    with pytest.raises(SecureKafkaError) as error:
        store.load()
    assert str(error.value) == f"certs/ci/ca/ca.crt: the CA expired on {expired_on}: replace it with `secure-kafka certs rotate ci --ca`"
    problems = store.verify()
    assert problems[0] == f"certs/ci/ca/ca.crt: certificate expired on {expired_on}: replace it with `secure-kafka certs rotate ci --ca`"
    assert "certs/ci/nodes/zk-0/keystore.p12: certificate expired on" in problems[1]
    assert all(r.days_left < 0 for r in store.list())


def test_expiry_inside_the_warning_window(project, monkeypatch):
    """CI leaves live 7 days and warn 1 day ahead: issued 6.5 days ago, they are due."""
    with monkeypatch.context() as past:
        past.setattr(pki, "now", lambda: pki.dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=6, hours=12))
        store = make_store(project, "ci", profiles.CI)
        store.init()
    problems = store.verify()
    assert len(problems) == 4  # zk-0, kafka-0, admin's client.crt and admin's keystore
    assert problems[0].startswith("certs/ci/nodes/zk-0/keystore.p12: certificate expires in 0 days (")
    assert problems[0].endswith(
        "), inside the 1-day warning window: re-issue it with `secure-kafka certs rotate ci --node zk-0`"
    )
    assert "clients/admin" in problems[2] and "--client admin" in problems[2]


def truncate_keystore(store: CertStore) -> None:
    path = store.node_dir("kafka-0") / "keystore.p12"
    path.write_bytes(path.read_bytes()[:200])


def remove_truststore(store: CertStore) -> None:
    (store.node_dir("zk-0") / "truststore.p12").unlink()


def mismatched_client_key(store: CertStore) -> None:
    key = pki.generate_key("ec-p256").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (store.client_dir("admin") / "client.key").write_bytes(key)


def fewer_sans(store: CertStore) -> None:
    ca = store.load()
    narrow = ca.issue_cert("kafka-0", "broker", ["kafka-0"], validity_days=100, server=True)
    stores = store.node_stores("kafka-0")
    stores.keystore.write_bytes(narrow.pkcs12_keystore(stores.password))
    (store.node_dir("kafka-0") / "node.crt").write_bytes(narrow.cert_pem())


def foreign_truststore(store: CertStore) -> None:
    stores = store.node_stores("kafka-0")
    stores.truststore.write_bytes(pki.pkcs12_truststore([pki.CA.create("x", "ec-p256", 5, "dev").cert], stores.password))


def foreign_keystore(store: CertStore) -> None:
    foreign = pki.CA.create("x", "ec-p256", 200, "dev").issue_cert("admin", "client", validity_days=100)
    stores = store.client_files("admin").stores
    stores.keystore.write_bytes(foreign.pkcs12_keystore(stores.password))


def stale_node_pem(store: CertStore) -> None:
    other = store.load().issue_cert("zk-0", "zookeeper", ["zk-0"], validity_days=100, server=True)
    (store.node_dir("zk-0") / "node.crt").write_bytes(other.cert_pem())


def grown_topology(store: CertStore) -> None:
    store.settings = dataclasses.replace(store.settings, brokers=2)


def lost_store_password(store: CertStore) -> None:
    store.secrets.remove(store_password_name("kafka-0"))


def missing_admin(store: CertStore) -> None:
    shutil.rmtree(store.client_dir("admin"))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (truncate_keystore, [
            "certs/dev/nodes/kafka-0/keystore.p12: does not open with its password from secrets.json (damaged or half-written): "
            "re-issue it with `secure-kafka certs rotate dev --node kafka-0`"]),
        (remove_truststore, [
            "certs/dev/nodes/zk-0/truststore.p12: missing: re-issue it with `secure-kafka certs rotate dev --node zk-0`"]),
        (mismatched_client_key, [
            "certs/dev/clients/admin/client.key: private key does not match client.crt: "
            "re-issue it with `secure-kafka certs rotate dev --client admin`"]),
        (fewer_sans, [
            "certs/dev/nodes/kafka-0/keystore.p12: SANs lack 127.0.0.1, localhost, {network}-kafka-0, {network}-kafka-0.{network}: "
            "re-issue it with `secure-kafka certs rotate dev --node kafka-0`",
            "certs/dev/nodes/kafka-0/keystore.p12: certificate is not the one manifest.json records for 'kafka-0': "
            "re-issue it with `secure-kafka certs rotate dev --node kafka-0`"]),
        (foreign_truststore, [
            "certs/dev/nodes/kafka-0/truststore.p12: does not trust the environment's CA: "
            "re-issue it with `secure-kafka certs rotate dev --node kafka-0`"]),
        (foreign_keystore, [
            "certs/dev/clients/admin/keystore.p12: certificate not signed by the environment's CA: "
            "re-issue it with `secure-kafka certs rotate dev --client admin`"]),
        (stale_node_pem, [
            "certs/dev/nodes/zk-0/node.crt: differs from the certificate in keystore.p12: "
            "re-issue it with `secure-kafka certs rotate dev --node zk-0`"]),
        (grown_topology, [
            "certs/dev/nodes/kafka-1: no certificate for node kafka-1: re-issue it with `secure-kafka certs rotate dev --node kafka-1`"]),
        (lost_store_password, [
            "certs/dev/secrets.json: no store:kafka-0 password: restore it from backup, or re-issue the stores of kafka-0 "
            "with `secure-kafka certs rotate dev`"]),
        (missing_admin, [
            "certs/dev/clients/admin: missing (every environment has an admin principal): "
            "re-issue it with `secure-kafka certs rotate dev --client admin`"]),
    ],
)
def test_verify_finds_each_problem(dev, damage, expected):
    damage(dev)
    assert dev.verify() == [line.replace("{network}", dev.settings.topology.network) for line in expected]


def test_verify_never_shows_secrets(dev):
    truncate_keystore(dev)
    mismatched_client_key(dev)
    text = "\n".join(dev.verify())
    for secret in (*json.loads((dev.root / "secrets.json").read_text()).values(), dev.passphrase()):
        assert secret not in text


# -- clients -----------------------------------------------------------------------------------


def test_add_client(dev):
    files = dev.add_client("billing-app")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=billing-app,OU=client,O=secure-kafka,L=dev"
    assert pki.extended_key_usages(cert) == {"clientAuth"}
    assert files.directory == dev.client_dir("billing-app") and dev.has_client("billing-app")
    assert files.key.stat().st_mode & 0o777 == 0o600 and files.directory.stat().st_mode & 0o777 == 0o700
    keystore = pkcs12.load_pkcs12(files.stores.keystore.read_bytes(), files.stores.password.encode())
    assert keystore.cert.certificate == cert
    assert [r.name for r in dev.list()] == ["ca", "zk-0", "kafka-0", "admin", "billing-app"]
    assert dev.verify() == [] and leftovers(dev.project) == []


@pytest.mark.parametrize(
    "principal, message",
    [
        ("admin", "certs/dev/clients/admin exists already: principal 'admin' has a certificate"),
        ("kafka-0", "client principal 'kafka-0' looks like a node name (reserved: its certificate would act as that node): choose another name"),
        ("zk-12", "client principal 'zk-12' looks like a node name (reserved: its certificate would act as that node): choose another name"),
        ("ZK-1", "client principal 'ZK-1' looks like a node name (reserved: its certificate would act as that node): choose another name"),
        ("ANONYMOUS", "client principal 'ANONYMOUS' is reserved (Kafka's unauthenticated principal: its certificate would map to it): choose another name"),
        ("Anonymous", "client principal 'Anonymous' is reserved (Kafka's unauthenticated principal: its certificate would map to it): choose another name"),
        ("has space", "invalid client principal 'has space': use 1-64 letters, digits, '.', '_' or '-' (the principal mapping rule only maps those)"),
        ("../escape", "invalid client principal '../escape': use 1-64 letters, digits, '.', '_' or '-' (the principal mapping rule only maps those)"),
    ],
)
def test_add_client_refusals(dev, principal, message):
    before = snapshot(dev.root)
    with pytest.raises(SecureKafkaError) as error:
        dev.add_client(principal)
    assert str(error.value) == message
    assert snapshot(dev.root) == before


def test_add_client_failure_leaves_nothing(dev, monkeypatch):
    before = snapshot(dev.root)

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(pki.IssuedCert, "pkcs12_keystore", fail)
    with pytest.raises(RuntimeError):
        dev.add_client("app")
    after = snapshot(dev.root)
    after.pop("secrets.json")  # the store password of 'app' may already be saved: harmless
    before.pop("secrets.json")
    assert after == before and leftovers(dev.project) == []


def test_unknown_client(dev):
    with pytest.raises(SecureKafkaError) as error:
        dev.client_files("nobody")
    assert str(error.value) == "certs/dev/clients/nobody: no certificate for principal 'nobody': create it with `secure-kafka users add dev nobody`"


# -- real TLS handshakes on loopback ----------------------------------------------------------


def node_pem(store: CertStore, node: str, directory: Path) -> tuple[Path, Path]:
    """Cert and key of a node, out of its keystore, as PEM files for Python's ssl module."""
    stores = store.node_stores(node)
    keystore = pkcs12.load_pkcs12(stores.keystore.read_bytes(), stores.password.encode())
    cert_path, key_path = directory / f"{node}.crt", directory / f"{node}.key"
    cert_path.write_bytes(keystore.cert.certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        keystore.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> tuple[Exception | None, Exception | None]:
    """One TLS connection over loopback; returns the server's and the client's failure (or None)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, Exception | None] = {"server": None}

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(10)
        try:
            with server.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")
                tls.recv(1)  # wait for the client to close
        except (ssl.SSLError, OSError) as exc:
            outcome["server"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_error = None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname=hostname) as tls:
                # TLS 1.3 reports a refused client certificate only on the first read.
                assert tls.recv(2) == b"ok"
    except (ssl.SSLError, OSError, AssertionError) as exc:
        client_error = exc
    thread.join(10)
    listener.close()
    return outcome["server"], client_error


@pytest.fixture
def tls_envs(project, tmp_path) -> dict[str, object]:
    dev = make_store(project, "dev")
    dev.init()
    other = make_store(project, "other")
    other.init()
    pem_dir = tmp_path / "pem"
    pem_dir.mkdir()
    return {"dev": dev, "other": other, "broker_pem": node_pem(dev, "kafka-0", pem_dir)}


def server_context(cert_and_key: tuple[Path, Path], client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_and_key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(cert, key)
    return context


def test_tls_succeeds_with_the_environment_ca(tls_envs):
    dev = tls_envs["dev"]
    network = dev.settings.topology.network
    for hostname in ("localhost", f"{network}-kafka-0.{network}", "kafka-0"):
        assert handshake(server_context(tls_envs["broker_pem"]), client_context(dev.ca_cert_path), hostname) == (None, None)


def test_tls_fails_with_another_environments_ca(tls_envs):
    server_error, client_error = handshake(
        server_context(tls_envs["broker_pem"]), client_context(tls_envs["other"].ca_cert_path), "localhost"
    )
    assert isinstance(client_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in str(client_error)


def test_tls_fails_with_a_wrong_hostname(tls_envs):
    _, client_error = handshake(
        server_context(tls_envs["broker_pem"]), client_context(tls_envs["dev"].ca_cert_path), "kafka-1"
    )
    assert isinstance(client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(client_error)


def test_mtls_accepts_the_environments_client_and_refuses_a_foreign_one(tls_envs):
    dev, other = tls_envs["dev"], tls_envs["other"]
    admin, foreign = dev.client_files("admin"), other.client_files("admin")
    require_dev_clients = server_context(tls_envs["broker_pem"], client_ca=dev.ca_cert_path)
    assert handshake(require_dev_clients, client_context(dev.ca_cert_path, admin.cert, admin.key), "localhost") == (None, None)

    server_error, client_error = handshake(
        server_context(tls_envs["broker_pem"], client_ca=dev.ca_cert_path),
        client_context(dev.ca_cert_path, foreign.cert, foreign.key),
        "localhost",
    )
    assert isinstance(server_error, ssl.SSLError) and "certificate verify failed" in str(server_error)
    assert client_error is not None

    server_error, client_error = handshake(
        server_context(tls_envs["broker_pem"], client_ca=dev.ca_cert_path), client_context(dev.ca_cert_path), "localhost"
    )
    assert isinstance(server_error, ssl.SSLError) and "peer did not return a certificate" in str(server_error)
