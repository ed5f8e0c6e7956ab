"""The browser side of accountant sign-in: Entra's authorize and logout endpoints.

- ``GET  /{tenant}/oauth2/v2.0/authorize``: checks the request (:mod:`hub_sandbox.sign_in`)
  and shows the sign-in page, or signs in silently with the browser's session (no
  ``prompt=login``), or answers ``login_required`` to ``prompt=none`` without one.
- ``POST /{tenant}/oauth2/v2.0/authorize``: the page's form (``flowToken`` + ``login``);
  redirects to the app with ``code``, ``state``, ``session_state`` (and ``client_info``).
- ``GET|POST /{tenant}/oauth2/v2.0/logout``: ends the session and goes to
  ``post_logout_redirect_uri`` when its origin is a registered redirect URI's, else shows a
  "signed out" page.

Errors before the redirect URI is known to be the app's are shown on a page (400), as
Entra's are; later ones go back to the app as ``error`` and ``error_description``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from html import escape
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub_common.logging import get_logger
from hub_sandbox.accounts import is_valid_email
from hub_sandbox.entra import NO_CACHE, EntraError, base_url, correlation_id, entra_timestamp
from hub_sandbox.sign_in import (
    SESSION_COOKIE,
    AuthorizationRequest,
    AuthorizeError,
    Session,
    authorize_error_parameters,
    clock,
    is_registered_logout_uri,
    login_required,
    open_flow,
    open_session,
    read_authorization_request,
    resolve_authority,
    seal_flow,
    seal_session,
    sign_in,
    single_sign_on,
    with_parameters,
)
from hub_sandbox.state import SandboxState

log = get_logger(__name__)

SESSION_MAX_AGE_SECONDS = 24 * 3600
INVALID_EMAIL_MESSAGE = "Enter a valid email address, such as anna@example.com."


def sign_in_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Entra ID sign-in"])

    @router.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request) -> Response:
        try:
            authority = resolve_authority(state, tenant)
        except EntraError as error:
            return _error_page(request, error)
        try:
            asked = read_authorization_request(state, authority, request.query_params)
            session = open_session(state, request.cookies.get(SESSION_COOKIE))
            silent = single_sign_on(asked, session)
            if silent is not None:
                return _complete(request, asked, silent, new_session=False)
            if asked.prompt == "none":
                raise login_required(asked)
        except AuthorizeError as refused:
            return _refusal(request, refused)
        prefill = asked.login_hint or (session.email if session and asked.prompt == "select_account" else "")
        return _sign_in_page(request, asked, email=prefill, error=None)

    @router.post("/{tenant}/oauth2/v2.0/authorize")
    async def submit(tenant: str, request: Request) -> Response:
        form = await request.form()
        flow_token = str(form.get("flowToken") or "")
        email = str(form.get("login") or "").strip()
        try:
            asked = open_flow(state, flow_token)
        except AuthorizeError as refused:
            return _refusal(request, refused)
        if not is_valid_email(email):
            return _sign_in_page(request, asked, email=email, error=INVALID_EMAIL_MESSAGE)
        session = Session(email=email, session_id=str(uuid.uuid4()), auth_time=int(clock()))
        return _complete(request, asked, session, new_session=True)

    @router.get("/{tenant}/oauth2/v2.0/logout")
    @router.post("/{tenant}/oauth2/v2.0/logout")
    async def logout(tenant: str, request: Request) -> Response:
        parameters: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            parameters |= {key: str(value) for key, value in (await request.form()).items()}
        try:
            resolve_authority(state, tenant)
        except EntraError as error:
            return _error_page(request, error)
        target = parameters.get("post_logout_redirect_uri", "")
        response: Response
        if target and is_registered_logout_uri(target, state.settings.redirect_uris):
            back = {"state": parameters["state"]} if "state" in parameters else {}
            response = RedirectResponse(with_parameters(target, "query", back) if back else target, status_code=302)
        else:
            response = _page(
                "Sign out",
                "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>",
            )
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return response

    def _complete(request: Request, asked: AuthorizationRequest, session: Session, *, new_session: bool) -> Response:
        grant, parameters = sign_in(state, asked, session)
        log.info(
            "user signed in",
            tenant=str(grant.tenant.id),
            object_id=str(grant.user.object_id(grant.tenant.id)),
            silently=not new_session,
        )
        response = _deliver(asked.redirect_uri, asked.response_mode, parameters)
        if new_session:
            response.set_cookie(
                SESSION_COOKIE,
                seal_session(state, session),
                max_age=SESSION_MAX_AGE_SECONDS,
                path="/",
                secure=True,
                httponly=True,
                samesite="lax",
            )
        return response

    def _sign_in_page(request: Request, asked: AuthorizationRequest, *, email: str, error: str | None) -> Response:
        authority = resolve_authority(state, asked.authority)
        organisation = (
            f'<p class="tenant">Organisation: <strong>{escape(authority.label)}</strong></p>'
            if authority.directory
            else ""
        )
        described_by = "login-note login-error" if error else "login-note"
        error_html = f'<p id="login-error" class="error" role="alert">{escape(error)}</p>' if error else ""
        invalid = ' aria-invalid="true"' if error else ""
        body = f"""
<p class="brand">Microsoft Entra ID <span>sandbox</span></p>
<h1 id="heading">Sign in</h1>
<p>to continue to <strong>{escape(state.settings.sandbox_app_name)}</strong></p>
{organisation}
<form method="post" action="{escape(request.url.path)}">
  <input type="hidden" name="flowToken" value="{escape(seal_flow(state, asked))}">
  <label for="login">Email address</label>
  <input id="login" name="login" type="email" inputmode="email" autocomplete="username" required
         autofocus value="{escape(email)}" aria-describedby="{described_by}"{invalid}>
  {error_html}
  <p id="login-note" class="hint">Any valid email address signs in; its domain decides the organisation.</p>
  <button type="submit">Sign in</button>
</form>
<p class="note">This is the Accountant Hub sandbox's stand-in for Microsoft sign-in.
No password is asked and nothing leaves this computer.</p>
"""
        return _page("Sign in to your account", body, form_target=asked.redirect_uri)

    return router


def _deliver(redirect_uri: str, response_mode: str, parameters: Mapping[str, str]) -> Response:
    """Send the response to the app: a 302 (query or fragment) or a self-posting form."""
    if response_mode != "form_post":
        return RedirectResponse(with_parameters(redirect_uri, response_mode, parameters), status_code=302)
    nonce = secrets.token_urlsafe(16)
    fields = "\n".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in parameters.items()
    )
    body = f"""
<h1>Signing you in</h1>
<form method="post" action="{escape(redirect_uri)}">
{fields}
<noscript><p>Script is off: select Continue to go back to the application.</p></noscript>
<button type="submit">Continue</button>
</form>
<script nonce="{nonce}">document.forms[0].submit();</script>
"""
    return _page("Working...", body, form_target=redirect_uri, script_nonce=nonce)


def _refusal(request: Request, refused: AuthorizeError) -> Response:
    if refused.redirect is None:
        return _error_page(request, refused.error)
    trace_id = str(uuid.uuid4())
    log.info("authorize request refused", aadsts=refused.error.code)
    parameters = authorize_error_parameters(
        refused.error, refused.redirect, base_url=base_url(request), trace_id=trace_id
    )
    return _deliver(refused.redirect.redirect_uri, refused.redirect.response_mode, parameters)


def _error_page(request: Request, error: EntraError) -> Response:
    trace_id = str(uuid.uuid4())
    log.info("authorize request refused on a page", aadsts=error.code)
    body = f"""
<p class="brand">Microsoft Entra ID <span>sandbox</span></p>
<h1>Sign in</h1>
<p>Sorry, but we're having trouble signing you in.</p>
<p class="error" role="alert" id="message">{escape(error.message)}</p>
<h2>Troubleshooting details</h2>
<dl>
  <dt>Request Id</dt><dd>{trace_id}</dd>
  <dt>Correlation Id</dt><dd>{escape(correlation_id(request))}</dd>
  <dt>Timestamp</dt><dd>{entra_timestamp()}</dd>
  <dt>Message</dt><dd>{escape(error.message)}</dd>
</dl>
"""
    return _page("Sign in to your account", body, status=error.status)


_STYLE = """
body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;color:#1b1b1b;margin:0}
main{max-width:26rem;margin:3rem auto;background:#fff;padding:2.5rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;font-weight:600;margin:.5rem 0}
h2{font-size:1rem}
.brand{color:#505050;font-weight:600}.brand span{font-weight:400;border:1px solid #505050;padding:0 .3rem;
border-radius:.2rem;font-size:.8rem;margin-left:.3rem}
label{display:block;font-weight:600;margin-top:1.5rem}
input[type=email]{width:100%;box-sizing:border-box;font-size:1rem;padding:.5rem;margin-top:.3rem;
border:1px solid #666}
input[aria-invalid=true]{border-color:#a80000}
.error{color:#a80000}
.hint,.note,.tenant{color:#505050;font-size:.9rem}
.note{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}
button{margin-top:1.5rem;font-size:1rem;padding:.5rem 2rem;background:#0067b8;color:#fff;border:0;cursor:pointer}
button:hover{background:#005da6}
:focus-visible{outline:3px solid #1b1b1b;outline-offset:2px}
dt{font-weight:600}dd{margin:0 0 .5rem;word-break:break-all}
"""


def _page(
    title: str,
    body: str,
    *,
    status: int = 200,
    form_target: str | None = None,
    script_nonce: str | None = None,
) -> HTMLResponse:
    form_action = "'self'"
    if form_target:
        target = urlsplit(form_target)
        form_action += f" {target.scheme}://{target.netloc}"
    policy = (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action};"
        " frame-ancestors 'none'; base-uri 'none'"
    )
    if script_nonce:
        policy += f"; script-src 'nonce-{script_nonce}'"
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<main aria-labelledby="heading">
{body}
</main>
</body>
</html>
"""
    # The error and sign-in pages name their h1 "heading"; the others still get a label.
    if 'id="heading"' not in body:
        html = html.replace('<main aria-labelledby="heading">', f'<main aria-label="{escape(title)}">')
    headers = NO_CACHE | {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(html, status_code=status, headers=headers)
