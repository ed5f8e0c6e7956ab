"""What no handler could take, for the firm whose subject it travelled on.

A message is dead-lettered when it is not a valid event or its handling failed
``max_deliver`` times (``hub_common.consumers``). Each dead letter is kept under
``deadletter.<consumer>.<firm_id>``, the firm taken from the original subject, so a firm's
dead letters are read with a subject filter and another firm's are never even fetched.

Who sees what:

* owners and admins of a firm see the dead letters whose subject carried their firm;
  staff do not (a dead letter is raw payload for someone who can act on it);
* a message whose subject named no firm (``hub.not-a-firm.…``) cannot be attributed, so no
  firm sees it here; operators see every dead letter with ``hub dead-letters``.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hub_common.bus import jetstream_of
from hub_common.history import DeadLetter, read_dead_letters
from hub_common.streams import firm_of_subject
from hub_gateway.dependencies import SIGNED_IN_ERRORS, ManagingPrincipal, State, error_responses

dead_letters = APIRouter(prefix="/api/v1", tags=["dead letters"], responses=error_responses(*SIGNED_IN_ERRORS, 503))


class DeadLettersResponse(BaseModel):
    dead_letters: list[DeadLetter]


def _belongs_to(record: dict[str, Any], firm_id: uuid.UUID) -> bool:
    # The subject filter already fenced the read; this keeps a wrongly filed record out too.
    return firm_of_subject(str(record.get("subject", ""))) == firm_id


@dead_letters.get("/dead-letters")
async def list_dead_letters(
    principal: ManagingPrincipal,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, the newest.")] = 100,
) -> DeadLettersResponse:
    """The firm's dead letters, oldest first (owners and admins)."""
    newest: deque[DeadLetter] = deque(maxlen=limit)
    async for record in read_dead_letters(jetstream_of(state.broker), firm_id=principal.firm_id):
        if _belongs_to(record, principal.firm_id):
            newest.append(DeadLetter.model_validate(record))
    return DeadLettersResponse(dead_letters=list(newest))
