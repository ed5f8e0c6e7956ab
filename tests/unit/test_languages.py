"""Which language a person gets: the saved preference, else the browser's, else English."""

from __future__ import annotations

import pytest

from hub_common.i18n import accepted_languages, choose_language, language_of, messages_for_scripts, translator


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7", ["nl-NL", "nl", "en-US", "en"]),
        ("en;q=0.2, fr;q=0.9, de", ["de", "fr", "en"]),
        ("fr;q=0, de;q=abc, *", []),
        ("", []),
        (None, []),
    ],
)
def test_accept_language_is_read_best_first(header: str | None, expected: list[str]) -> None:
    assert accepted_languages(header) == expected


@pytest.mark.parametrize(
    ("preference", "header", "expected"),
    [
        (None, "nl-NL,nl;q=0.9,en;q=0.8", "nl"),
        (None, "de-CH", "de"),
        (None, "fr-BE,en;q=0.5", "fr"),
        (None, "es-ES,it;q=0.8", "en"),  # a language the hub does not speak: English
        (None, "es-ES,de;q=0.5", "de"),  # the first the hub speaks
        (None, None, "en"),
        ("fr-FR", "de-DE", "fr"),  # the saved preference first
        ("nl-BE", None, "nl"),
        ("da-DK", "de-AT", "de"),  # formats of a language the hub does not speak: the browser's language
        ("en-GB", "nl", "en"),
    ],
)
def test_the_language_is_the_preference_else_the_browser_else_english(
    preference: str | None, header: str | None, expected: str
) -> None:
    assert choose_language(preference, header) == expected


def test_a_language_carried_in_an_event_or_a_row() -> None:
    assert language_of("nl") == "nl"
    assert language_of("de-AT") == "de"
    assert language_of("pt-BR") == "en"
    assert language_of(None) == "en"


def test_messages_and_plurals_per_language() -> None:
    assert translator("nl").gettext("Overdue sales invoices") == "Vervallen debiteuren"
    assert translator("de").gettext("Rows %(first)s–%(last)s of %(total)s", first=1, last=2, total=3) == (
        "Zeilen 1–2 von 3"
    )
    assert translator("fr").ngettext("%(count)s company", "%(count)s companies", 1) == "1 société"
    assert translator("fr").ngettext("%(count)s company", "%(count)s companies", 0) == "0 société"  # French: 0 is one
    assert translator("nl").ngettext("%(count)s company", "%(count)s companies", 0) == "0 bedrijven"
    # A text that is not a message (a name, a value from elsewhere) stays as it is.
    assert translator("de").gettext("Mühlbach Gruppe") == "Mühlbach Gruppe"


def test_the_scripts_get_translated_messages_and_plural_forms() -> None:
    messages = messages_for_scripts("de")
    assert messages["Refresh this company"] == "Dieses Unternehmen aktualisieren"
    assert messages["needs attention"] == ["braucht Aufmerksamkeit", "brauchen Aufmerksamkeit"]
