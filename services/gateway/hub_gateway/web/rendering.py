"""Server-rendered pages in the request's language.

One Jinja2 environment per language, each with Jinja2's i18n extension bound to that
language's translations (``{% trans %}``, ``_()``, newstyle gettext: ``%(name)s`` values,
autoescaped) and ``format_date`` in its locale. Every page gets ``language`` for
``<html lang>`` and ``messages_url`` for its scripts' messages.
"""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path
from typing import Any

from babel.dates import format_date
from fastapi import Request, status
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub_common.i18n import translations
from hub_gateway.languages import request_language
from hub_gateway.web.messages import messages_url

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _templates(language: str) -> Jinja2Templates:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    environment.globals["format_date"] = partial(format_date, format="medium", locale=language)
    return Jinja2Templates(env=environment)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = status.HTTP_200_OK
) -> Response:
    language = request_language(request)
    page = {"language": language, "messages_url": messages_url(language), **(context or {})}
    response = _templates(language).TemplateResponse(request, template, page, status_code=status_code)
    response.headers["Content-Language"] = language
    return response
