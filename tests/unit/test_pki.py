"""pki: keys, certificates and PKCS12 stores, parsed back and checked field by field."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secure_kafka import pki
from secure_kafka.errors import SecureKafkaError

# The rule brokers use to map certificate subjects onto principals (docs/architecture.md).
PRINCIPAL_RULE = re.compile(r"^CN=([a-zA-Z0-9._-]+),OU=.*$")


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.CA.create("secure-kafka-dev-ca", "ec-p256", 3650, "dev")


@pytest.fixture(scope="module")
def broker(ca: pki.CA) -> pki.IssuedCert:
    sans = ["kafka-0", "sk-dev-kafka-0", "sk-dev-kafka-0.sk-dev", "localhost", "127.0.0.1"]
    return ca.issue_cert("kafka-0", "broker", sans, validity_days=825, server=True, client=True)


@pytest.fixture(scope="module")
def client(ca: pki.CA) -> pki.IssuedCert:
    return ca.issue_cert("admin", "client", validity_days=825, server=False, client=True)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize(
    "algorithm, key_type, size",
    [("ec-p256", ec.EllipticCurvePrivateKey, 256), ("ec-p384", ec.EllipticCurvePrivateKey, 384),
     ("rsa-3072", rsa.RSAPrivateKey, 3072), ("rsa-4096", rsa.RSAPrivateKey, 4096)],
)
def test_generate_key_per_algorithm(algorithm, key_type, size):
    key = pki.generate_key(algorithm)
    assert isinstance(key, key_type)
    assert (key.curve.key_size if isinstance(key, ec.EllipticCurvePrivateKey) else key.key_size) == size


def test_unknown_key_algorithm_is_refused():
    with pytest.raises(SecureKafkaError, match="unknown key algorithm 'dsa-1024': use one of ec-p256"):
        pki.generate_key("dsa-1024")


def test_ca_is_a_root_that_signs_leaves_only(ca):
    cert = ca.cert
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert cert.subject.rfc4514_string() == "CN=secure-kafka-dev-ca,OU=ca,O=secure-kafka,L=dev"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=3650)


def test_node_certificate_fields(ca, broker):
    cert = broker.cert
    assert cert.subject.rfc4514_string() == "CN=kafka-0,OU=broker,O=secure-kafka,L=dev"
    assert PRINCIPAL_RULE.match(cert.subject.rfc4514_string()).group(1) == "kafka-0"
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kafka-0", "sk-dev-kafka-0", "sk-dev-kafka-0.sk-dev", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment and not usage.value.key_cert_sign  # EC key: no key transport
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=825)
    assert cert.not_valid_before_utc <= pki.now() <= cert.not_valid_after_utc
    assert pki.issued_by(cert, ca.cert)
    assert broker.chain == (ca.cert,)


def test_node_certificate_passes_rfc5280_server_and_client_validation(ca, broker):
    store = verification.Store([ca.cert])
    builder = verification.PolicyBuilder().store(store)
    for name in (verification.DNSName("sk-dev-kafka-0.sk-dev"), verification.DNSName("localhost")):
        chain = builder.build_server_verifier(name).verify(broker.cert, [])
        assert chain[-1] == ca.cert
    verified = builder.build_client_verifier().verify(broker.cert, [])
    assert verified.chain[-1] == ca.cert


def test_client_certificate_is_client_only(ca, client):
    cert = client.cert
    assert cert.subject.rfc4514_string() == "CN=admin,OU=client,O=secure-kafka,L=dev"
    assert PRINCIPAL_RULE.match(cert.subject.rfc4514_string()).group(1) == "admin"
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.sans_of(cert) == []
    # A stolen client certificate cannot serve as a broker.
    server_verifier = verification.PolicyBuilder().store(verification.Store([ca.cert])).build_server_verifier(
        verification.DNSName("localhost")
    )
    with pytest.raises(verification.VerificationError):
        server_verifier.verify(cert, [])


def test_rsa_leaf_gets_key_encipherment():
    rsa_ca = pki.CA.create("rsa-ca", "rsa-3072", 30, "prod")
    leaf = rsa_ca.issue_cert("kafka-0", "broker", ["kafka-0"], validity_days=10, key_algorithm="rsa-3072", server=True)
    usage = ext(leaf.cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert isinstance(leaf.key, rsa.RSAPrivateKey) and leaf.key.key_size == 3072


def test_leaf_never_outlives_its_ca():
    short_ca = pki.CA.create("short-ca", "ec-p256", 10, "ci")
    leaf = short_ca.issue_cert("kafka-0", "broker", ["kafka-0"], validity_days=397, server=True)
    assert leaf.cert.not_valid_after_utc == short_ca.cert.not_valid_after_utc


def test_subject_order_is_what_java_prints():
    name = pki.subject_name("app-1", "client", "staging")
    assert name.rfc4514_string() == "CN=app-1,OU=client,O=secure-kafka,L=staging"
    # DER order is L, O, OU, CN: RFC 2253/4514 printers (Java's getName() included) reverse it.
    assert [a.oid for a in name] == [NameOID.LOCALITY_NAME, NameOID.ORGANIZATION_NAME,
                                     NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "bad name"}, "invalid certificate name 'bad name'"),
        ({"name": "x,OU=broker"}, "invalid certificate name"),
        ({"kind": "ca"}, "invalid certificate kind 'ca'"),
        ({"validity_days": 0}, "certificate validity must be positive"),
        ({"server": False, "client": False}, "needs serverAuth, clientAuth or both"),
    ],
)
def test_issue_refuses_bad_requests(ca, kwargs, message):
    request = {"name": "app", "kind": "client", "validity_days": 10, "client": True, **kwargs}
    with pytest.raises(SecureKafkaError, match=re.escape(message)):
        ca.issue_cert(**request)


def test_expired_ca_refuses_to_issue(monkeypatch):
    long_ago = pki.now() - dt.timedelta(days=40)
    monkeypatch.setattr(pki, "now", lambda: long_ago)
    old_ca = pki.CA.create("old-ca", "ec-p256", 30, "ci")
    monkeypatch.undo()
    assert old_ca.is_expired()
    with pytest.raises(SecureKafkaError, match=r"expired on .*: replace it with `secure-kafka certs rotate ci --ca`"):
        old_ca.issue_cert("app", "client", validity_days=1)


# -- CA files ----------------------------------------------------------------------------


def test_ca_write_and_load_round_trip(ca, tmp_path):
    cert_path, key_path = ca.write(tmp_path, "right passphrase")
    assert cert_path.stat().st_mode & 0o777 == 0o644
    assert key_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(TypeError, match="encrypted"):  # the CA key is useless without the passphrase
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    loaded = pki.CA.load(cert_path, key_path, "right passphrase")
    assert loaded.cert == ca.cert and loaded.env == "dev"
    assert pki.public_keys_match(loaded.key, ca.cert)


def test_ca_key_is_stretched_with_scrypt_as_an_outside_parser_reads_it(ca, tmp_path):
    """An audit found PBKDF2 with 2048 iterations (cryptography's BestAvailableEncryption)."""
    _, key_path = ca.write(tmp_path, "right passphrase")
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(key_path)], capture_output=True, text=True, check=True).stdout
    objects = re.findall(r"prim: OBJECT\s+:(\S+)", parsed)
    assert objects == ["PBES2", "scrypt", "aes-256-cbc"], parsed
    after_scrypt = parsed.split(":scrypt", 1)[1]
    salt = re.search(r"OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)", after_scrypt)[1]
    n, r, p, length = (int(v, 16) for v in re.findall(r"prim: INTEGER\s+:([0-9A-F]+)", after_scrypt)[:4])
    assert len(bytes.fromhex(salt)) >= 16 and (n, r, p, length) == (2**15, 8, 1, 32)
    assert "PBKDF2" not in parsed and "hmacWithSHA" not in parsed


def test_ca_key_needs_a_passphrase(ca, tmp_path):
    with pytest.raises(SecureKafkaError, match="without a passphrase"):
        ca.write(tmp_path, "")
    assert list(tmp_path.iterdir()) == []


def _damage_cert(cert_path: Path, key_path: Path) -> None:
    cert_path.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")


def _truncate_key(cert_path: Path, key_path: Path) -> None:
    key_path.write_bytes(key_path.read_bytes()[:100])


def _garbage_key(cert_path: Path, key_path: Path) -> None:
    key_path.write_bytes(b"not a key at all")


def _foreign_key(cert_path: Path, key_path: Path) -> None:
    pki.CA.create("other-ca", "ec-p256", 10, "dev").write(key_path.parent / "other", "s3cret-right")
    (key_path.parent / "other" / "ca.key").replace(key_path)


def _remove_cert(cert_path: Path, key_path: Path) -> None:
    cert_path.unlink()


@pytest.mark.parametrize(
    "damage, passphrase, message",
    [
        (None, "s3cret-wrong", r"ca\.key: cannot decrypt the CA key: wrong passphrase \(check SECURE_KAFKA_PASSPHRASE\) or a damaged file$"),
        (_damage_cert, "s3cret-right", r"ca\.crt: not a PEM certificate \(damaged\?\): restore it from backup$"),
        (_truncate_key, "s3cret-right", r"ca\.key: cannot decrypt the CA key: wrong passphrase \(check SECURE_KAFKA_PASSPHRASE\) or a damaged file$"),
        (_garbage_key, "s3cret-right", r"ca\.key: not an encrypted PEM private key \(damaged\?\): restore it from backup$"),
        (_foreign_key, "s3cret-right", r"ca\.key: the key does not belong to ca\.crt: restore the matching pair from backup$"),
        (_remove_cert, "s3cret-right", r"ca\.crt: CA certificate missing: restore it from backup$"),
    ],
    ids=["wrong-passphrase", "corrupt-cert", "truncated-key", "garbage-key", "key-cert-mismatch", "missing-cert"],
)
def test_ca_load_bad_input(ca, tmp_path, damage, passphrase, message):
    cert_path, key_path = ca.write(tmp_path, "s3cret-right")
    if damage:
        damage(cert_path, key_path)
    with pytest.raises(SecureKafkaError, match=message) as error:
        pki.CA.load(cert_path, key_path, passphrase)
    assert "\n" not in str(error.value)
    assert "s3cret" not in str(error.value)


# -- PEM and PKCS12 ----------------------------------------------------------------------------


def test_write_pem(client, ca, tmp_path):
    paths = client.write_pem(tmp_path, "client")
    assert (paths.cert.name, paths.key.name, paths.ca.name) == ("client.crt", "client.key", "ca.crt")
    assert paths.key.stat().st_mode & 0o777 == 0o600
    assert paths.cert.stat().st_mode & 0o777 == 0o644
    assert x509.load_pem_x509_certificate(paths.cert.read_bytes()) == client.cert
    assert x509.load_pem_x509_certificates(paths.ca.read_bytes()) == [ca.cert]


def test_keystore_holds_key_cert_and_chain_under_one_password(broker, ca):
    data = broker.pkcs12_keystore("store-password")
    store = pkcs12.load_pkcs12(data, b"store-password")
    assert store.cert.certificate == broker.cert
    assert store.cert.friendly_name == b"kafka-0"
    assert pki.public_keys_match(store.key, broker.cert)
    assert [c.certificate for c in store.additional_certs] == [ca.cert]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"another password")


def test_truststore_holds_the_ca_only(ca):
    data = pki.pkcs12_truststore([ca.cert], "store-password")
    store = pkcs12.load_pkcs12(data, b"store-password")
    assert store.key is None and store.cert is None
    assert [(c.certificate, c.friendly_name) for c in store.additional_certs] == [(ca.cert, b"secure-kafka-dev-ca")]


# -- what Java sees --------------------------------------------------------------------------

keytool = shutil.which("keytool")


def keytool_list(path: Path, password: str) -> str:
    """``keytool -list -v``; the password travels in the environment, never on the command line."""
    result = subprocess.run(
        [keytool, "-list", "-v", "-keystore", str(path), "-storetype", "PKCS12", "-storepass:env", "STORE_PASSWORD"],
        env={**os.environ, "STORE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.skipif(keytool is None, reason="no keytool on this host")
def test_keytool_reads_keystore_and_truststore(broker, ca, tmp_path):
    keystore, truststore = tmp_path / "keystore.p12", tmp_path / "truststore.p12"
    keystore.write_bytes(broker.pkcs12_keystore("store-password"))
    truststore.write_bytes(pki.pkcs12_truststore([ca.cert], "store-password"))
    listing = keytool_list(keystore, "store-password")
    assert "Alias name: kafka-0" in listing
    assert "Entry type: PrivateKeyEntry" in listing
    assert "Certificate chain length: 2" in listing
    listing = keytool_list(truststore, "store-password")
    assert "Alias name: secure-kafka-dev-ca" in listing
    assert "Entry type: trustedCertEntry" in listing


JAVA_PRINCIPAL = textwrap.dedent(
    """
    import java.io.FileInputStream;
    import java.security.KeyStore;
    import java.security.cert.X509Certificate;

    public class Principal {
        public static void main(String[] args) throws Exception {
            KeyStore store = KeyStore.getInstance("PKCS12");
            store.load(new FileInputStream(args[0]), System.getenv("STORE_PASSWORD").toCharArray());
            X509Certificate cert = (X509Certificate) store.getCertificate(args[1]);
            System.out.println(cert.getSubjectX500Principal().getName());
        }
    }
    """
)


def java_can_run_source() -> bool:
    java = shutil.which("java")
    if java is None:
        return False
    modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=60).stdout
    return "jdk.compiler@" in modules


@pytest.mark.skipif(not java_can_run_source(), reason="no JDK (java with jdk.compiler) on this host")
def test_java_subject_name_matches_the_principal_mapping_rule(broker, tmp_path):
    """What Kafka's principal builder sees: X500Principal.getName() of the keystore's certificate."""
    keystore = tmp_path / "keystore.p12"
    keystore.write_bytes(broker.pkcs12_keystore("store-password"))
    (tmp_path / "Principal.java").write_text(JAVA_PRINCIPAL)
    result = subprocess.run(
        ["java", str(tmp_path / "Principal.java"), str(keystore), "kafka-0"],
        env={**os.environ, "STORE_PASSWORD": "store-password"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert name == "CN=kafka-0,OU=broker,O=secure-kafka,L=dev"
    assert PRINCIPAL_RULE.match(name).group(1) == "kafka-0"
