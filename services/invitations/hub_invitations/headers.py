"""Text from names (a client's, an accountant's, a firm's, an alert rule's) in mail headers.

Python's email package decodes an RFC 2047 encoded word ("=?utf-8?q?...?=") found in a
header's text when it writes the header, line breaks and commas included: a name holding
one could add a Reply-To header or recipients to a mail sent from the hub's own address.
"""

from __future__ import annotations

# U+2060 WORD JOINER: the name reads the same, but "=?" no longer opens an encoded word.
_ENCODED_WORD_START = "=?"
_BROKEN_START = "=\u2060?"


def header_text(text: str) -> str:
    """One line, with no encoded word the mail library would decode."""
    return " ".join(text.split()).replace(_ENCODED_WORD_START, _BROKEN_START)
