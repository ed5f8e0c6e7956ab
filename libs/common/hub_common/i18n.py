"""The product's languages: one gettext catalogue for every service, the pages, the scripts,
the emails and the workbooks, and the rule that picks a person's language.

The catalogue lives in ``hub_common/translations/<language>/LC_MESSAGES/messages.po``
(template ``messages.pot``, made by ``make messages-extract``). The ``.po`` files are read at
start with Babel's ``read_po`` and compiled in memory, so no ``.mo`` file is built, committed
or shipped: the editable install, the wheels of the images and the tests all read the very
files translators edit, and a catalogue of a few hundred messages compiles in milliseconds.

Placeholders are ``%(name)s`` everywhere (Python, Jinja2's ``{% trans %}`` and the scripts'
``_()``), so one check (tests/unit/test_message_catalogue.py) guards every translation.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from babel import negotiate_locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

TRANSLATIONS_DIR: Final = Path(__file__).parent / "translations"
DOMAIN: Final = "messages"
# English first: the language of the msgids, and the last resort of every negotiation.
LANGUAGES: Final = ("en", "nl", "de", "fr")
DEFAULT_LANGUAGE: Final = "en"
# How many Accept-Language entries are looked at: a header is the client's to make as long as it likes.
_MAX_ACCEPTED = 20


def language_of(tag: str | None) -> str:
    """The hub's language for a language tag carried in a command, an event or a row
    ("nl-BE" → "nl"); English for a tag of a language the hub does not speak."""
    return negotiate([tag] if tag else []) or DEFAULT_LANGUAGE


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined (the gettext convention
    ``N_``); it is translated where it is shown."""
    return message


class InvalidValue(ValueError):
    """A validator's refusal as a whole sentence for the person who typed the value: a
    catalogue message (marked with N_) and the values of its %(name)s placeholders.

    ``str()`` is the English text, values filled in (what logs and a refused command carry).
    The gateway's 422 says the message alone, in the reader's language: a plain ``ValueError``
    (``"must not be blank"``) is a phrase that pydantic's "Value error, …" completes, this is
    a sentence of its own.
    """

    def __init__(self, message: str, /, **values: object) -> None:
        self.message = message
        self.values = {name: str(value) for name, value in values.items()}
        super().__init__(message % self.values if self.values else message)


def po_path(language: str) -> Path:
    return TRANSLATIONS_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def catalogue(language: str) -> Catalog:
    """The parsed ``.po`` of one of LANGUAGES (cached for the process's life)."""
    if language not in LANGUAGES:
        raise ValueError(f"{language!r} is not one of {', '.join(LANGUAGES)}")
    with po_path(language).open("rb") as file:
        return read_po(file, locale=language, domain=DOMAIN)


@cache
def translations(language: str) -> Translations:
    """gettext translations of one language, compiled in memory from its ``.po``.

    Fuzzy entries are left out (``write_mo`` skips them), so a translation a translator has
    not confirmed shows the English text rather than a guess.
    """
    compiled = io.BytesIO()
    write_mo(compiled, catalogue(language))
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


@dataclass(frozen=True)
class Translator:
    """Messages in one language: ``t.gettext("…")``, ``t.ngettext("…", "…", n)``.

    Code says ``t.gettext(...)`` (or ``_ = t.gettext``) with the English text as a literal, so
    ``pybabel extract`` finds every message where it is used.
    """

    language: str

    def gettext(self, message: str, /, **values: object) -> str:
        """``message`` in this language, with ``%(name)s`` placeholders filled from ``values``."""
        text = translations(self.language).gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, count: int, /, **values: object) -> str:
        """The form for ``count``; ``%(count)s`` is ``count`` unless ``values`` gives it (formatted)."""
        text = translations(self.language).ngettext(singular, plural, count)
        return text % {"count": count, **values}


@cache
def translator(language: str) -> Translator:
    translations(language)  # an unknown language fails here, at once
    return Translator(language)


def messages_for_scripts(language: str) -> dict[str, str | list[str]]:
    """Every translated message of ``language``, for the pages' scripts: msgid → text, or a
    plural's msgid → its forms. Untranslated and fuzzy entries are left out (the script then
    shows the msgid, the English text)."""
    messages: dict[str, str | list[str]] = {}
    for message in catalogue(language):
        msgid = message.id
        if not msgid or message.fuzzy:
            continue
        if isinstance(msgid, tuple | list):
            forms = [str(form) for form in message.string or ()]
            if forms and all(forms):
                messages[str(msgid[0])] = forms
        elif message.string:
            messages[msgid] = str(message.string)
    return messages


def accepted_languages(header: str | None) -> list[str]:
    """The tags of an Accept-Language header, most wanted first (RFC 9110 §12.5.4).

    Entries with ``q=0`` are refused by the client and left out; a malformed weight counts as 0.
    """
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:_MAX_ACCEPTED]):
        tag, _, parameters = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            weighted.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(preferred: Iterable[str]) -> str | None:
    """The first of LANGUAGES that ``preferred`` (language tags, best first) asks for.

    "nl-BE" asks for Dutch, "de-CH" for German; a tag of a language the hub does not speak
    matches nothing.
    """
    tags = [tag.replace("_", "-") for tag in preferred if tag]
    return negotiate_locale(tags, LANGUAGES, sep="-")


def choose_language(preference: str | None, accept_language: str | None) -> str:
    """The rule for a person's language: their saved preference first (the dashboard's
    "Language and formats" setting), else their browser's Accept-Language, else English.

    A preference for formats of a language the hub does not speak (say "da-DK") keeps its
    number and date formats and takes the language from the browser.
    """
    return (
        negotiate([preference] if preference else [])
        or negotiate(accepted_languages(accept_language))
        or DEFAULT_LANGUAGE
    )


def plural_forms(language: str) -> int:
    """How many plural forms ``language``'s catalogue has (its Plural-Forms header)."""
    return catalogue(language).num_plurals
