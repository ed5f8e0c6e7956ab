"""Dev mode only: the mail the local SMTP sink caught, so invitation links can be followed.

Signed in only, and only mail addressed to the signed-in firm's accountants: even on a
developer's machine one firm's invitations are not another's to read.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub_common.dev_mail import read_mailbox
from hub_common.settings import Mode
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.dependencies import Session, State, current_principal
from hub_gateway.web.rendering import render

dev_mail_pages = APIRouter(include_in_schema=False)


@dev_mail_pages.get("/dev/mail", response_class=HTMLResponse)
async def mailbox(request: Request, state: State, session: Session) -> Response:
    if state.settings.mode is not Mode.DEV or state.settings.smtp_sink_dir is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    try:
        principal = await current_principal(request, state, session)
    except HTTPException:
        return RedirectResponse(f"/sign-in?{urlencode({'next': '/dev/mail'})}", status_code=status.HTTP_303_SEE_OTHER)
    members = {
        accountant.email.casefold()
        for accountant in await accounts_queries.accountants(session, firm_id=principal.firm_id)
    }
    members.add(principal.email.casefold())
    mails = [
        mail
        for mail in read_mailbox(state.settings.smtp_sink_dir)
        if any(address.casefold() in members for address in mail.to)
    ]
    return render(request, "dev_mail.html", {"mails": mails})
