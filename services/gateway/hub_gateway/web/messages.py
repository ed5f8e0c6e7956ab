"""The pages' scripts read their messages as JSON: ``GET /i18n/{language}.json``.

The page names the URL with the catalogue's content hash (``?v=…``), so a browser keeps it
for a year and fetches it again only when a translation changes; the ETag answers a
revalidation with 304. Each language's answer is made once per process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response

from hub_common.i18n import LANGUAGES, messages_for_scripts

script_messages = APIRouter(include_in_schema=False)

_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "public, no-cache"


@dataclass(frozen=True)
class ScriptMessages:
    body: bytes
    version: str  # the content hash: in the URL and as the ETag

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@cache
def script_messages_of(language: str) -> ScriptMessages:
    document = {"language": language, "messages": messages_for_scripts(language)}
    body = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return ScriptMessages(body=body, version=hashlib.sha256(body).hexdigest()[:16])


def messages_url(language: str) -> str:
    return f"/i18n/{language}.json?v={script_messages_of(language).version}"


@script_messages.get("/i18n/{language}.json")
async def messages_json(language: str, request: Request, v: str | None = None) -> Response:
    if language not in LANGUAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    messages = script_messages_of(language)
    # Only the URL of this very version may be kept without asking again.
    headers = {"ETag": messages.etag, "Cache-Control": _IMMUTABLE if v == messages.version else _REVALIDATE}
    if messages.etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(messages.body, media_type="application/json", headers={**headers, "Content-Language": language})
