"""Access tokens the way Entra issues them for Business Central, and their verification.

The sandbox's token endpoint issues app-only v1.0 tokens (BC's resource accepts v1 tokens,
so Entra issues those even from the v2.0 endpoint) signed RS256 with the persisted key; the
BC routes verify them with the same key, as BC verifies Entra's tokens against its JWKS.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from hub_sandbox.certificates import SigningKey

BUSINESS_CENTRAL_RESOURCE = "https://api.businesscentral.dynamics.com"
# "Dynamics 365 Business Central", the resource app every tenant has.
BUSINESS_CENTRAL_APP_ID = "996def3d-b36c-4153-8607-a6fd3c01b89f"
BUSINESS_CENTRAL_AUDIENCES = (BUSINESS_CENTRAL_RESOURCE, BUSINESS_CENTRAL_APP_ID)
APP_ROLE = "API.ReadWrite.All"
# A user's delegated token reaches BC with either of these in its scp.
DELEGATED_SCOPES = frozenset({"Financials.ReadWrite.All", "user_impersonation"})
ACCESS_TOKEN_LIFETIME = dt.timedelta(hours=1)


def v1_issuer(tenant_id: uuid.UUID) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class AccessTokenClaims:
    """What BC needs from a verified token."""

    tenant_id: uuid.UUID
    app_id: str
    object_id: uuid.UUID
    roles: tuple[str, ...]
    expires_at: dt.datetime


class InvalidAccessToken(Exception):
    """The bearer token is missing, malformed, forged, expired or for someone else."""


class TokenIssuer:
    def __init__(self, signing_key: SigningKey) -> None:
        self._private_key = signing_key.private_key
        self._certificate = signing_key.certificate
        der = self._certificate.public_bytes(serialization.Encoding.DER)
        # Entra's kid is the certificate's SHA-1 thumbprint, base64url, also sent as x5t.
        self.key_id = base64url(hashlib.sha1(der, usedforsecurity=False).digest())
        self._certificate_base64 = base64.b64encode(der).decode()
        self._public_key = self._private_key.public_key()

    def jwks(self, issuer: str) -> dict[str, Any]:
        """The JSON Web Key Set, shaped like ``/discovery/v2.0/keys``."""
        numbers = self._public_key.public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.key_id,
                    "x5t": self.key_id,
                    "n": base64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": base64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                    "x5c": [self._certificate_base64],
                    "cloud_instance_name": "microsoftonline.com",
                    "issuer": issuer,
                }
            ]
        }

    def issue_app_token(
        self,
        *,
        tenant_id: uuid.UUID,
        client_id: str,
        service_principal_id: uuid.UUID,
        audience: str = BUSINESS_CENTRAL_RESOURCE,
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = ACCESS_TOKEN_LIFETIME,
    ) -> IssuedToken:
        """An app-only (client credentials) token for Business Central in one tenant."""
        issued_at = int((now or dt.datetime.now(dt.UTC)).timestamp())
        expires_at = issued_at + int(lifetime.total_seconds())
        claims = {
            "aud": audience,
            "iss": v1_issuer(tenant_id),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires_at,
            "aio": base64url(secrets.token_bytes(36)),
            "appid": client_id,
            "azp": client_id,
            "appidacr": "1",  # 1 = authenticated with a client secret
            "idp": v1_issuer(tenant_id),
            "idtyp": "app",
            "oid": str(service_principal_id),
            "rh": f"0.{base64url(secrets.token_bytes(24))}.",
            "roles": [APP_ROLE],
            "sub": str(service_principal_id),
            "tid": str(tenant_id),
            "uti": base64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        return IssuedToken(access_token=self.sign(claims), expires_in=expires_at - issued_at)

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT of these claims, RS256-signed with the published key (kid and x5t set)."""
        headers = {"typ": "JWT", "x5t": self.key_id, "kid": self.key_id}
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)

    def derive_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (signing sign-in pages' flow tokens, sealing
        refresh tokens), derived from the persisted key so it survives restarts."""
        private_der = self._private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return hmac.new(private_der, f"hub-sandbox/{purpose}".encode(), hashlib.sha256).digest()

    def verify_for_business_central(self, token: str) -> AccessTokenClaims:
        """Check signature, lifetime, audience, issuer and role, as BC does."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                audience=list(BUSINESS_CENTRAL_AUDIENCES),
                options={"require": ["exp", "iat", "tid", "iss", "aud"]},
            )
            tenant_id = uuid.UUID(str(claims["tid"]))
        except (jwt.InvalidTokenError, ValueError) as error:
            raise InvalidAccessToken(str(error)) from error
        if claims["iss"] != v1_issuer(tenant_id):
            raise InvalidAccessToken("issuer does not belong to the token's tenant")
        roles = tuple(str(role) for role in claims.get("roles", []))
        delegated = claims.get("idtyp") == "user" and bool(DELEGATED_SCOPES & set(str(claims.get("scp", "")).split()))
        if APP_ROLE not in roles and not delegated:
            raise InvalidAccessToken(f"the token lacks the {APP_ROLE} role or a delegated Business Central scope")
        if delegated and "idp" in claims:
            # A guest from another directory: BC knows only the tenant's own users here.
            raise InvalidAccessToken("the signed-in user is not a Business Central user of this tenant")
        try:
            object_id = uuid.UUID(str(claims.get("oid")))
        except ValueError as error:
            raise InvalidAccessToken("the token has no object id") from error
        return AccessTokenClaims(
            tenant_id=tenant_id,
            app_id=str(claims.get("appid", "")),
            object_id=object_id,
            roles=roles,
            expires_at=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
        )


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
