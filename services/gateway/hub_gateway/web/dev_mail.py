"""Dev mode only: the mail the local SMTP sink caught, so invitation links can be followed."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from hub_common.dev_mail import read_mailbox
from hub_gateway.api.deps import State
from hub_gateway.web.pages import templates

dev_mail_pages = APIRouter(include_in_schema=False)


@dev_mail_pages.get("/dev/mail", response_class=HTMLResponse)
async def mailbox(request: Request, state: State) -> Response:
    if not state.settings.is_dev or state.settings.smtp_sink_dir is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    mails = read_mailbox(state.settings.smtp_sink_dir)
    return templates.TemplateResponse(request, "dev_mail.html", {"mails": mails})
