"""Accent- and case-insensitive search ("Muhl" finds Mühlbach) that SQLite and PostgreSQL
answer alike.

Both databases fold a column with the same table of letters: PostgreSQL with translate()
(no extension to install; lower() only for ASCII, since its reach depends on the database's
locale), SQLite with a function each connection registers (``register_sqlite_folding``).
The search text is folded the same way in Python, so the two sides always agree.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# Latin letters with diacritics (both cases) and the plain lower-case letter each folds to.
_ACCENTED = (
    "àáâãäåāăąçćĉċčďđèéêëēĕėęěĝğġģĥħìíîïĩīĭįıĵķĺļľŀłñńņňòóôõöøōŏőŕŗřśŝşšţťŧùúûüũūŭůűųŵýÿŷźżž"
    "ÀÁÂÃÄÅĀĂĄÇĆĈĊČĎĐÈÉÊËĒĔĖĘĚĜĞĠĢĤĦÌÍÎÏĨĪĬĮİĴĶĹĻĽĿŁÑŃŅŇÒÓÔÕÖØŌŎŐŔŖŘŚŜŞŠŢŤŦÙÚÛÜŨŪŬŮŰŲŴÝŸŶŹŻŽ"
)
# Letters with no decomposition into a base letter and a mark.
_UNDECOMPOSED = {"ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ħ": "h", "Ħ": "h", "ı": "i", "ø": "o", "Ø": "o"}
_UNDECOMPOSED |= {"ŧ": "t", "Ŧ": "t", "ŀ": "l", "Ŀ": "l"}


def _base_letter(letter: str) -> str:
    return _UNDECOMPOSED.get(letter) or unicodedata.normalize("NFKD", letter)[0].lower()


_PLAIN = "".join(_base_letter(letter) for letter in _ACCENTED)
_TABLE = str.maketrans(_ACCENTED, _PLAIN)
SQLITE_FUNCTION = "hub_fold"


def fold(text: str) -> str:
    """The text as search compares it: without accents, in lower case."""
    return text.translate(_TABLE).lower()


def _fold_or_null(text: str | None) -> str | None:
    return None if text is None else fold(text)


def register_sqlite_folding(dbapi_connection: Any) -> None:
    dbapi_connection.create_function(SQLITE_FUNCTION, 1, _fold_or_null, deterministic=True)


class folded(FunctionElement[str]):
    """A column's text folded as ``fold`` folds the search text."""

    type = String()
    inherit_cache = True


@compiles(folded, "postgresql")
def _folded_postgresql(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"lower(translate({column}, '{_ACCENTED}', '{_PLAIN}'))"


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"
