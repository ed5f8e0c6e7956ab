"""Content-Disposition for a workbook named after a company, whatever that name holds.

Company names come from tenants: quotes, slashes, semicolons, line breaks or non-Latin
scripts must neither break the header nor make a browser save outside its folder. The
header carries a plain ASCII ``filename`` for old clients and the full name as RFC 5987
``filename*`` (UTF-8, percent-encoded) for everyone else.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from urllib.parse import quote

MAX_STEM_CHARACTERS = 100
FALLBACK_STEM = "workbook"
# Characters no file system or browser takes in a name, and every control character.
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"/\\|?*]')
# Unicode's bidirectional controls (its Bidi_Control set): invisible, they reorder what
# follows, the date and ".xlsx" included, so a save dialog or a downloads list would show
# a name other than the file's ("Acme\u202e" puts "xslx." first). Removed, not replaced:
# they stand for no character of the name.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NOT_PLAIN_ASCII = re.compile(r"[^A-Za-z0-9 .,_()&+-]")
_SPACES = re.compile(r"\s+")
_LEADING_DOTS = re.compile(r"^[\s.]+")


def _tidy(text: str) -> str:
    """Spaces collapsed and trimmed, and no leading dots (a hidden file, or "..")."""
    return _LEADING_DOTS.sub("", _SPACES.sub(" ", text)).strip()


def file_stem(name: str) -> str:
    """The name as a file name: bidirectional controls go, forbidden characters become
    spaces, length is bounded."""
    visible = _BIDI_CONTROLS.sub("", unicodedata.normalize("NFC", name))
    stem = _tidy(_FORBIDDEN.sub(" ", visible))[:MAX_STEM_CHARACTERS]
    return _tidy(stem) or FALLBACK_STEM


def ascii_stem(stem: str) -> str:
    """The stem in plain ASCII: accents dropped (Mühlbach → Muhlbach), the rest replaced."""
    decomposed = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    return _tidy(_NOT_PLAIN_ASCII.sub("_", decomposed)) or FALLBACK_STEM


def attachment_disposition(name: str, day: date, extension: str = "xlsx") -> str:
    """``attachment`` with the file name "<name> <date>.<extension>"."""
    stem = file_stem(name)
    plain = f"{ascii_stem(stem)} {day.isoformat()}.{extension}"
    full = f"{stem} {day.isoformat()}.{extension}"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(full, safe='')}"
