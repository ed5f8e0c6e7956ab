"""The API's browsable page (``/docs``): Swagger UI, served by the hub itself.

FastAPI's own page loads Swagger UI from a CDN, so it ran a third party's script on the
hub's origin, where it could act as the signed-in accountant, and needed the CDN at run
time (nothing else of the hub does). Here the files come from the fastapi-offline package
(Swagger UI 5, which reads OpenAPI 3.1), under ``/static/swagger-ui/``, and the page is under
the hub's Content-Security-Policy like every other: its one script of the hub's starts it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hub_gateway.web.rendering import render

SWAGGER_UI_FILES = Path(str(files("fastapi_offline") / "static"))

api_docs_pages = APIRouter(include_in_schema=False)


@api_docs_pages.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> Response:
    return render(request, "api_docs.html", {})
