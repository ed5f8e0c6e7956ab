"""The hub in the accountant's language: the saved preference, else the browser's
Accept-Language, else English, for pages, the scripts' messages and API error details; a
browser at nl-NL gets the dashboard in Dutch, live-updated rows included, and the
preference switches it to French (and German)."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, expect_rows_ok, row_of
from tests.e2e.conftest import SCREENSHOTS, Hub


def test_accept_language_de_gives_german_pages_and_error_details(hub: Hub) -> None:
    api = hub.client("lena@contoso-steuer.example")
    german = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}

    page = api.get("/", headers=german)
    assert page.status_code == 200
    assert page.headers["content-language"] == "de"
    assert '<html lang="de">' in page.text
    assert "Fehler prüfen" in page.text and "Mandantenübersicht" in page.text and "Suchen" in page.text
    assert "Check Errors" not in page.text

    # A user-facing detail in German; the machine-readable parts stay as they are.
    missing = api.get(f"/api/v1/clients/{uuid.uuid4()}/companies/{uuid.uuid4()}", headers=german)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Dieses Unternehmen gibt es nicht"}
    bad = api.get("/api/v1/dashboard", params={"threshold": "cash:below:ten"}, headers=german)
    assert bad.status_code == 422
    assert bad.json()["detail"] == {
        "message": "'cash:below:ten' ist nicht Spalte:Vergleich:Zahl, z. B. cash:lt:10000",
        "field": "threshold",
    }
    # An invalid body: the hub's own reason in German, pydantic's location as it is.
    locale = api.put("/api/v1/preferences", json={"locale": "<script>"}, headers=german)
    assert locale.status_code == 422
    (problem,) = locale.json()["detail"]
    assert problem["loc"] == ["body", "locale"]
    assert problem["msg"] == "Ungültiger Wert, muss ein Sprachcode wie de-DE oder en-GB sein"
    # A command another service refused: its message in German, its values filled in.
    member = api.post(
        "/api/v1/accountants/invitations",
        json={"email": "lena@contoso-steuer.example", "role": "staff"},
        headers=german,
    )
    assert member.status_code == 409
    assert member.json()["detail"] == {
        "message": "lena@contoso-steuer.example ist bereits Mitglied dieser Kanzlei",
        "field": "email",
    }
    url = api.post("/api/v1/connection-tests", json={"client_url": "ftp://contoso.example"}, headers=german)
    assert url.status_code == 422
    assert url.json()["detail"] == {"message": "Die Mandanten-URL muss mit https:// beginnen", "field": "client_url"}
    # Without a preference or a header: English, as before.
    assert api.get(f"/api/v1/clients/{uuid.uuid4()}/companies/{uuid.uuid4()}").json() == {"detail": "No such company"}

    # The saved preference comes before the browser's language.
    saved = api.put("/api/v1/preferences", json={"locale": "fr-FR"})
    assert saved.status_code == 200, saved.text
    assert api.get(f"/api/v1/clients/{uuid.uuid4()}/companies/{uuid.uuid4()}", headers=german).json() == {
        "detail": "Cette société n'existe pas"
    }
    french = api.get("/errors", headers=german)
    assert '<html lang="fr">' in french.text and "Vérifier les erreurs" in french.text


def test_every_page_renders_in_every_language(hub: Hub) -> None:
    api = hub.client("noor@de-boekhouders.example")
    pages = ["/", "/clients", "/clients/new", "/errors", "/dev/mail", "/sign-in", "/client-access"]
    for language, word in (("nl", "Klanten beheren"), ("de", "Mandanten verwalten"), ("fr", "Gérer les clients")):
        for path in pages:
            answer = api.get(path, headers={"Accept-Language": language})
            assert answer.status_code == 200, (language, path, answer.text[:300])
            assert f'<html lang="{language}">' in answer.text, (language, path)
        assert word in api.get("/", headers={"Accept-Language": language}).text


def test_the_scripts_messages_are_cached_by_their_content(hub: Hub) -> None:
    page = hub.client("sanne@de-boekhouders.example").get("/", headers={"Accept-Language": "nl"}).text
    url = re.search(r'<meta name="hub-messages" content="([^"]+)">', page)
    assert url is not None and url.group(1).startswith("/i18n/nl.json?v=")
    with httpx.Client(base_url=hub.url) as browser:
        first = browser.get(url.group(1))
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
        messages = first.json()
        assert messages["language"] == "nl"
        assert messages["messages"]["Refresh this company"] == "Dit bedrijf vernieuwen"
        assert messages["messages"]["needs attention"] == ["vraagt aandacht", "vragen aandacht"]
        again = browser.get(url.group(1), headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        # An old version's URL is not kept without asking again.
        assert browser.get("/i18n/nl.json?v=0").headers["cache-control"] == "public, no-cache"
        assert browser.get("/i18n/es.json").status_code == 404


FITS = """() => { const wrap = document.getElementById("table-wrap");
  return wrap.scrollWidth <= wrap.clientWidth + 1 && document.documentElement.scrollWidth <= window.innerWidth; }"""
WIDTHS = """() => [...document.querySelectorAll("#grid-head th")].map(
  (cell) => [cell.textContent, Math.round(cell.getBoundingClientRect().width)])"""


def _sign_in_in_dutch(page: Page, hub: Hub, email: str) -> None:
    page.goto(f"{hub.url}/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    page.get_by_role("link", name="Aanmelden met Microsoft").click()
    # The sandbox's stand-in for Microsoft's sign-in page speaks English.
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("table", name="Bedrijven van klanten")).to_be_visible()


def test_a_browser_in_dutch_then_french_by_the_preference(
    chromium: Browser, hub: Hub, sandbox: Sandbox, faults: httpx.Client
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="nl-NL", ignore_https_errors=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        email = "pieter@de-boekhouders.example"
        _sign_in_in_dutch(page, hub, email)
        # The empty dashboard says what to do, in Dutch.
        expect(page.get_by_role("link", name="Klant toevoegen")).to_have_attribute("href", "/clients/new")

        connected = connect_consented_tenant(sandbox, hub.client(email))
        tenant, names = connected.tenant, connected.company_names
        expect_rows_ok(page, names)

        # Headings, menus, the summary's tiles and the rows' words are Dutch.
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        head = page.locator("#grid-head")
        for heading in ("Klantnaam", "Bedrijfsnaam", "Status", "Per", "Liquide middelen", "Te betalen btw"):
            expect(head).to_contain_text(heading)
        expect(page.locator("#summary-ok")).to_contain_text(str(len(names)))
        expect(page.locator("#summary-waiting")).to_contain_text("wacht op nieuwe poging")
        expect(page.get_by_role("button", name="Klantenoverzicht ▾")).to_be_visible()
        expect(page.get_by_role("link", name="Klanten beheren")).to_be_visible()
        expect(page.locator("#live")).to_have_text("Live")
        for dot in page.locator("#grid-body .health").all():
            expect(dot).to_have_attribute("title", re.compile(r"^Gezondheid \d+ van 100"))

        # A live-updated row: the refresh fails, and the row says so in Dutch by itself.
        faults.put(f"/tenants/{tenant['id']}/faults", json={"kind": "invalid_credentials"}).raise_for_status()
        first = row_of(page, names[0])
        first.get_by_role("button", name=re.compile("^Acties voor")).click()
        page.get_by_role("menuitem", name="Dit bedrijf vernieuwen").click()
        expect(first.locator(".state")).to_have_text("Mislukt", timeout=60_000)
        expect(first).to_contain_text("Business Central heeft de aanmeldgegevens van de hub geweigerd.")
        expect(first.locator(".health")).to_have_attribute("title", re.compile(r"De laatste vernieuwing is mislukt\."))
        expect(page.locator("#summary-attention")).to_contain_text("vraagt aandacht")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "dashboard-in-dutch.png")
        # The longer words still fit 1280 pixels: no sideways scroll with the default columns.
        assert page.evaluate(FITS), page.evaluate(WIDTHS)

        # The company's details pane speaks Dutch too.
        first.get_by_role("button", name=f"Gegevens van {names[0]}").click()
        expect(page.get_by_role("heading", name="Liquiditeitsrekeningen")).to_be_visible()
        page.get_by_role("button", name="Bedrijfsgegevens sluiten").click()

        # The language chooser is the saved locale: French, and the page reloads in French.
        page.get_by_role("button", name="Klantenoverzicht ▾").click()
        page.get_by_role("menuitem", name="Kolommen kiezen…").click()
        page.get_by_label("Taal, bedragen en datums").select_option("fr-FR")
        with page.expect_navigation():
            page.get_by_role("button", name="Opslaan", exact=True).click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.get_by_role("table", name="Sociétés des clients")).to_be_visible()
        expect(page.locator("#grid-head")).to_contain_text("Nom du client")
        expect(page.locator("#grid-head")).to_contain_text("Trésorerie")
        expect(page.get_by_role("button", name="Synthèse clients ▾")).to_be_visible()
        expect(row_of(page, names[0]).locator(".state")).to_have_text("Échec")
        expect(page.locator("#summary-attention")).to_contain_text("requiert votre attention")
        page.screenshot(path=SCREENSHOTS / "dashboard-in-french.png")
        assert page.evaluate(FITS), page.evaluate(WIDTHS)

        # German too: its long words fit as well.
        page.get_by_role("button", name="Synthèse clients ▾").click()
        page.get_by_role("menuitem", name="Choisir les colonnes…").click()
        page.get_by_label("Langue, montants et dates").select_option("de-DE")
        with page.expect_navigation():
            page.get_by_role("button", name="Enregistrer", exact=True).click()
        expect(page.locator("html")).to_have_attribute("lang", "de")
        expect(page.locator("#grid-head")).to_contain_text("Mandant")
        expect(row_of(page, names[0]).locator(".state")).to_have_text("Fehlgeschlagen")
        page.screenshot(path=SCREENSHOTS / "dashboard-in-german.png")
        assert page.evaluate(FITS), page.evaluate(WIDTHS)
        page.get_by_role("button", name="Mandantenübersicht ▾").click()
        page.get_by_role("menuitem", name="Spalten auswählen…").click()
        page.get_by_label("Sprache, Beträge und Datumsangaben").select_option("fr-FR")
        with page.expect_navigation():
            page.get_by_role("button", name="Speichern", exact=True).click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")

        # The other pages and their scripts follow: the client card and Check Errors.
        page.get_by_role("link", name="Gérer les clients").click()
        page.get_by_role("link", name=tenant["display_name"], exact=True).click()
        expect(page.get_by_role("button", name="Tester l'URL du client")).to_be_visible()
        expect(page.get_by_label("Comptable attitré")).to_contain_text("Personne")
        page.get_by_role("button", name="Outils ▾").click()
        page.get_by_role("menuitem", name="Vérifier les erreurs").click()
        errors = page.locator("#errors")
        expect(errors.locator("thead")).to_contain_text("Cause et solution")
        expect(errors).to_contain_text("Business Central a refusé les identifiants du hub.")
        expect(page.get_by_label("Type")).to_contain_text("identifiants refusés")
    finally:
        context.close()
    assert not problems, problems
