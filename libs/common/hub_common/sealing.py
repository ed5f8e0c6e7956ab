"""Secrets kept at rest: sealed with AES-256-GCM under a key derived from ``HUB_SECRET_KEY`` (hub_common.purpose_keys).

A sealed value is ``v1.<nonce>.<ciphertext>`` (URL-safe base64): the version lets a later key
or cipher sit beside it. Each use of the secret key has its own purpose, so a key derived for
one (webhook secrets) opens nothing of another. The value sealed is bound to what it belongs
to (``context``: a rule's id, say), so a sealed value copied to another row does not open.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"


class Unsealable(ValueError):
    """A sealed value that does not open under this key and context (tampered, or another key)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        """``key``: the key of what is sealed (``HubSettings.key_for``)."""
        self._aead = AESGCM(key)

    def seal(self, plain: str, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode(), context.encode())
        return ".".join((_VERSION, _b64(nonce), _b64(sealed)))

    def open(self, sealed: str, *, context: str) -> str:
        try:
            version, nonce, ciphertext = sealed.split(".")
            if version != _VERSION:
                raise Unsealable(f"unknown sealing version {version!r}")
            return self._aead.decrypt(_unb64(nonce), _unb64(ciphertext), context.encode()).decode()
        except (ValueError, InvalidTag) as error:
            if isinstance(error, Unsealable):
                raise
            raise Unsealable("the sealed value does not open with this key") from error


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
