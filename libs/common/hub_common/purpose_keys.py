"""Keys of one purpose each, derived from ``HUB_SECRET_KEY``.

The gateway needs the hub's secret key itself: it seals sessions' sign-in state and signs
in accountants with it. The other services each need one key derived from it for one
purpose, and in production they get only that (``HUB_NOTIFICATION_KEY``,
``HUB_WEBHOOK_SEALING_KEY``, ``HUB_INVITATION_LINK_KEY``, made by ``hub derive-keys``): a
fetcher parsing every tenant's answers, if ever taken over, must not hold the key that
could seal a sign-in. Without its own key a service derives it from ``HUB_SECRET_KEY``
(dev, compose, older deployments): the same bytes either way, so nothing sealed or signed
before changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from enum import StrEnum


class Purpose(StrEnum):
    # Business Central change notifications: their addresses and client states (fetcher, gateway).
    NOTIFICATIONS = "notifications"
    # Alert rules' webhook signing secrets, sealed at rest (registry).
    WEBHOOK_SECRETS = "webhook-secrets"
    # Invitation links mailed to accountants (invitations).
    INVITATION_LINKS = "invitation-links"


# What each key was derived with before it could be set on its own; frozen, or every sealed
# secret, subscription and mailed link would stop opening.
_DERIVATION = {
    Purpose.NOTIFICATIONS: b"business-central-notifications/v1",
    Purpose.WEBHOOK_SECRETS: b"hub-sealing:alert-webhook-secrets",
    Purpose.INVITATION_LINKS: b"hub-invitations/link/v1",
}
# The environment variable that holds each key on its own.
SETTING = {
    Purpose.NOTIFICATIONS: "HUB_NOTIFICATION_KEY",
    Purpose.WEBHOOK_SECRETS: "HUB_WEBHOOK_SEALING_KEY",
    Purpose.INVITATION_LINKS: "HUB_INVITATION_LINK_KEY",
}
KEY_BYTES = 32


def derive(secret_key: str, purpose: Purpose) -> bytes:
    return hmac.new(secret_key.encode(), _DERIVATION[purpose], hashlib.sha256).digest()


def encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode(text: str) -> bytes | None:
    """The key a setting holds, or None when it is not one (a typo, a truncated paste)."""
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def key_id(key: bytes) -> str:
    """A short name of a key, safe to log: services that must hold the same key (the fetcher
    signs change notices the gateway checks) say theirs at start, so a key left behind by a
    rotation shows at a glance instead of as every notice refused."""
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:12]
