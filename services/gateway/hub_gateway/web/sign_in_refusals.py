"""What a page says when Microsoft's sign-in comes back refused (``?error=…`` on a callback).

Whoever sends a person to a callback URL writes its query, so its ``error_description`` is
never shown: a page of the hub saying an attacker's sentence would lend it the hub's name.
The page says a fixed sentence with Entra's error code (``AADSTS…``) when the description
holds one, which is what an administrator looks up; the description itself goes to the log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fastapi import Request

from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_gateway.languages import said

logger = get_logger(__name__)

ENTRA_ERROR_CODE = re.compile(r"AADSTS\d{1,10}")
# Enough of Entra's description to diagnose; a query string is the sender's to make long.
LOGGED_DESCRIPTION_CHARACTERS = 1000


def sign_in_refusal(request: Request, answer: Mapping[str, str]) -> str:
    """The page's sentence for a callback whose ``answer`` says ``error``."""
    description = answer.get("error_description", "")
    logger.warning(
        "Microsoft sign-in refused",
        path=request.url.path,
        error=answer.get("error", "")[:100],
        description=description[:LOGGED_DESCRIPTION_CHARACTERS],
    )
    code = ENTRA_ERROR_CODE.search(description)
    if code is None:
        return said(request, N_("Microsoft refused the sign-in; try again, or ask your organisation's administrator."))
    return said(
        request,
        N_("Microsoft refused the sign-in (%(code)s); try again, or ask your organisation's administrator."),
        code=code.group(),
    )
