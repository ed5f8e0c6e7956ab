"""Addresses and secrets of Business Central's change notifications (webhooks).

Every company the hub subscribes to gets its own notification URL, ending in a key that
names the firm, the client and the company and is signed with the hub's secret; each
subscription's ``clientState`` is a second signature, over the key and the entity. The
gateway checks both on every request without a lookup, so a forged or guessed URL is
refused before anything is stored, and a notice for one company can never be taken for
another's (or another firm's). Nothing here is stored: rotating ``HUB_SECRET_KEY`` makes
the old subscriptions fail their checks, and the next refresh replaces them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from hub_common import purpose_keys

# The gateway's path for notices; a deployment exposes it publicly (HUB_NOTIFICATION_URL).
NOTIFICATION_PATH = "/webhooks/business-central"
# The entities the figures are read from, most telling first: where an environment has room
# for only some companies' subscriptions, a company gets all of these or none (a company
# notified of half its changes would look fresh while it is not). Posting a credit memo
# writes G/L entries, so salesCreditMemos needs no subscription of its own.
NOTIFIED_ENTITIES = ("generalLedgerEntries", "salesInvoices", "purchaseInvoices", "salesOrders", "salesQuotes")

_SIGNATURE_BYTES = 16
_ADDRESS_BYTES = 48


@dataclass(frozen=True)
class CompanyAddress:
    """Which company of which firm's client a notification URL stands for."""

    firm_id: uuid.UUID
    client_id: uuid.UUID
    company_id: uuid.UUID

    def _payload(self) -> bytes:
        return self.firm_id.bytes + self.client_id.bytes + self.company_id.bytes


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes | None:
    if not text or len(text) > 200 or not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class NotificationSigner:
    """Signs and checks notification keys and client states with a key derived from the
    hub's secret (a key of its own, so no other signature of the hub can pass for one)."""

    def __init__(self, key: bytes) -> None:
        """``key``: the notifications key (``HubSettings.key_for``)."""
        self._key = key

    @classmethod
    def of_secret(cls, secret_key: str) -> NotificationSigner:
        """The signer of a hub whose HUB_SECRET_KEY is ``secret_key``."""
        return cls(purpose_keys.derive(secret_key, purpose_keys.Purpose.NOTIFICATIONS))

    def _sign(self, purpose: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"\x00" + payload, hashlib.sha256).digest()

    def key(self, address: CompanyAddress) -> str:
        payload = address._payload()
        return _encode(payload + self._sign(b"key", payload)[:_SIGNATURE_BYTES])

    def address(self, key: str) -> CompanyAddress | None:
        """The company a key names, or None when it is not a key this hub signed."""
        raw = _decode(key)
        if raw is None or len(raw) != _ADDRESS_BYTES + _SIGNATURE_BYTES:
            return None
        payload, signature = raw[:_ADDRESS_BYTES], raw[_ADDRESS_BYTES:]
        if not hmac.compare_digest(signature, self._sign(b"key", payload)[:_SIGNATURE_BYTES]):
            return None
        return CompanyAddress(
            firm_id=uuid.UUID(bytes=payload[:16]),
            client_id=uuid.UUID(bytes=payload[16:32]),
            company_id=uuid.UUID(bytes=payload[32:48]),
        )

    def client_state(self, address: CompanyAddress, entity: str) -> str:
        """The secret BC repeats in every notice of one subscription (at most 2,048 characters)."""
        return _encode(self._sign(b"client-state", address._payload() + entity.encode()))


def notification_url(base_url: str, signer: NotificationSigner, address: CompanyAddress) -> str:
    return f"{base_url.rstrip('/')}/{signer.key(address)}"
