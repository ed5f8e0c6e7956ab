"""The message catalogue is complete: every message the code marks (Python, templates,
scripts) is in every language's .po, translated, with the same placeholders; the template
messages.pot is up to date; each catalogue compiles as the services compile it at start."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from hub_common.i18n import LANGUAGES, TRANSLATIONS_DIR, catalogue, plural_forms, translations
from hub_gateway.reports.company import SHEET_TITLES
from hub_gateway.reports.key_figures import SHEET_TITLE

ROOT = Path(__file__).resolve().parents[2]
# Both placeholder styles a message may hold: %(name)s (every message of the hub) and {name}
# (a URL pattern in a fix, kept as it is).
PLACEHOLDER = re.compile(r"%\((\w+)\)s|\{(\w+)\}")
EXCEL_SHEET_NAME = re.compile(r"^[^\[\]:*?/\\]{1,31}$")


def _msgid(message_id: str | tuple[str, ...] | list[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


@cache
def used_in_code() -> dict[str, str | tuple[str, ...]]:
    """Every message marked in the code, as `make messages-extract` finds it (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    found: dict[str, str | tuple[str, ...]] = {}
    for _, _, message, _, _ in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS, strip_comment_tags=True
    ):
        found[_msgid(message)] = message if isinstance(message, str) else tuple(message)
    return found


def _placeholders(text: str) -> set[str]:
    return {named or braced for named, braced in PLACEHOLDER.findall(text)}


def _entries(language: str) -> Iterator[Message]:
    yield from (message for message in catalogue(language) if message.id)


def test_the_code_marks_messages() -> None:
    assert len(used_in_code()) > 300
    assert "Check Errors" in used_in_code()  # a template
    assert "Refresh this company" in used_in_code()  # a script
    assert "Trial Balance" in used_in_code()  # Python


def test_the_template_is_up_to_date() -> None:
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as file:
        template = {_msgid(message.id) for message in read_po(file) if message.id}
    assert template == set(used_in_code()), "run `make messages` and translate what it adds"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_code_is_translated(language: str) -> None:
    entries = {_msgid(message.id): message for message in _entries(language)}
    missing = sorted(set(used_in_code()) - set(entries))
    assert not missing, f"not in {language}.po (run `make messages`): {missing}"
    untranslated = [
        msgid
        for msgid, message in entries.items()
        if message.fuzzy or not message.string or (isinstance(message.string, tuple | list) and not all(message.string))
    ]
    assert not untranslated, f"untranslated or fuzzy in {language}.po: {untranslated}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_plurals_are_plurals_in_the_code_and_the_catalogue(language: str) -> None:
    for message in _entries(language):
        in_code = used_in_code().get(_msgid(message.id))
        assert isinstance(message.id, tuple) == isinstance(in_code, tuple), message.id


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language: str) -> None:
    for message in _entries(language):
        ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
        strings = list(message.string) if isinstance(message.string, tuple | list) else [message.string]
        expected = set().union(*(_placeholders(text) for text in ids))
        for string in strings:
            # A singular may leave the count out ("once", "The largest:"); nothing else may differ.
            found = _placeholders(str(string))
            assert found <= expected and expected - found <= {"count"}, (language, message.id, string)


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_catalogue_compiles_with_two_plural_forms(language: str) -> None:
    # The pages' scripts pick a plural form with Intl.PluralRules' "one" (common.js): every
    # language of the hub has two forms.
    assert plural_forms(language) == 2
    assert translations(language).gettext("Check Errors")


@pytest.mark.parametrize("language", LANGUAGES)
def test_sheet_names_fit_excel(language: str) -> None:
    for title in (*SHEET_TITLES, SHEET_TITLE):
        name = translations(language).gettext(title)
        assert EXCEL_SHEET_NAME.match(name), (language, name)
