"""Server-rendered pages. The dashboard reads the same read model as the JSON API."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hub_gateway.api.deps import SESSION_COOKIE, Session, State, current_principal
from hub_gateway.auth import issue_dev_token
from hub_gateway.readmodel import queries

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def format_amount(value: object) -> str:
    """Thousands separators and two decimals, computed on Decimal (never float)."""
    try:
        return format(Decimal(str(value)), ",.2f")
    except (InvalidOperation, ValueError):
        return "—"


templates.env.filters["amount"] = format_amount
pages = APIRouter(include_in_schema=False)


@pages.get("/", response_class=HTMLResponse)
async def dashboard_page(request: Request, state: State, session: Session) -> Response:
    try:
        principal = await current_principal(request, state, session)
    except HTTPException:
        return RedirectResponse("/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    rows = await queries.dashboard_rows(session, firm_id=principal.firm_id)
    return templates.TemplateResponse(request, "dashboard.html", {"principal": principal, "rows": rows})


@pages.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, state: State) -> Response:
    return templates.TemplateResponse(request, "sign_in.html", {"dev_mode": state.settings.is_dev, "error": None})


@pages.post("/sign-in")
async def sign_in(request: Request, state: State, email: Annotated[str, Form(max_length=320)]) -> Response:
    if not state.settings.is_dev:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    token = issue_dev_token(state.settings, email)
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@pages.post("/sign-out")
async def sign_out() -> Response:
    response = RedirectResponse("/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE)
    return response
