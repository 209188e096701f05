"""Revocation in the PKI: CRLs parsed back, distribution points, revoke/re-add, re-runs and refusals.

The handshakes a revoked certificate must fail are in tests/integration/test_revocation_on_cluster.py.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from cryptography import x509
from test_certstore import make_store, project  # noqa: F401 (project is a fixture)

from secure_kafka import pki
from secure_kafka.build import render
from secure_kafka.errors import SecureKafkaError
from secure_kafka.pki import revocation
from secure_kafka.pki.certstore import CertStore
from secure_kafka.pki.manifest import Manifest


@pytest.fixture
def store(project) -> CertStore:  # noqa: F811
    store = make_store(project)
    store.init()
    return store


def crl_of(path) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(path.read_bytes())


def serial_of(store: CertStore, principal: str) -> int:
    return x509.load_pem_x509_certificate((store.client_dir(principal) / "client.crt").read_bytes()).serial_number


def node_crls(store: CertStore) -> list:
    return [store.node_dir(n.name) / revocation.crl_filename(store.load().cert) for n in store.settings.topology.nodes]


def test_a_crl_is_signed_by_its_ca_lists_the_serials_and_stays_fresh_while_the_ca_lives():
    ca = pki.CA.create("secure-kafka-dev-ca", "ec-p256", 30, env="dev")
    other = pki.CA.create("secure-kafka-dev-ca", "ec-p256", 30, env="dev")
    at = pki.now().replace(microsecond=0)
    crl = x509.load_der_x509_crl(ca.crl([(12345, at), (678, at)]).public_bytes(pki.serialization.Encoding.DER))
    assert crl.is_signature_valid(ca.cert.public_key())
    assert not crl.is_signature_valid(other.cert.public_key())  # a same-named CA cannot stand in
    assert crl.issuer == ca.cert.subject
    assert {r.serial_number for r in crl} == {12345, 678}
    assert crl.get_revoked_certificate_by_serial_number(12345).revocation_date_utc == at
    # Java refuses every certificate whose CRL is past its next update: it lasts as long as the CA.
    assert crl.next_update_utc == ca.not_after


def test_every_leaf_names_its_cas_crl_where_the_nodes_mount_their_tls_directory(store):
    assert revocation.CONTAINER_TLS_DIR == render.TLS_DIR
    expected = "file:///etc/kafka/tls/secure-kafka-dev-ca.crl"
    leaves = [store.node_dir(n.name) / "node.crt" for n in store.settings.topology.nodes]
    leaves.append(store.client_dir("admin") / "client.crt")
    for path in leaves:
        assert pki.crl_distribution_points(x509.load_pem_x509_certificate(path.read_bytes())) == [expected], path
    assert store.revocation_enabled()
    for path in node_crls(store):
        crl = crl_of(path)
        assert crl.is_signature_valid(store.load().cert.public_key()) and len(crl) == 0


def test_revoking_a_client_lists_it_in_every_node_crl_and_archives_its_files(store):
    store.add_client("app")
    old = serial_of(store, "app")
    revoked, issued = store.revoke_client("app", reissue=False)
    assert issued is None and int(revoked.serial, 16) == old and revoked.revoked
    assert not store.has_client("app")
    assert serial_of_archived(store, revoked) == old
    for path in [*node_crls(store), store.root / "crl" / "secure-kafka-dev-ca.crl"]:
        assert crl_of(path).get_revoked_certificate_by_serial_number(old) is not None, path
    assert [r.serial for r in store.revoked()] == [revoked.serial]
    assert all(r.name != "app" for r in store.list())


def serial_of_archived(store: CertStore, record) -> int:
    return x509.load_pem_x509_certificate((store.archived_client_dir(record) / "client.crt").read_bytes()).serial_number


def test_a_re_added_name_gets_a_new_certificate_and_the_old_one_stays_revoked(store):
    # The audit finding: `users add X`, remove, add again handed the first key holder the new user's grants.
    store.add_client("app")
    first = serial_of(store, "app")
    store.revoke_client("app", reissue=False)
    store.add_client("app")
    second = serial_of(store, "app")
    assert second != first
    crl = crl_of(node_crls(store)[0])
    assert crl.get_revoked_certificate_by_serial_number(first) is not None
    assert crl.get_revoked_certificate_by_serial_number(second) is None
    current = Manifest.load(store.manifest_path).current("app")
    assert current.generation == 2 and int(current.serial, 16) == second


def test_revoke_with_reissue_replaces_the_certificate_of_the_same_principal(store):
    store.add_client("app")
    old = serial_of(store, "app")
    revoked, issued = store.revoke_client("app", reissue=True)
    new = serial_of(store, "app")
    assert int(revoked.serial, 16) == old and int(issued.serial, 16) == new != old
    assert crl_of(node_crls(store)[0]).get_revoked_certificate_by_serial_number(old) is not None
    assert store.client_files("app").cert.exists()
    assert not [p for p in (store.root / "clients").iterdir() if p.name.startswith(".")]  # no staging left


def test_a_revocation_cut_off_after_the_manifest_finishes_on_the_re_run(store):
    store.add_client("app")
    old = serial_of(store, "app")
    manifest = Manifest.load(store.manifest_path)
    manifest.revoke("app", pki.now())
    manifest.save(store.manifest_path)  # killed here: files still in clients/, CRL not yet published
    assert crl_of(node_crls(store)[0]).get_revoked_certificate_by_serial_number(old) is None
    revoked, _ = store.revoke_client("app", reissue=False)
    assert revoked is None
    assert not store.has_client("app")
    assert crl_of(node_crls(store)[0]).get_revoked_certificate_by_serial_number(old) is not None


def test_expired_certificates_leave_the_crl(store):
    store.add_client("app")
    store.revoke_client("app", reissue=False)
    manifest = Manifest.load(store.manifest_path)
    later = pki.now() + dt.timedelta(days=store.settings.leaf_validity_days + 1)
    assert revocation.revoked_serials(manifest) and not revocation.revoked_serials(manifest, at=later)


@pytest.mark.parametrize(
    ("setup", "principal", "reissue", "message"),
    [
        ("legacy", "app", False, "predates revocation.*certs rotate dev"),
        ("rotating", "app", False, "rotation of 'dev' is in progress.*--resume"),
        (None, "kafka-0", True, "is a node of 'dev'.*--node kafka-0"),
        (None, "nobody", True, "no active certificate of client 'nobody'"),
    ],
    ids=["pki-without-crls", "rotation-in-progress", "node", "unknown"],
)
def test_revocation_refusals_name_the_fix_and_change_nothing(store, setup, principal, reissue, message):
    store.add_client("app")
    if setup == "legacy":
        shutil.rmtree(store.root / revocation.CRL_DIR)
    elif setup == "rotating":
        (store.root / "rotation").mkdir()
    before = store.manifest_path.read_bytes()
    with pytest.raises(SecureKafkaError, match=message):
        store.revoke_client(principal, reissue=reissue)
    assert store.manifest_path.read_bytes() == before and store.has_client("app")
