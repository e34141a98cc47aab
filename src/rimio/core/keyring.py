"""The cluster key ring: frame sealing (AES-256-GCM) and request signing keys.

A key file holds one key per line (64 hex characters = 32 bytes); blank lines
and `#` comments are ignored. The first key is the *primary*: it seals frames
and signs requests. Every key in the ring is accepted when opening frames and
verifying signatures, so a key can be rotated without downtime: add the new
key second everywhere, then move it first everywhere, then remove the old one
(a running node rereads its key file on SIGHUP, see `KeyRing.adopt`).

Each cluster key is stretched with HKDF into two independent subkeys, one for
AES-GCM and one for HMAC, so no key is used by two algorithms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
SEAL_VERSION = 1
_MAX_KEYS = 16


class KeyRingError(Exception):
    """A key file that cannot be used."""


class SealError(Exception):
    """A sealed frame that no key in the ring opens."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"rimio-v1", info=purpose).derive(key)


@dataclass(frozen=True, slots=True)
class _Key:
    aead: AESGCM
    mac_key: bytes
    key_id: bytes  # 4 bytes: lets a receiver try the right key first


class KeyRing:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise KeyRingError("the key ring is empty")
        if len(keys) > _MAX_KEYS:
            raise KeyRingError(f"at most {_MAX_KEYS} keys")
        self._keys: list[_Key] = []
        for k in keys:
            if len(k) != 32:
                raise KeyRingError("each key must be 32 bytes (64 hex characters)")
            self._keys.append(_Key(AESGCM(_derive(k, b"seal")), _derive(k, b"mac"),
                                   _derive(k, b"id")[:4]))

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        keys = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                keys.append(bytes.fromhex(line))
            except ValueError:
                raise KeyRingError(f"line {n}: not a hex key") from None
        return cls(keys)

    def adopt(self, other: KeyRing) -> None:
        """Take `other`'s keys in place (a key file reloaded on SIGHUP).

        Everything that seals, opens, signs or verifies holds this object and
        reads its keys at each use, so the new keys apply from the next frame
        or request on; the swap is one assignment, never half done.
        """
        self._keys = list(other._keys)

    @staticmethod
    def generate() -> str:
        return os.urandom(32).hex()

    @property
    def primary_mac_key(self) -> bytes:
        return self._keys[0].mac_key

    @property
    def mac_keys(self) -> list[bytes]:
        return [k.mac_key for k in self._keys]

    def seal(self, plaintext: bytes, associated: bytes, nonce: bytes | None = None) -> bytes:
        """`version | key id | nonce | ciphertext+tag`; the nonce is random unless given."""
        key = self._keys[0]
        nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        return bytes([SEAL_VERSION]) + key.key_id + nonce + key.aead.encrypt(
            nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        if len(sealed) < 1 + 4 + NONCE_BYTES + 16 or sealed[0] != SEAL_VERSION:
            raise SealError("not a sealed frame")
        key_id, nonce, body = sealed[1:5], sealed[5:5 + NONCE_BYTES], sealed[5 + NONCE_BYTES:]
        ordered = sorted(self._keys, key=lambda k: k.key_id != key_id)
        for key in ordered:
            try:
                return key.aead.decrypt(nonce, body, associated)
            except InvalidTag:
                continue
        raise SealError("no key in the ring opens this frame")
