"""The gateway's msal apps: one for accountants' (and client administrators') sign-in, and
one per client tenant for Connect, each made when first needed.

msal reads an authority's metadata from Entra while it makes the app. Made at start, an
Entra incident (or the network path to it) would keep every gateway replica from starting,
although the dashboard, the API and the live pages of those signed in need no Entra at all;
made here, such an incident makes only a sign-in page say that Entra did not answer.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import msal

from hub_common.entra import confidential_client
from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_gateway.dependencies import GatewayState

logger = get_logger(__name__)

# After Entra failed to give a tenant's metadata, sign-ins are told so at once for this
# long instead of each waiting for Entra again (in one of the process's few threads).
UNREACHABLE_FOR_SECONDS = 10.0


# What a sign-in page says while Entra cannot give its metadata (Connect says it its own way).
ENTRA_AWAY = N_("Microsoft Entra ID did not answer. Try again in a few minutes.")


class EntraUnreachable(Exception):
    """Entra did not give a tenant's sign-in metadata (unreachable, or an error)."""


async def entra_app(state: GatewayState, tenant: str) -> msal.ConfidentialClientApplication:
    """The app signing in at ``tenant`` (``organizations``, or a client tenant's id), kept
    for the process's life once made; EntraUnreachable while Entra cannot give it."""
    app = state.entra_apps.get(tenant)
    if app is not None:
        return app
    # One build at a time per tenant: sign-ins arriving together wait for it rather than
    # each holding one of the process's few threads while Entra hangs.
    async with state.entra_builds.setdefault(tenant, asyncio.Lock()):
        app = state.entra_apps.get(tenant)
        if app is not None:
            return app
        failed_at = state.entra_failures.get(tenant)
        if failed_at is not None and time.monotonic() - failed_at < UNREACHABLE_FOR_SECONDS:
            raise EntraUnreachable
        try:
            app = await asyncio.to_thread(
                confidential_client,
                authority_base=state.settings.entra_authority,
                tenant=tenant,
                client_id=state.settings.entra_client_id,
                client_secret=state.settings.entra_credential(),
                http=state.entra_http,
            )
        except ValueError as error:
            # msal's answer to a 4xx for the metadata: Entra answered, and refused the
            # authority (HUB_ENTRA_AUTHORITY, or a tenant that is gone).
            state.entra_failures[tenant] = time.monotonic()
            logger.error(
                "Entra refused the sign-in metadata; check HUB_ENTRA_AUTHORITY", tenant=tenant, error=repr(error)[:300]
            )
            raise EntraUnreachable from error
        except (httpx.HTTPError, OSError, RuntimeError, msal.exceptions.MsalError) as error:
            # Unreachable, or a 5xx (msal's MsalServiceError).
            state.entra_failures[tenant] = time.monotonic()
            logger.warning("Entra gave no sign-in metadata", tenant=tenant, error=repr(error)[:300])
            raise EntraUnreachable from error
        state.entra_failures.pop(tenant, None)
        state.entra_apps[tenant] = app
        return app
