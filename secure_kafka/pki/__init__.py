"""Keys, certificates and PKCS12 stores: a small trustme-like API with production defaults.

Knows nothing about environments or files under ``certs/`` (that is ``certstore``); it only
turns names, SANs and validities into keys, certificates and store bytes, with
``cryptography`` alone (no openssl subprocesses).

Decisions:

- One root CA per environment, no intermediate (``pathLen=0``). An intermediate only pays off
  when the root key can be kept offline; here the CA key lives beside the environment,
  encrypted with the environment passphrase, so an intermediate would add a file and a chain
  step without protecting anything more. CA replacement is done by trusting the old and the
  new CA side by side during rotation.
- Subjects are ``CN=<name>,OU=<kind>,O=secure-kafka,L=<env>`` as Java prints them
  (``X500Principal.getName()``), so brokers' ``ssl.principal.mapping.rules`` of
  ``RULE:^CN=([a-zA-Z0-9._-]+),OU=.*$/$1/,DEFAULT`` turn the certificate of ``admin`` into
  ``User:admin``. RFC 4514 / RFC 2253 strings list RDNs last-first, so the Name is built
  in the reverse order (L, O, OU, CN).
- Narrow extended key usages: nodes (brokers, ZooKeeper) are TLS servers and clients of each
  other (serverAuth + clientAuth); client principals get clientAuth only, so a stolen client
  certificate cannot impersonate a broker.
- PKCS12 stores: the key password equals the store password (ZooKeeper requires it);
  truststores carry Java's trusted-certificate attribute (Java ignores certificate-only
  entries without it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.profiles import KEY_ALGORITHMS
from ..model.topology import NAME_PATTERN
from . import keyfile

ORGANIZATION = "secure-kafka"
# Certificate kinds, the OU of a subject. "engine": a Docker engine's TLS endpoint, for an
# environment spread over several Docker hosts.
KINDS = ("ca", "broker", "zookeeper", "controller", "client", "engine")
# Certificates start a few minutes in the past so a peer whose clock lags a little
# still accepts them; the total validity stays exactly what was asked for.
CLOCK_SKEW = dt.timedelta(minutes=5)
# PBKDF2 rounds of the PKCS12 stores. Store passwords are 256-bit random secrets, so key
# stretching adds no strength; Java's own default for PKCS12 is 10000.
PKCS12_KDF_ROUNDS = 10_000

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(algorithm: str) -> PrivateKey:
    """A new private key for one of ``profiles.KEY_ALGORITHMS``."""
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm in ("rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.split("-")[1]))
    raise SecureKafkaError(f"unknown key algorithm {algorithm!r}: use one of {', '.join(KEY_ALGORITHMS)}")


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm:
    # Match the hash to the key's strength (P-384 pairs with SHA-384, as in CNSA/TLS 1.3).
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 4096:
        return hashes.SHA384()
    return hashes.SHA256()


def subject_name(name: str, kind: str, env: str) -> x509.Name:
    """``CN=<name>,OU=<kind>,O=secure-kafka,L=<env>`` in Java's ``getName()`` order."""
    # RFC 4514 strings print the last RDN first, so the CN goes last in the sequence.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.LOCALITY_NAME, env),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def check_name(what: str, value: str) -> None:
    if not NAME_PATTERN.match(value):
        raise SecureKafkaError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '.', '_' or '-' (the principal mapping rule only maps those)"
        )


def _general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


def sans_of(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of a certificate's subjectAltName, as strings."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (what ``keytool -v`` shows, without colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def public_keys_match(key: object, cert: x509.Certificate) -> bool:
    return isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) and key.public_key() == cert.public_key()


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``cert`` names ``ca_cert`` as issuer and carries its signature."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# Extended key usages by the names RFC 5280 and OpenSSL give them.
_USAGE_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def extended_key_usages(cert: x509.Certificate) -> set[str]:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    return {_USAGE_NAMES.get(oid, oid.dotted_string) for oid in usages}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pkcs12_encryption(password: str) -> serialization.KeySerializationEncryption:
    """AES-256-CBC + PBKDF2-SHA256 with an HMAC-SHA256 MAC: what JDK 11.0.12+/17 read."""
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )


def _certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """What every certificate has: names, key, a random serial and its validity."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _key_usage(
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A keyUsage granting only what is named; no certificate here needs the other usages."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class PemPaths:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate, its private key and the chain above it (the CA)."""

    name: str
    kind: str
    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """Unencrypted PKCS8: librdkafka and Python ``ssl`` read it; keep it 0600."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def write_pem(self, directory: Path, basename: str = "client", uid: int | None = None) -> PemPaths:
        """``<basename>.crt`` (0644), ``<basename>.key`` (0600) and ``ca.crt`` (0644) in ``directory``."""
        paths = PemPaths(directory / f"{basename}.crt", directory / f"{basename}.key", directory / "ca.crt")
        write_atomic(paths.cert, self.cert_pem(), mode=0o644, uid=uid)
        write_atomic(paths.key, self.key_pem(), mode=0o600, uid=uid)
        write_atomic(paths.ca, self.chain_pem(), mode=0o644, uid=uid)
        return paths

    @classmethod
    def from_pkcs12(cls, data: bytes, password: str, kind: str) -> "IssuedCert":
        """The key entry of a keystore written by ``pkcs12_keystore`` (name = its alias)."""
        store = pkcs12.load_pkcs12(data, password.encode())
        if store.key is None or store.cert is None or not isinstance(store.key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise SecureKafkaError("keystore has no EC or RSA private key entry: re-issue it")
        name = (store.cert.friendly_name or b"").decode() or str(
            store.cert.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        )
        chain = tuple(c.certificate for c in store.additional_certs)
        return cls(name=name, kind=kind, cert=store.cert.certificate, key=store.key, chain=chain)

    def pkcs12_keystore(self, password: str) -> bytes:
        """A PKCS12 keystore: one PrivateKeyEntry with alias ``name`` and chain leaf + CA.

        The key is encrypted with the store password: ZooKeeper requires key password ==
        store password, and Kafka then needs no separate ``ssl.key.password``.
        """
        return pkcs12.serialize_key_and_certificates(
            self.name.encode(), self.key, self.cert, list(self.chain), _pkcs12_encryption(password)
        )


def pkcs12_truststore(ca_certs: Sequence[x509.Certificate], password: str) -> bytes:
    """A PKCS12 truststore Java reads: each CA a trustedCertEntry (alias = its CN)."""
    entries = []
    for index, cert in enumerate(ca_certs):
        common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        alias = str(common_names[0].value) if common_names else f"ca-{index}"
        entries.append(pkcs12.PKCS12Certificate(cert, alias.encode()))
    return pkcs12.serialize_java_truststore(entries, _pkcs12_encryption(password))


class CA:
    """A root certificate authority that issues the leaf certificates of one environment."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey, env: str):
        self.cert = cert
        self.key = key
        self.env = env

    def __repr__(self) -> str:
        return f"CA({self.cert.subject.rfc4514_string()})"

    @classmethod
    def create(cls, common_name: str, key_algorithm: str, validity_days: int, env: str) -> "CA":
        check_name("CA name", common_name)
        if validity_days <= 0:
            raise SecureKafkaError(f"CA validity must be positive, got {validity_days} days")
        key = generate_key(key_algorithm)
        subject = subject_name(common_name, "ca", env)
        not_before = now() - CLOCK_SKEW
        public_key = key.public_key()
        cert = (
            _certificate_builder(subject, subject, public_key, not_before, not_before + dt.timedelta(days=validity_days))
            # pathLen 0: this CA signs leaf certificates only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, _signature_hash(key))
        )
        return cls(cert, key, env)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path, passphrase: str) -> "CA":
        """Reads ``ca.crt`` and the passphrase-encrypted ``ca.key``; each failure names the file."""
        cert_bytes = _read(cert_path, "CA certificate")
        key_bytes = _read(key_path, "CA key")
        try:
            cert = x509.load_pem_x509_certificate(cert_bytes)
        except ValueError:
            raise SecureKafkaError(f"{cert_path}: not a PEM certificate (damaged?): restore it from backup") from None
        try:
            key = serialization.load_pem_private_key(key_bytes, passphrase.encode())
        except (ValueError, TypeError):
            if b"ENCRYPTED PRIVATE KEY" in key_bytes:
                raise SecureKafkaError(
                    f"{key_path}: cannot decrypt the CA key: wrong passphrase (check SECURE_KAFKA_PASSPHRASE) or a damaged file"
                ) from None
            raise SecureKafkaError(f"{key_path}: not an encrypted PEM private key (damaged?): restore it from backup") from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise SecureKafkaError(f"{key_path}: unsupported key type {type(key).__name__}: use an EC or RSA CA key")
        if not public_keys_match(key, cert):
            raise SecureKafkaError(
                f"{key_path}: the key does not belong to {cert_path.name}: restore the matching pair from backup"
            )
        locality = cert.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)
        return cls(cert, key, str(locality[0].value) if locality else "")

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, passphrase: str, uid: int | None = None) -> tuple[Path, Path]:
        """``ca.crt`` (0644) and ``ca.key`` (0600, PKCS8 encrypted with ``passphrase``: scrypt, ``keyfile``)."""
        if not passphrase:
            raise SecureKafkaError("refusing to write the CA key without a passphrase: set SECURE_KAFKA_PASSPHRASE")
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        write_atomic(key_path, keyfile.encrypt_private_key(self.key, passphrase), mode=0o600, uid=uid)
        write_atomic(cert_path, self.cert_pem(), mode=0o644, uid=uid)
        return cert_path, key_path

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def is_expired(self, at: dt.datetime | None = None) -> bool:
        return (at or now()) >= self.not_after

    def issue_cert(
        self,
        name: str,
        kind: str,
        sans: Iterable[str] = (),
        validity_days: int = 397,
        key_algorithm: str = "ec-p256",
        server: bool = False,
        client: bool = True,
        not_before: dt.datetime | None = None,
        crl_uri: str | None = None,
    ) -> IssuedCert:
        """A leaf certificate for ``name``, valid ``validity_days`` or until the CA expires.

        ``server``/``client`` choose the extended key usages (serverAuth/clientAuth).
        ``not_before`` (default: now, less the clock skew) lets ``verify`` issue expired and
        not-yet-valid certificates that only the peer's validity check can refuse.
        ``crl_uri`` becomes the certificate's CRL distribution point: where a peer that checks
        revocation reads this CA's CRL.
        """
        check_name("certificate name", name)
        if kind not in KINDS or kind == "ca":
            raise SecureKafkaError(f"invalid certificate kind {kind!r}: use broker, zookeeper, controller, client or engine")
        if validity_days <= 0:
            raise SecureKafkaError(f"certificate validity must be positive, got {validity_days} days")
        if not (server or client):
            raise SecureKafkaError(f"certificate {name!r} needs serverAuth, clientAuth or both")
        not_before = not_before or now() - CLOCK_SKEW
        if self.is_expired(not_before):
            raise SecureKafkaError(
                f"the CA of environment {self.env!r} expired on {self.not_after:%Y-%m-%d}: replace it with `secure-kafka certs rotate {self.env} --ca`"
            )
        # Never outlive the CA: a leaf past its issuer's not-after fails validation anyway.
        not_after = min(not_before + dt.timedelta(days=validity_days), self.not_after)
        key = generate_key(key_algorithm)
        public_key = key.public_key()
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            _certificate_builder(subject_name(name, kind, self.env), self.cert.subject, public_key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                # RSA key transport (TLS 1.2 RSA kx) needs keyEncipherment; EC keys never do.
                _key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
        )
        san_list = list(dict.fromkeys(sans))  # de-duplicated, order kept
        if san_list:
            builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(san_list)), critical=False)
        if crl_uri:
            point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        cert = builder.sign(self.key, _signature_hash(self.key))
        return IssuedCert(name=name, kind=kind, cert=cert, key=key, chain=(self.cert,))

    def crl(self, revoked: Iterable[tuple[int, dt.datetime]]) -> x509.CertificateRevocationList:
        """A CRL of this CA listing ``(serial, revoked at)`` pairs.

        Its next update is the CA's own expiry: Java refuses every certificate whose CRL is past
        its next update, and the CRL here is re-signed on each change rather than on a schedule.
        """
        this_update = now() - CLOCK_SKEW
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(this_update)
            .next_update(max(self.not_after, this_update + dt.timedelta(minutes=1)))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
        )
        for serial, revoked_at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at).build()
            )
        return builder.sign(self.key, _signature_hash(self.key))


def crl_distribution_points(cert: x509.Certificate) -> list[str]:
    """The URIs of a certificate's CRL distribution points (none: it cannot be checked)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [name.value for point in points for name in point.full_name or () if isinstance(name, x509.UniformResourceIdentifier)]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SecureKafkaError(f"{path}: {what} missing: restore it from backup") from None
    except OSError as exc:
        raise SecureKafkaError(f"{path}: cannot read the {what} ({exc.strerror}): fix its permissions") from None
