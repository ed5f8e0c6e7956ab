"""Following the links of an invitation email.

Opening a link shows what will happen and a button: email scanners open links by
themselves, and a single-use link must not be spent by one. Accepting needs the invited
address to be signed in; every refusal (tampered, expired, reused, another account) gets
a clear page and changes nothing.
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub_common import commands
from hub_common.commands import CommandRejected, RejectionReason
from hub_common.i18n import N_
from hub_gateway.dependencies import MANAGING_ROLES, Session, State, current_principal
from hub_gateway.languages import rejection_text, said
from hub_gateway.web.rendering import render

invitation_pages = APIRouter(include_in_schema=False)

_STATUS = {
    RejectionReason.INVALID: status.HTTP_400_BAD_REQUEST,
    RejectionReason.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    RejectionReason.CONFLICT: status.HTTP_409_CONFLICT,
    RejectionReason.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    RejectionReason.UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    RejectionReason.UPSTREAM: status.HTTP_502_BAD_GATEWAY,
    RejectionReason.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    RejectionReason.PRECONDITION_FAILED: status.HTTP_412_PRECONDITION_FAILED,
}


@invitation_pages.get("/invitations/accept", response_class=HTMLResponse)
async def show_invitation(request: Request, state: State, session: Session, link: str = "", add: int = 0) -> Response:
    try:
        principal = await current_principal(request, state, session)
    except HTTPException:
        back = f"/invitations/accept?{urlencode({'link': link, 'add': add})}"
        return RedirectResponse(f"/sign-in?{urlencode({'next': back})}", status_code=status.HTTP_303_SEE_OTHER)
    browser = getattr(request.state, "browser_session", None)
    return render(
        request,
        "invitation.html",
        {
            "principal": principal,
            "link": link,
            "add": bool(add),
            "may_add": principal.role in MANAGING_ROLES,
            "csrf_token": browser.csrf_token if browser else "",
            "result": None,
            "error": None,
        },
    )


@invitation_pages.post("/invitations/accept", response_class=HTMLResponse)
async def accept_invitation(
    request: Request,
    state: State,
    session: Session,
    link: Annotated[str, Form(max_length=500)],
    add: Annotated[int, Form()] = 0,
) -> Response:
    principal = await current_principal(request, state, session)
    may_add = principal.role in MANAGING_ROLES
    context = {
        "principal": principal,
        "link": link,
        "add": bool(add),
        "may_add": may_add,
        "csrf_token": "",
        "result": None,
        "error": None,
    }
    if len(link) < 10:
        context["error"] = said(request, N_("This link is incomplete. Open it again from the invitation email."))
        return render(request, "invitation.html", context, status_code=status.HTTP_400_BAD_REQUEST)
    if add and not may_add:
        # Adding a client is the owners' and admins' (the roles table), whoever the client
        # invited: staff accept the firm's access alone, and the link is not spent.
        context["error"] = said(
            request,
            N_(
                "Only the firm's owners and admins put a client on the dashboard. Accept the firm's "
                "access alone from the page of this link, or ask an owner or admin to add the client."
            ),
        )
        return render(request, "invitation.html", context, status_code=status.HTTP_403_FORBIDDEN)
    command = commands.AcceptInvitation(
        token=link,
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        add_to_dashboard=bool(add),
        correlation_id=request.state.correlation_id,
    )
    try:
        result = await commands.send_command(
            state.nats,
            commands.ACCEPT_INVITATION,
            command,
            commands.InvitationAcceptedResult,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        context["error"] = rejection_text(request, rejected.rejection)
        # A command that did not answer in time may still have been carried out.
        context["unsure"] = rejected.rejection.reason is RejectionReason.UNAVAILABLE
        return render(request, "invitation.html", context, status_code=_STATUS[rejected.rejection.reason])
    context["result"] = result
    if result.accepted_before is not None:
        # Numbers only, as in the invitations service's sentences: the words are translated.
        day = result.accepted_before.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if add and result.client_added is False:
            # The access alone was accepted; this is the link that also adds the client.
            context["accepted_before"] = said(
                request,
                N_(
                    "You accepted this invitation of %(client)s on %(day)s for your firm's access only;"
                    " add %(client)s on Manage Clients."
                ),
                client=result.client_name,
                day=day,
            )
        else:
            context["accepted_before"] = said(
                request,
                N_("You accepted this invitation of %(client)s on %(day)s; there is nothing more to do."),
                client=result.client_name,
                day=day,
            )
    return render(request, "invitation.html", context)
