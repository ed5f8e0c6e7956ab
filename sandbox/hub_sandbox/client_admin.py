"""The client administrator's side of an invitation: BC's "Invite External Accountant".

BC's wizard (page 9033) asks the administrator to accept data sharing ("I Accept"), then
for the accountant's email address, first and last name and an editable welcome email.
Here it also asks which environment and companies to share, because the hub reads them.

- ``GET  /admin/{tenant}/invite-external-accountant``: the form.
- ``POST /admin/{tenant}/invite-external-accountant``: checks the form, grants the hub's
  app admin consent in the tenant (what the real administrator does in Entra), then sends
  the invitation to the hub::

      POST {sandbox_hub_url}/api/v1/client-invitations
      Authorization: Bearer <the administrator's Entra token for the hub's app>
      {"accountant_email", "accountant_name", "environment", "companies": [names],
       "client_name", "welcome_text"}

  The token is a v2.0 ID-token-shaped JWT signed with the sandbox's Entra key (same kid
  and JWKS as its ID tokens): ``iss`` ``https://{host}/{tid}/v2.0``, ``aud`` the hub's
  client id, ``tid``, ``oid``, ``preferred_username`` ``admin@{tenant domain}``, ``name``,
  ``iat``/``nbf``/``exp`` (5 minutes), ``ver`` "2.0" and ``wids`` with Global
  Administrator, which BC's wizard requires.

The page then shows "Invitation sent to …" or the hub's error (status and message).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hub_common.logging import get_logger
from hub_sandbox.accounts import Directory, SandboxUser, is_valid_email
from hub_sandbox.entra import base_url
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxEnvironment, SandboxTenant

log = get_logger(__name__)

INVITE_PATH = "/admin/{tenant}/invite-external-accountant"
HUB_INVITATIONS_PATH = "/api/v1/client-invitations"
# Entra's directory role template ids the wizard accepts (the token's wids claim).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
ADMIN_TOKEN_LIFETIME_SECONDS = 300
MAX_WELCOME_TEXT = 4000
MAX_NAME = 120


def invite_url(base: str, tenant: SandboxTenant) -> str:
    """Where a tenant's administrator invites an external accountant."""
    return base + INVITE_PATH.format(tenant=tenant.domain)


def admin_user(tenant: SandboxTenant) -> SandboxUser:
    """The tenant's administrator, as the sandbox's sign-in knows them."""
    directory = Directory(id=tenant.id, domain=tenant.domain, display_name=tenant.display_name, sandbox_tenant=tenant)
    return SandboxUser(email=f"admin@{tenant.domain}", home=directory)


def admin_token(state: SandboxState, tenant: SandboxTenant, issuer_base: str, *, now: float | None = None) -> str:
    """The administrator's Entra token for the hub's app, signed with the sandbox's key."""
    user = admin_user(tenant)
    issued_at = int(now if now is not None else time.time())
    audience = state.settings.entra_client_id
    object_id = user.home_object_id
    subject = hashlib.sha256(f"{audience.casefold()}/{object_id}".encode()).digest()
    claims: dict[str, Any] = {
        "iss": f"{issuer_base}/{tenant.id}/v2.0",
        "aud": audience,
        "tid": str(tenant.id),
        "oid": str(object_id),
        "sub": base64.urlsafe_b64encode(subject).rstrip(b"=").decode(),
        "preferred_username": user.email,
        "name": user.name,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ADMIN_TOKEN_LIFETIME_SECONDS,
        "ver": "2.0",
        "wids": [GLOBAL_ADMINISTRATOR],
    }
    return state.token_issuer.sign(claims)


# ---------------------------------------------------------------------------- the form


def company_choice(environment: str, company: str) -> str:
    """A company checkbox's value: ``{environment}/{company}`` (environment names have no
    '/'), so a company name found in two environments is never ambiguous."""
    return f"{environment}/{company}"


@dataclass
class InviteForm:
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    environment: str = ""
    # Checked boxes, as ``company_choice`` values.
    companies: list[str] = field(default_factory=list)
    welcome_text: str = ""
    consent: bool = False

    @classmethod
    def parse(cls, body: bytes) -> InviteForm:
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        values: dict[str, str] = {}
        companies: list[str] = []
        for key, value in pairs:
            if key == "company":
                companies.append(value)
            else:
                values.setdefault(key, value)
        return cls(
            email=values.get("email", "").strip(),
            first_name=" ".join(values.get("first_name", "").split()),
            last_name=" ".join(values.get("last_name", "").split()),
            environment=values.get("environment", "").strip(),
            companies=companies,
            welcome_text=values.get("welcome_text", "").replace("\r\n", "\n").strip(),
            consent=values.get("consent") == "accept",
        )

    @property
    def accountant_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def company_names(self) -> list[str]:
        """The chosen companies' names, once each, in the order they were checked."""
        return list(dict.fromkeys(choice.partition("/")[2] for choice in self.companies))

    def errors(self, tenant: SandboxTenant) -> dict[str, str]:
        """What is wrong, by field id; empty when the form can be sent."""
        found: dict[str, str] = {}
        if not self.consent:
            found["consent"] = "Select I Accept to share data with the external accountant."
        if not self.email:
            found["email"] = "Enter the accountant's email address."
        elif not is_valid_email(self.email):
            found["email"] = "Enter an email address like name@firm.example."
        if not self.first_name:
            found["first_name"] = "Enter the accountant's first name."
        elif len(self.first_name) > MAX_NAME:
            found["first_name"] = f"Use at most {MAX_NAME} characters."
        if not self.last_name:
            found["last_name"] = "Enter the accountant's last name."
        elif len(self.last_name) > MAX_NAME:
            found["last_name"] = f"Use at most {MAX_NAME} characters."
        environment = tenant.environment(self.environment) if self.environment else None
        if environment is None:
            found["environment"] = "Choose one of the tenant's environments."
        elif not self.companies:
            found["companies"] = "Choose at least one company to share."
        else:
            wrong = [
                choice.partition("/")[2] or choice
                for choice in self.companies
                if choice.partition("/")[0].casefold() != environment.name.casefold()
                or environment.company_named(choice.partition("/")[2]) is None
            ]
            if wrong:
                found["companies"] = f"{', '.join(wrong)}: not a company of {environment.name}."
        if len(self.welcome_text) > MAX_WELCOME_TEXT:
            found["welcome_text"] = f"Use at most {MAX_WELCOME_TEXT} characters."
        return found

    def hub_body(self, tenant: SandboxTenant) -> dict[str, Any]:
        environment = tenant.environment(self.environment)
        assert environment is not None
        return {
            "accountant_email": self.email,
            "accountant_name": self.accountant_name,
            "environment": environment.name,
            "companies": self.company_names(),
            "client_name": tenant.display_name,
            "welcome_text": self.welcome_text or None,
        }


def default_form(tenant: SandboxTenant) -> InviteForm:
    first = tenant.environments[0] if tenant.environments else None
    return InviteForm(
        environment=first.name if first else "",
        companies=[company_choice(first.name, company.name) for company in first.companies] if first else [],
        welcome_text=(
            f"Hello,\n\nWe at {tenant.display_name} would like you to follow our books in Business Central"
            " through Accountant Hub."
        ),
    )


# ---------------------------------------------------------------------------- the hub


@dataclass(frozen=True)
class HubAnswer:
    ok: bool
    status: int | None  # None: the hub could not be reached
    message: str
    invitation_id: str | None = None


def _hub_message(response: httpx.Response) -> str:
    """The hub's error in words, whatever shape its body has."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail[:500]
    if isinstance(detail, dict):
        message = detail.get("message") or detail.get("error_description") or detail.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        field_name = detail.get("field")
        if message:
            return f"{message} ({field_name})" if field_name else str(message)[:500]
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        ]
        if parts:
            return "; ".join(parts)[:500]
    return response.text.strip()[:500]


async def send_to_hub(
    state: SandboxState, tenant: SandboxTenant, form: InviteForm, issuer_base: str, accept_language: str | None = None
) -> HubAnswer:
    """``accept_language`` is the administrator's (their browser's): the hub writes the
    invitation email in it, as BC's wizard would send its user's language."""
    settings = state.settings
    url = settings.sandbox_hub_url.rstrip("/") + HUB_INVITATIONS_PATH
    headers = {
        "Authorization": f"Bearer {admin_token(state, tenant, issuer_base)}",
        "X-Correlation-Id": str(uuid.uuid4()),
    }
    if accept_language:
        headers["Accept-Language"] = accept_language[:200]
    timeout = httpx.Timeout(settings.sandbox_hub_timeout_seconds, connect=5.0)
    try:
        # Only the configured hub is called; proxies from the environment do not apply.
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.post(url, json=form.hub_body(tenant), headers=headers)
    except httpx.HTTPError as error:
        log.info("hub unreachable for an invitation", url=url, error=repr(error))
        return HubAnswer(
            ok=False,
            status=None,
            message=f"The Accountant Hub at {settings.sandbox_hub_url} could not be reached"
            f" ({type(error).__name__}). Check that it is running and that HUB_SANDBOX_HUB_URL points at it.",
        )
    if response.is_success:
        invitation_id: str | None = None
        try:
            body = response.json()
            invitation_id = str(body["invitation_id"]) if isinstance(body, dict) and "invitation_id" in body else None
        except ValueError:
            pass
        return HubAnswer(ok=True, status=response.status_code, message="", invitation_id=invitation_id)
    log.info("hub refused an invitation", url=url, status=response.status_code)
    return HubAnswer(ok=False, status=response.status_code, message=_hub_message(response))


# ---------------------------------------------------------------------------- pages

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:44rem;padding:0 1rem;line-height:1.5}"
    "label,legend{font-weight:600;display:block;margin-top:1rem}"
    "input[type=email],input[type=text],select,textarea{font:inherit;width:100%;padding:.4rem;box-sizing:border-box}"
    "fieldset{border:1px solid #bbb;margin-top:1rem}fieldset label{font-weight:normal;display:inline}"
    ".hint{color:#444;margin:.2rem 0}.error{color:#a00;font-weight:600}"
    "[aria-invalid=true]{border:2px solid #a00}"
    ".summary{border:2px solid #a00;padding:.5rem 1rem}.ok{border:2px solid #070;padding:.5rem 1rem}"
    "button{font:inherit;margin-top:1.5rem;padding:.5rem 1.2rem}"
)


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error_of(errors: dict[str, str], name: str) -> str:
    if name not in errors:
        return ""
    return f'<p class="error" id="{name}-error">Error: {escape(errors[name])}</p>'


def _described(errors: dict[str, str], name: str, hint: bool = False) -> str:
    ids = ([f"{name}-hint"] if hint else []) + ([f"{name}-error"] if name in errors else [])
    invalid = ' aria-invalid="true"' if name in errors else ""
    return (f' aria-describedby="{" ".join(ids)}"' if ids else "") + invalid


def _text_input(errors: dict[str, str], name: str, label: str, value: str, kind: str, autocomplete: str) -> str:
    return (
        f'<label for="{name}">{escape(label)}</label>{_error_of(errors, name)}'
        f'<input type="{kind}" id="{name}" name="{name}" value="{escape(value)}" required'
        f' autocomplete="{autocomplete}"{_described(errors, name)}>'
    )


def _companies_fieldset(environment: SandboxEnvironment, form: InviteForm, errors: dict[str, str]) -> str:
    boxes = "".join(
        f'<div><input type="checkbox" id="company-{index}-{escape(environment.name)}" name="company"'
        f' value="{escape(company_choice(environment.name, company.name))}"'
        f"{' checked' if company_choice(environment.name, company.name) in form.companies else ''}>"
        f' <label for="company-{index}-{escape(environment.name)}">{escape(company.display_name)}</label></div>'
        for index, company in enumerate(environment.companies)
    )
    return (
        f"<fieldset{_described(errors, 'companies')}><legend>Companies in {escape(environment.name)}</legend>"
        f"{boxes}</fieldset>"
    )


def _form_page(
    tenant: SandboxTenant, form: InviteForm, errors: dict[str, str], action: str, *, status: int = 200
) -> HTMLResponse:
    summary = ""
    if errors:
        items = "".join(f'<li><a href="#{name}">{escape(message)}</a></li>' for name, message in errors.items())
        summary = (
            '<div class="summary" role="alert" aria-labelledby="summary-title" tabindex="-1">'
            f'<h2 id="summary-title">There is a problem</h2><ul>{items}</ul></div>'
        )
    options = "".join(
        f'<option value="{escape(e.name)}"{" selected" if e.name.casefold() == form.environment.casefold() else ""}>'
        f"{escape(e.name)} ({escape(e.type)})</option>"
        for e in tenant.environments
    )
    companies = "".join(_companies_fieldset(environment, form, errors) for environment in tenant.environments)
    body = (
        f"<h1>Invite External Accountant</h1>"
        f"<p>{escape(tenant.display_name)} ({escape(tenant.domain)}), signed in as"
        f" <strong>{escape(admin_user(tenant).email)}</strong> (Global Administrator).</p>"
        f"{summary}"
        f'<form method="post" action="{escape(action)}" novalidate>'
        "<fieldset><legend>Data sharing</legend>"
        '<p class="hint" id="consent-hint">The external accountant will read the chosen companies\' data'
        " through Accountant Hub, and the Accountant Hub app gets admin consent in this tenant.</p>"
        f"{_error_of(errors, 'consent')}"
        f'<input type="checkbox" id="consent" name="consent" value="accept" required'
        f"{' checked' if form.consent else ''}{_described(errors, 'consent', hint=True)}>"
        ' <label for="consent">I Accept</label></fieldset>'
        + _text_input(errors, "email", "Email Address", form.email, "email", "email")
        + _text_input(errors, "first_name", "First Name", form.first_name, "text", "given-name")
        + _text_input(errors, "last_name", "Last Name", form.last_name, "text", "family-name")
        + f'<label for="environment">Environment</label>{_error_of(errors, "environment")}'
        f'<select id="environment" name="environment" required{_described(errors, "environment")}>{options}</select>'
        '<p class="hint" id="companies-hint">Choose the companies of that environment to share.</p>'
        f'{_error_of(errors, "companies")}<div id="companies">{companies}</div>'
        f'<label for="welcome_text">Welcome email</label>{_error_of(errors, "welcome_text")}'
        f'<textarea id="welcome_text" name="welcome_text" rows="6" maxlength="{MAX_WELCOME_TEXT}"'
        f"{_described(errors, 'welcome_text')}>{escape(form.welcome_text)}</textarea>"
        '<button type="submit">Send invitation</button></form>'
    )
    return _page(f"Invite External Accountant — {tenant.display_name}", body, status=status)


def _result_page(tenant: SandboxTenant, form: InviteForm, answer: HubAnswer, action: str) -> HTMLResponse:
    back = f'<p><a href="{escape(action)}">Invite another accountant</a> · <a href="/">Sandbox home</a></p>'
    if answer.ok:
        reference = f"<p>Invitation id: <code>{escape(answer.invitation_id)}</code></p>" if answer.invitation_id else ""
        body = (
            "<h1>Invitation sent</h1>"
            f'<div class="ok" role="status"><p>Invitation sent to <strong>{escape(form.email)}</strong>.</p>'
            f"<p>{escape(form.accountant_name)} gets an email from Accountant Hub with a link to accept access to"
            f" {escape(', '.join(form.company_names()))} in {escape(form.environment)}.</p></div>{reference}"
            f"<p>The Accountant Hub app has admin consent in {escape(tenant.display_name)}.</p>{back}"
        )
        return _page("Invitation sent", body)
    status_text = f"HTTP {answer.status}" if answer.status is not None else "no answer"
    body = (
        "<h1>The invitation was not sent</h1>"
        f'<div class="summary" role="alert"><p>Accountant Hub answered: <strong>{escape(status_text)}</strong></p>'
        f"<p>{escape(answer.message)}</p></div>"
        f"<p>The Accountant Hub app keeps its admin consent in {escape(tenant.display_name)};"
        f" nothing was sent to {escape(form.email)}.</p>{back}"
    )
    return _page("The invitation was not sent", body, status=502)


def _not_found(tenant: str) -> HTMLResponse:
    body = f"<h1>Tenant not found</h1><p>No tenant '{escape(tenant)}' in the sandbox.</p>"
    return _page("Tenant not found", body, status=404)


def client_admin_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Client admin"])

    @router.get(INVITE_PATH, response_class=HTMLResponse)
    async def invite_form(tenant: str) -> HTMLResponse:
        found = state.catalogue.find(tenant)
        if found is None:
            return _not_found(tenant)
        return _form_page(found, default_form(found), {}, INVITE_PATH.format(tenant=found.domain))

    @router.post(INVITE_PATH, response_class=HTMLResponse)
    async def invite(tenant: str, request: Request) -> HTMLResponse:
        found = state.catalogue.find(tenant)
        if found is None:
            return _not_found(tenant)
        action = INVITE_PATH.format(tenant=found.domain)
        form = InviteForm.parse(await request.body())
        errors = form.errors(found)
        if errors:
            return _form_page(found, form, errors, action, status=422)
        # The administrator's consent to the hub's multi-tenant app (admin consent in Entra).
        state.set_consent(found, True)
        answer = await send_to_hub(
            state, found, form, base_url(request), accept_language=request.headers.get("accept-language")
        )
        log.info("invitation sent to the hub" if answer.ok else "invitation not sent", tenant=found.domain)
        return _result_page(found, form, answer, action)

    return router
