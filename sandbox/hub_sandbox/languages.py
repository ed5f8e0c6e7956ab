"""The language BC writes its error messages in.

BC answers in the language the request asks for (``Accept-Language``), else in the
language of the user it runs as: for the hub's app in a Danish tenant, Danish. Codes stay
English. A client that reads BC's message text (as the hub does for a missing permission)
must ask for English; the sandbox answers in the tenant's language when it does not, so a
hub that forgets fails in tests as it would against a real non-English tenant.

Only the messages a client may want to recognise are translated; others stay English.
"""

from __future__ import annotations

ENGLISH = "en"

# English message start → the same start in the tenant's language (BC's own wording).
_TRANSLATIONS: dict[str, dict[str, str]] = {
    "da": {
        "Sorry, the current permissions prevented the action.": (
            "Beklager, men de aktuelle tilladelser forhindrede handlingen."
        ),
        "No HTTP resource was found that matches the request URI": (
            "Der blev ikke fundet en HTTP-ressource, der svarer til anmodnings-URI'en"
        ),
        "Could not find a property named": "Der blev ikke fundet en egenskab med navnet",
    },
    "de": {
        "Sorry, the current permissions prevented the action.": (
            "Die Aktion wurde leider durch die aktuellen Berechtigungen verhindert."
        ),
        "No HTTP resource was found that matches the request URI": (
            "Es wurde keine HTTP-Ressource gefunden, die dem Anforderungs-URI entspricht"
        ),
        "Could not find a property named": "Es wurde keine Eigenschaft gefunden mit dem Namen",
    },
}


def answer_language(accept_language: str | None, user_language: str) -> str:
    """The language of the answer: the first language the request names, else the user's
    (a two-letter code; region and quality are not BC's concern for messages)."""
    asked = (accept_language or "").split(",")[0].split(";")[0].strip()
    return (asked or user_language).split("-")[0].lower() or ENGLISH


def localise(message: str, language: str) -> str:
    """The message as BC writes it in ``language``."""
    for english, translated in _TRANSLATIONS.get(language, {}).items():
        if message.startswith(english):
            return translated + message[len(english) :]
    return message
