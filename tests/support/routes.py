"""Every route the gateway serves, as "METHOD /path", for the tests that must cover each."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from hub_common.settings import Mode
from hub_gateway.app import create_app
from hub_gateway.settings import GatewaySettings


def _api_routes(routes: Iterable[BaseRoute]) -> Iterable[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI keeps an included router whole; its routes carry the router's prefix.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def gateway_routes(*, pages: bool) -> set[str]:
    """The API's routes (those in the OpenAPI document), and the pages too if asked."""
    app = create_app(GatewaySettings(_env_file=None, mode=Mode.DEV))
    return {
        f"{method} {route.path}"
        for route in _api_routes(app.routes)
        if pages or route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
