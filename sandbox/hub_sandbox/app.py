"""Wiring: one FastAPI application playing Entra ID, Business Central and its web client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hub_common.logging import get_logger
from hub_sandbox.admin import ADMIN_PREFIX, admin_router
from hub_sandbox.admin_changes import changes_router
from hub_sandbox.business_central import business_central_router
from hub_sandbox.certificates import ensure_signing_key
from hub_sandbox.client_admin import client_admin_router
from hub_sandbox.clock import ClockDateHeader
from hub_sandbox.identity import identity_router
from hub_sandbox.settings import SandboxSettings
from hub_sandbox.sign_in_pages import sign_in_router
from hub_sandbox.state import SandboxState, build_state
from hub_sandbox.tokens import TokenIssuer
from hub_sandbox.web_client import web_client_router
from hub_sandbox.webhook_delivery import WebhookCourier

log = get_logger(__name__)


def create_app(settings: SandboxSettings) -> FastAPI:
    """Build the sandbox. The token-signing key is read from (or created in) the state dir."""
    if not settings.entra_client_secret.get_secret_value():
        log.warning("HUB_ENTRA_CLIENT_SECRET is empty: the sandbox will refuse every token request")
    signing_key = ensure_signing_key(settings.sandbox_state_dir)
    state = build_state(settings, TokenIssuer(signing_key))
    courier = WebhookCourier(state.webhooks, state.clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # BC's calls to webhook subscribers: one HTTP client and the delivery task.
        await courier.start()
        try:
            yield
        finally:
            await courier.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Accountant Hub sandbox",
        summary="A stand-in for Microsoft Entra ID and Business Central",
        docs_url=f"{ADMIN_PREFIX}/docs",
        redoc_url=None,
        openapi_url=f"{ADMIN_PREFIX}/openapi.json",
    )
    app.state.sandbox = state
    app.add_middleware(ClockDateHeader, clock=state.clock)
    # Order matters: the identity routes start with a free {tenant} segment, so the routes
    # with fixed prefixes (/_sandbox, /bc, /admin, /v2.0) must be matched first.
    app.include_router(admin_router(state))
    app.include_router(changes_router(state, ADMIN_PREFIX))
    app.include_router(web_client_router(state))
    app.include_router(client_admin_router(state))
    app.include_router(business_central_router(state, courier))
    app.include_router(identity_router(state))
    app.include_router(sign_in_router(state))
    return app


def sandbox_state(app: FastAPI) -> SandboxState:
    """The state behind an app made by :func:`create_app` (for tests and admin tools)."""
    state: SandboxState = app.state.sandbox
    return state
