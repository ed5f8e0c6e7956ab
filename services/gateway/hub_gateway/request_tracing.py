"""One span per HTTP request, without the secrets some URLs carry.

An invitation link (``/invitations/accept?link=…``, also inside ``/sign-in?next=…``), Entra's
authorization codes (``/auth/callback?code=…``), a Connect token (``/connect/{token}``) and a
Business Central webhook's signed key (``/webhooks/business-central/{key}``) are credentials:
they must not reach the tracing backend (architecture invariant: tokens never reach logs or
events). OpenTelemetry records the full URL, query included, and masks only a few cloud
providers' signature parameters; so each request's span keeps its route's template in place
of its path (``/connect/{token}``, as the span's name already does) and no query at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Span

# The attributes the instrumentation fills from the URL, old and new semantic conventions.
_PATH_ATTRIBUTES = ("http.target", "url.path")
_URL_ATTRIBUTES = ("http.url", "url.full")
_QUERY_ATTRIBUTES = ("url.query",)
# A path no route matched (a 404) may be anything a caller typed, a mistyped link included.
UNMATCHED_PATH = "(no route)"


def route_of(scope: Mapping[str, Any]) -> str:
    """The template of the route a request matched (``/connect/{token}``): its path as a log
    line may name it."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_PATH


def redact_request_span(span: Span, scope: dict[str, Any]) -> None:
    """The span's URL attributes as the route's template, without the query."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    route = attributes.get("http.route")
    path = route if isinstance(route, str) else UNMATCHED_PATH
    for name in _PATH_ATTRIBUTES:
        if name in attributes:
            span.set_attribute(name, path)
    for name in _URL_ATTRIBUTES:
        if name in attributes:
            span.set_attribute(name, f"{scope.get('scheme', 'http')}://{_host(scope)}{path}")
    for name in _QUERY_ATTRIBUTES:
        if name in attributes:
            span.set_attribute(name, "")


def _host(scope: dict[str, Any]) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            return str(value.decode("latin-1"))
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def instrument(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One span per request; not one per chunk a live (SSE) stream sends.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,static",
        exclude_spans=["send", "receive"],
        server_request_hook=redact_request_span,
    )
