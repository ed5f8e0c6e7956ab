"""Client URL parsing: every form BC has used, and a precise reason for anything else."""

from __future__ import annotations

import pytest

from hub_common.emails import EmailRejected, normalize_work_email
from hub_registry.domain.client_url import ClientUrlError, parse_client_url, partner_web_client_host

SANDBOX = "https://127.0.0.1:8443/bc"


@pytest.mark.parametrize(
    ("url", "tenant", "environment", "company", "form"),
    [
        (
            "https://businesscentral.dynamics.com/contoso.onmicrosoft.com/Production?company=CRONUS%20UK%20Ltd.",
            "contoso.onmicrosoft.com",
            "Production",
            "CRONUS UK Ltd.",
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21",
            "1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/Contoso.OnMicrosoft.com/Sandbox-2/?page=22",
            "contoso.onmicrosoft.com",
            "Sandbox-2",
            None,
            "web_client",
        ),
        ("businesscentral.dynamics.com/contoso.com/Test", "contoso.com", "Test", None, "web_client"),
        # Other spellings of a GUID, and a domain with letters beyond ASCII, as Entra reads them.
        (
            "https://businesscentral.dynamics.com/{1B5A3C11-2B6E-4D6E-9F55-3B1C7B0A9E21}/Production",
            "1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/1b5a3c112b6e4d6e9f553b1c7b0a9e21",
            "1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/müller.de/Production",
            "xn--mller-kva.de",
            "Production",
            None,
            "web_client",
        ),
        # As a browser's address bar copies them: percent-encoded.
        (
            "https://businesscentral.dynamics.com/m%C3%BCller.de/Production",
            "xn--mller-kva.de",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/%7B1B5A3C11-2B6E-4D6E-9F55-3B1C7B0A9E21%7D/Production",
            "1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21",
            "Production",
            None,
            "web_client",
        ),
        # UTS 46 as browsers read names, not IDNA 2003: straße.de is not strasse.de.
        (
            "https://businesscentral.dynamics.com/straße.de/Production",
            "xn--strae-oqa.de",
            "Production",
            None,
            "web_client",
        ),
        # Copied from a chat or a PDF: a zero-width space or a byte-order mark before it, a
        # zero-width space after it, a soft hyphen inside it, brackets around it.
        (
            "\ufeff\u200bhttps://businesscentral.dynamics.com/contoso.com/Produc\u00adtion\u200b",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        (
            "(https://businesscentral.dynamics.com/contoso.com/Production?company=CRONUS%20(UK))",
            "contoso.com",
            "Production",
            "CRONUS (UK)",
            "web_client",
        ),
        (
            "\u00ab https://businesscentral.dynamics.com/contoso.com/Production \u00bb",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        # Copied from a plain-text mail, a quote or the end of a sentence.
        (
            "<https://businesscentral.dynamics.com/contoso.com/Production>",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        (
            '"https://businesscentral.dynamics.com/contoso.com/Production"',
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/contoso.com/Production.",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        ("https://businesscentral.dynamics.com/contoso.com.", "contoso.com", "Production", None, "web_client"),
        # A company name may end in a period: kept whole.
        (
            "https://businesscentral.dynamics.com/contoso.com/Production?company=Contoso%20Ltd.",
            "contoso.com",
            "Production",
            "Contoso Ltd.",
            "web_client",
        ),
        # The web client's own tenant parameter, and BC's sign-in page returning to the client.
        (
            "https://businesscentral.dynamics.com/?tenant=contoso.onmicrosoft.com",
            "contoso.onmicrosoft.com",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/Sandbox?tenant=contoso.onmicrosoft.com&company=X",
            "contoso.onmicrosoft.com",
            "Sandbox",
            "X",
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/SignIn?ReturnUrl=%2Fcontoso.com%2FSandbox%3Fcompany%3DCRONUS",
            "contoso.com",
            "Sandbox",
            "CRONUS",
            "web_client",
        ),
        # The sign-in page under the tenant, returning to an environment with or without it.
        (
            "https://businesscentral.dynamics.com/contoso.com/SignIn?ReturnUrl=%2Fcontoso.com%2FSandbox",
            "contoso.com",
            "Sandbox",
            None,
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com/contoso.com/SignIn?ReturnUrl=%2FSandbox",
            "contoso.com",
            "Sandbox",
            None,
            "web_client",
        ),
        # Copied from a sentence: wrapped, with the sentence's period after the wrapper.
        (
            "(https://businesscentral.dynamics.com/contoso.com/Production).",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        (
            "<https://businesscentral.dynamics.com/contoso.com/Production?company=CRONUS>.",
            "contoso.com",
            "Production",
            "CRONUS",
            "web_client",
        ),
        (
            "https://businesscentral.dynamics.com./contoso.com/Production",
            "contoso.com",
            "Production",
            None,
            "web_client",
        ),
        (
            "https://contosofamily.bc.dynamics.com/contoso.com/Production",
            "contoso.com",
            "Production",
            None,
            "partner_hosted",
        ),
        (
            f"{SANDBOX}/Production?tenant=cronus-sample.onmicrosoft.com",
            "cronus-sample.onmicrosoft.com",
            "Production",
            None,
            "sandbox",
        ),
        (
            f"{SANDBOX}/cronus-sample.onmicrosoft.com/Production",
            "cronus-sample.onmicrosoft.com",
            "Production",
            None,
            "sandbox",
        ),
    ],
)
def test_every_form_parses(url: str, tenant: str, environment: str, company: str | None, form: str) -> None:
    parsed = parse_client_url(url, extra_web_client_bases=(SANDBOX,))
    assert (parsed.tenant, parsed.environment, parsed.company_name, parsed.form) == (
        tenant,
        environment,
        company,
        form,
    )


@pytest.mark.parametrize(
    ("url", "part", "words"),
    [
        ("", "url", "Enter"),
        ("   ", "url", "Enter"),
        ("http://businesscentral.dynamics.com/contoso.com/Production", "scheme", "https://"),
        ("javascript:alert(1)", "scheme", "https://"),
        ("mailto:someone@contoso.com", "scheme", "https://"),
        ("https://businesscentral.dynamics.com/", "tenant", "names no tenant"),
        (
            "https://businesscentral.dynamics.com/Production",
            "tenant",
            "environment 'Production' but no tenant",
        ),
        ("https://businesscentral.dynamics.com/not_a_tenant!/Production", "tenant", "is not a tenant"),
        (
            "https://businesscentral.dynamics.com/contoso.com/Prod%20uction",
            "environment",
            "not a Business Central environment",
        ),
        ("https://businesscentral.dynamics.com/contoso.com/Production/extra", "path", "more path parts"),
        ("https://evil.example.com/contoso.com/Production", "host", "not a Business Central address"),
        ("https://user:pw@businesscentral.dynamics.com/contoso.com", "host", "user name"),
        ("https://businesscentral.dynamics.com:8443/contoso.com", "host", "no port"),
        ("https://businesscentral.dynamics.com/contoso.com/Production?company=a%00b", "company", "not valid"),
        ("https://mybusiness.financials.dynamics.com", "host", "retired"),
        # BC's API, pasted by mistake: the web client's URL of the same place is named.
        (
            "https://api.businesscentral.dynamics.com/v2.0/contoso.com/Sandbox/api/v2.0/companies",
            "host",
            "API address. The Client URL is the web client's: for this tenant and environment, "
            "https://businesscentral.dynamics.com/contoso.com/Sandbox",
        ),
        ("https://api.businesscentral.dynamics.com/v2.0/", "host", "API address"),
        ("https://businesscentral.dynamics.com/contoso.com/admin", "environment", "admin center"),
        (
            "https://businesscentral.dynamics.com.mcas.ms/contoso.com/Production",
            "host",
            "remove .mcas.ms from the host, so the URL starts with https://businesscentral.dynamics.com/",
        ),
        ("https://mybusiness.financials.dynamics.com/extra", "host", "retired"),
        (
            "https://businesscentral.dynamics.com/contoso.com/Production?tenant=fabrikam.com",
            "tenant",
            "two tenants",
        ),
        ("https://businesscentral.dynamics.com/contoso.com/SignIn?ReturnUrl=%2F", "path", "sign-in page"),
        # BC's own pages without a tenant are named as such, not as an environment.
        ("https://businesscentral.dynamics.com/SignIn", "path", "sign-in page"),
        ("https://businesscentral.dynamics.com/SignIn?ReturnUrl=https%3A%2F%2Fevil.example", "path", "sign-in page"),
        ("https://businesscentral.dynamics.com/admin", "environment", "admin center"),
        ("https://businesscentral.dynamics.com/{not-a-guid}/Production", "tenant", "is not a tenant"),
        ("https://127.0.0.1:9999/bc/contoso.com/Production", "host", "not a Business Central address"),
        ("https://businesscentral.dynamics.com/contoso.com/" + "x" * 2100, "url", "longer than"),
        ("https://businesscentral.dynamics.com/con toso.com", "url", "spaces"),
        # A line break, percent-encoded, after a name that is otherwise good.
        (
            "https://businesscentral.dynamics.com/contoso.com/Production%0A",
            "environment",
            "not a Business Central environment",
        ),
        ("https://businesscentral.dynamics.com/contoso.com%0A/Production", "tenant", "is not a tenant"),
    ],
)
def test_bad_urls_say_which_part_is_wrong(url: str, part: str, words: str) -> None:
    with pytest.raises(ClientUrlError) as raised:
        parse_client_url(url, extra_web_client_bases=(SANDBOX,))
    assert raised.value.part == part
    assert words in raised.value.message


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://ContosoFamily.bc.dynamics.com/contoso.com/Production?company=X", "contosofamily.bc.dynamics.com"),
        ("<https://contosofamily.bc.dynamics.com/contoso.com/Production>", "contosofamily.bc.dynamics.com"),
        ("contosofamily.bc.dynamics.com/contoso.com/Production", "contosofamily.bc.dynamics.com"),
        ("https://businesscentral.dynamics.com/contoso.com/Production", None),
        (f"{SANDBOX}/contoso.com/Production", None),
        ("https://evil.example/x.bc.dynamics.com/contoso.com", None),
        ("https://x.bc.dynamics.com.evil.example/contoso.com/Production", None),
    ],
)
def test_a_partner_hosted_apps_web_client_is_where_its_links_go(url: str, host: str | None) -> None:
    """An Embed app's users open their BC at its own host, so links into BC go there."""
    assert partner_web_client_host(url) == host
    if host is not None:
        assert parse_client_url(url).partner_host == host
    elif "evil" not in url:
        assert parse_client_url(url, extra_web_client_bases=(SANDBOX,)).partner_host is None


def test_a_partner_host_with_a_final_dot_is_the_same_host_when_saved_and_when_read_again() -> None:
    url = "https://contosofamily.bc.dynamics.com./contoso.com/Production"
    assert parse_client_url(url).partner_host == "contosofamily.bc.dynamics.com"
    assert partner_web_client_host(url) == "contosofamily.bc.dynamics.com"


def test_sandbox_form_is_refused_unless_configured() -> None:
    with pytest.raises(ClientUrlError):
        parse_client_url(f"{SANDBOX}/cronus-sample.onmicrosoft.com/Production")


@pytest.mark.parametrize(
    "address",
    [
        "someone@gmail.com",
        "someone@outlook.com",
        "someone@hotmail.com",
        "someone@live.com",
        "someone@yahoo.co.uk",
        "someone@yahoo.de",
        "someone@icloud.com",
        "someone@btinternet.com",
        "someone@t-online.de",
        "someone@orange.fr",
        "someone@comcast.net",
        "someone@mail.gmail.com",
        "someone@uk.yahoo.com",
        "someone@gmx.fr",
        "someone@sympatico.ca",
        "someone@proximus.be",
        "someone@kpnplanet.nl",
        "someone@vodafonemail.de",
        "someone@spectrum.net",
        "someone@proton.ch",
        "someone@aol.co.uk",
        "someone@zohomail.eu",
        "abc123xyz@privaterelay.appleid.com",
        "abc.123@mozmail.com",
        "someone@tuta.com",
        "someone@daum.net",
        "someone@ezweb.ne.jp",
        "someone@za.com",
    ],
)
def test_consumer_mailboxes_are_refused_with_a_clear_message(address: str) -> None:
    with pytest.raises(EmailRejected, match="work or school email address"):
        normalize_work_email(address)


@pytest.mark.parametrize(
    "address",
    # A firm's own domain may end like a provider's without being under it.
    [
        "Alice@Contoso.com",
        "bob@fabrikam-accounting.co.uk",
        "c.d@uni-hamburg.de",
        "e@notgmail.com",
        "f@gmail.com.example",
        "g@kontora.xn--p1ai",
        # Names sold under a domain the provider list holds: a firm's own mail.
        "h@fabrikam.za.com",
    ],
)
def test_work_and_school_addresses_are_accepted(address: str) -> None:
    assert normalize_work_email(address) == address.lower()


@pytest.mark.parametrize(
    "address",
    ["", "plain", "a@b", "a b@c.com", "@contoso.com", "a@contoso..com", "a@contoso.com\nb@contoso.com", "a@b.xn--"],
)
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(EmailRejected, match="not a valid email address"):
        normalize_work_email(address)
