"""App-only tokens for each client tenant, through msal's ConfidentialClientApplication.

One msal app per tenant authority lives as long as the process, so its token cache is
reused until the token nears expiry. msal is synchronous: every call runs in a worker
thread. msal gets an httpx-based client that trusts the configured CA bundle, because
this machine's REQUESTS_CA_BUNDLE would silently override msal's own ``verify=``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

import httpx
import msal

from hub_common.entra import confidential_client
from hub_common.events import FailureKind
from hub_fetcher.bc.failures import FetchFailure, classify_token_error

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"


class TokenProvider:
    def __init__(
        self,
        *,
        authority_base: str,
        client_id: str,
        client_secret: str | dict[str, str],
        verify: ssl.SSLContext,
        timeout_seconds: float,
    ) -> None:
        self._authority_base = authority_base.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = httpx.Client(verify=verify, timeout=timeout_seconds)
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()

    def _app(self, tenant: str) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(tenant)
            if app is None:
                app = confidential_client(
                    authority_base=self._authority_base,
                    tenant=tenant,
                    client_id=self._client_id,
                    client_secret=self._client_secret,
                    http=self._http,
                )
                self._apps[tenant] = app
            return app

    def _acquire(self, tenant: str) -> str:
        try:
            app = self._app(tenant)
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[BC_SCOPE])
        except httpx.TimeoutException as error:
            raise FetchFailure(FailureKind.TIMEOUT, message=f"token request timed out: {error}") from error
        except (httpx.HTTPError, OSError) as error:
            raise FetchFailure(FailureKind.TIMEOUT, message=f"token endpoint unreachable: {error}") from error
        except ValueError as error:
            # msal raises ValueError when OIDC discovery fails, e.g. an unknown tenant.
            with self._lock:
                self._apps.pop(tenant, None)
            raise FetchFailure(FailureKind.TENANT_NOT_FOUND, message=f"tenant discovery failed: {error}") from error
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        # msal replays a recent error answer for the same app object; a fresh one asks again.
        with self._lock:
            self._apps.pop(tenant, None)
        error_name = result.get("error")
        description = result.get("error_description")
        codes = [code for code in result.get("error_codes", []) if isinstance(code, int)]
        raise FetchFailure(
            classify_token_error(error_name, description, codes),
            http_status=None,
            bc_error_code=error_name if isinstance(error_name, str) else None,
            message=description if isinstance(description, str) else None,
            correlation_id=result.get("correlation_id"),
        )

    async def token_for(self, tenant: str) -> str:
        return await asyncio.to_thread(self._acquire, tenant)

    def forget(self, tenant: str) -> None:
        """Drop a tenant's cached token (BC rejected it), so the next call asks Entra again."""
        with self._lock:
            self._apps.pop(tenant, None)

    def close(self) -> None:
        self._http.close()
