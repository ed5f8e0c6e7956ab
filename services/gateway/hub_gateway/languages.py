"""The language of each request, and error details in it.

The rule (hub_common.i18n.choose_language): the signed-in accountant's saved preference,
else the browser's Accept-Language, else English. ``current_principal`` records the
preference as it resolves the caller; a request nobody signed in to (the sign-in page, a
client's Connect page) goes by Accept-Language alone.

Error ``detail`` texts a person reads are catalogue messages: a route raises them in English
(a plain ``HTTPException`` for a fixed text, ``LocalizedHTTPException`` when the text has
values) and ``localized_http_exception_handler`` answers them in the request's language.
Machine-readable parts (``field``, a failure's ``kind``) are never translated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub_common.commands import Rejection
from hub_common.i18n import InvalidValue, Translator, choose_language, translator


def request_language(request: Request) -> str:
    """The language of this request: set once the caller is known, else from the browser."""
    chosen = getattr(request.state, "language", None)
    if isinstance(chosen, str):
        return chosen
    return choose_language(None, request.headers.get("accept-language"))


def remember_preference(request: Request, locale_preference: str | None) -> str:
    """Records the signed-in accountant's language for the rest of the request."""
    language = choose_language(locale_preference, request.headers.get("accept-language"))
    request.state.language = language
    return language


def request_translator(request: Request) -> Translator:
    return translator(request_language(request))


def said(request: Request, message: str, /, **values: object) -> str:
    """A catalogue message in the request's language (a text from elsewhere stays as it is)."""
    return request_translator(request).gettext(message, **values)


def rejection_text(request: Request, rejection: Rejection) -> str:
    """Why an owning service refused a command, in the request's language."""
    return said(request, rejection.message_id or rejection.message, **rejection.values)


def rejection_exception(status_code: int, rejection: Rejection) -> LocalizedHTTPException:
    """The HTTP answer for a refused command: ``{"message", "field"}``, said in the request's language."""
    return LocalizedHTTPException(
        status_code,
        rejection.message_id or rejection.message,
        field=rejection.field,
        values=rejection.values,
        as_object=True,
    )


class LocalizedHTTPException(HTTPException):
    """An HTTP error whose message is a catalogue msgid with ``%(name)s`` values.

    ``detail`` keeps the English text (what logs and tests outside a request see); the
    answer carries it in the request's language. With ``field`` (or ``as_object``) the
    detail is ``{"message": …, "field": …}``, the shape the API's 422s, conflicts and
    refused commands already use.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        values: Mapping[str, object] | None = None,
        as_object: bool = False,
    ) -> None:
        self.message = message
        self.values = dict(values or {})
        self.field = field
        english = message % self.values if self.values else message
        super().__init__(
            status_code,
            detail={"message": english, "field": field} if field is not None or as_object else english,
            headers=dict(headers) if headers else None,
        )


def _translated(t: Translator, text: object, values: Mapping[str, object]) -> object:
    # A text that is not in the catalogue (a value from elsewhere, a validation message)
    # comes back unchanged: gettext answers the msgid itself.
    return t.gettext(text, **values) if isinstance(text, str) else text


def localized_detail(t: Translator, error: StarletteHTTPException) -> Any:
    message, values = (error.message, error.values) if isinstance(error, LocalizedHTTPException) else (None, {})
    detail: object = error.detail  # FastAPI's HTTPException takes any JSON value
    if isinstance(detail, str):
        return _translated(t, message or detail, values)
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return {**detail, "message": _translated(t, message or detail["message"], values)}
    return detail


def refusal_text(request: Request, error: StarletteHTTPException) -> str:
    """What a page says of a refusal, in the request's language (its message alone)."""
    detail = localized_detail(request_translator(request), error)
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return str(detail["message"])
    return str(detail)


def _json_safe(value: Any) -> Any:
    """``value`` as strict JSON can carry it: a 422 echoes the caller's input, which Python's
    JSON parser may have read as NaN, ±Infinity (also ``1e400``) or a string with a lone
    surrogate (``"\\ud800"``), none of which a JSON answer can encode. Such a number becomes
    its name ("nan", "inf") and such a string shows its surrogates escaped; the rest is kept."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def localized_validation_exception_handler(request: Request, error: Exception) -> Response:
    """FastAPI's 422 for an invalid request, the hub's own reasons (a validator's ValueError,
    a catalogue message) in the request's language; pydantic's other messages stay English.
    A reason that is a sentence of its own (``InvalidValue``) is the whole message.
    The input and location each problem echoes, and a message quoting the input, are made
    encodable first (``_json_safe``)."""
    assert isinstance(error, RequestValidationError)
    t = request_translator(request)
    problems: list[Any] = []
    for problem in error.errors():
        reason = (problem.get("ctx") or {}).get("error")
        if problem.get("type") == "value_error" and isinstance(reason, InvalidValue):
            problem = {**problem, "msg": t.gettext(reason.message, **reason.values)}
        elif problem.get("type") == "value_error" and reason is not None:
            problem = {**problem, "msg": t.gettext("Value error, %(reason)s", reason=t.gettext(str(reason)))}
        echoed = {key: _json_safe(problem[key]) for key in ("loc", "input", "msg") if key in problem}
        problems.append({**problem, **echoed})
    response: Response = await request_validation_exception_handler(
        request, RequestValidationError(problems, body=error.body)
    )
    response.headers["Content-Language"] = t.language
    return response


async def localized_http_exception_handler(request: Request, error: Exception) -> Response:
    """FastAPI's own answer for an HTTPException, with its detail in the request's language."""
    assert isinstance(error, StarletteHTTPException)
    error.detail = localized_detail(request_translator(request), error)
    response: Response = await http_exception_handler(request, error)
    response.headers["Content-Language"] = request_language(request)
    return response
