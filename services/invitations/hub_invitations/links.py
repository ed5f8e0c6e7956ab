"""Invitation links: a random token, signed with the hub's secret, of which only a hash is kept.

A link value is ``{invitation_id}.{token}.{mac}``:

- ``token`` is ``secrets.token_urlsafe(32)``; the database keeps only ``sha256(token)``.
- ``mac`` is HMAC-SHA256 over ``{invitation_id}.{token}`` with a key derived from
  ``HUB_SECRET_KEY``, base64url without padding. A changed or truncated link fails this
  check before anything is looked up.

Nothing here touches a database or the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

TOKEN_BYTES = 32
# token_urlsafe(32) and a base64url SHA-256 are both 43 characters of this alphabet.
_PART = re.compile(r"[A-Za-z0-9_-]{43}")


class TamperedLink(ValueError):
    """The link was changed, cut short or not made by this hub."""


@dataclass(frozen=True)
class LinkParts:
    invitation_id: uuid.UUID
    token: str


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database keeps instead of the token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)


def _mac(key: bytes, invitation_id: uuid.UUID, token: str) -> str:
    digest = hmac.new(key, f"{invitation_id}.{token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_link(key: bytes, invitation_id: uuid.UUID, token: str) -> str:
    return f"{invitation_id}.{token}.{_mac(key, invitation_id, token)}"


def read_link(key: bytes, link: str) -> LinkParts:
    """The invitation and token a link carries, once its signature checks out."""
    parts = link.strip().split(".")
    if len(parts) != 3:
        raise TamperedLink("the link does not have three parts")
    raw_id, token, mac = parts
    if not _PART.fullmatch(token) or not _PART.fullmatch(mac):
        raise TamperedLink("the token or the signature is malformed")
    try:
        invitation_id = uuid.UUID(raw_id)
    except ValueError as error:
        raise TamperedLink("the invitation id is malformed") from error
    # The id is compared in its canonical form, so "A1B2…" and "{a1b2…}" do not pass.
    if str(invitation_id) != raw_id:
        raise TamperedLink("the invitation id is not in canonical form")
    if not hmac.compare_digest(_mac(key, invitation_id, token), mac):
        raise TamperedLink("the signature does not match")
    return LinkParts(invitation_id=invitation_id, token=token)
