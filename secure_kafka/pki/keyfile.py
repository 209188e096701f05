"""The CA key at rest: PKCS#8 ``ENCRYPTED PRIVATE KEY``, PBES2 with scrypt and AES-256-CBC.

Why not ``cryptography``'s ``BestAvailableEncryption``: for PKCS#8 it writes PBKDF2-HMAC-SHA256
with 2048 iterations, a weak stretch for the key that signs every certificate of the
environment (an audit found it). ``cryptography`` reads PBES2 with scrypt (RFC 8018, RFC 7914)
but does not write it, and its encryption builder does not take PKCS#8, so the few DER
structures are written here. The file stays a standard PKCS#8 PEM, which ``cryptography``
(and so Python tools) read; OpenSSL's command line parses it but refuses to derive the key,
since N=2^15, r=8 needs just over its built-in 32 MiB scrypt memory limit.

The scrypt parameters are the volume keys' (``storage/keys.py``): one policy for the
environment's passphrase, ~0.1 s and 32 MiB per unlock. A key written by an earlier version
(PBKDF2) is rewritten in this form the next time it is unlocked (``CertStore.load``).
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = ["SCRYPT_N", "SCRYPT_R", "SCRYPT_P", "encrypt_private_key", "is_scrypt_protected"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES = 16
PEM_LABEL = "ENCRYPTED PRIVATE KEY"
# DER of the object identifiers (tag, length, value).
OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
OID_SCRYPT = bytes.fromhex("06092b06010401da47040b")  # 1.3.6.1.4.1.11591.4.11
OID_AES256_CBC = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _sequence(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _octets(value: bytes) -> bytes:
    return _der(0x04, value)


def _integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # the leading 0 keeps it positive


def encrypt_private_key(key, passphrase: str) -> bytes:
    """``key`` as a PEM ``ENCRYPTED PRIVATE KEY`` under ``passphrase`` (PBES2: scrypt, AES-256-CBC)."""
    salt, iv = os.urandom(SALT_BYTES), os.urandom(16)
    kek = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    scrypt_params = _sequence(_octets(salt), _integer(SCRYPT_N), _integer(SCRYPT_R), _integer(SCRYPT_P), _integer(32))
    algorithm = _sequence(OID_PBES2, _sequence(_sequence(OID_SCRYPT, scrypt_params), _sequence(OID_AES256_CBC, _octets(iv))))
    der = _sequence(algorithm, _octets(encrypted))
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {PEM_LABEL}-----", *lines, f"-----END {PEM_LABEL}-----"]) + "\n").encode()


def is_scrypt_protected(pem: bytes) -> bool:
    """Whether a PEM ``ENCRYPTED PRIVATE KEY`` is stretched with scrypt (this module's form)."""
    text = pem.decode("ascii", errors="replace")
    begin, end = f"-----BEGIN {PEM_LABEL}-----", f"-----END {PEM_LABEL}-----"
    if begin not in text or end not in text:
        return False
    try:
        der = base64.b64decode(text.split(begin, 1)[1].split(end, 1)[0])
    except ValueError:
        return False
    # The algorithm identifier comes first: PBES2, then its key derivation function's OID.
    head = der[:48]
    return OID_PBES2 in head and OID_SCRYPT in head
