"""Volume key wrapping: a volume's key at rest, in ``certs/<env>/volume-keys/<node>.json``.

Keys are 64 random bytes per volume, wrapped (0600 files) with AES-256-GCM under a key derived
from the environment's passphrase (scrypt, random salt); the associated data binds a wrapped
key to its environment and node.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import SecureKafkaError

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
