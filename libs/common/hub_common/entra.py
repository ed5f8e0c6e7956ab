"""msal applications for the hub's one multi-tenant Entra app, built the same way everywhere.

msal gets an httpx-based client that trusts the configured CA bundle, because this
machine's REQUESTS_CA_BUNDLE would silently override msal's own ``verify=``. Instance
discovery (a call to Microsoft's cloud) is only done for Microsoft's own hosts, so the
sandbox standing in for Entra needs no outside access.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import msal

MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn", "login.microsoft.com"}
)


def confidential_client(
    *, authority_base: str, tenant: str, client_id: str, client_secret: str, http: httpx.Client
) -> msal.ConfidentialClientApplication:
    base = authority_base.rstrip("/")
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret,
        authority=f"{base}/{tenant}",
        http_client=http,
        instance_discovery=(urlsplit(base).hostname or "") in MICROSOFT_AUTHORITY_HOSTS,
    )
