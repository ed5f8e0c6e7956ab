"""Where Business Central posts change notices (the webhooks the fetcher subscribes).

BC calls ``/webhooks/business-central/{key}`` in two ways:
* with ``?validationToken=…`` when a subscription is created or renewed: the answer is the
  token itself, as text/plain, within BC's 5 seconds;
* with a JSON body ``{"value": [notice, ...]}`` when records changed.

The key is signed by the hub (hub_common.change_notifications), so the firm, client and
company come from it, never from what the body says; every notice must carry the
``clientState`` that belongs to its key and entity. A notice is answered 202 only once
the registry has stored it (and asked for the refresh it leads to); when it cannot be
stored the answer is 503, which BC retries. Any other refusal (404, 401, 400) makes BC
delete the subscription, which is right for a key or secret the hub no longer signs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub_common import commands
from hub_common.change_notifications import NOTIFICATION_PATH, CompanyAddress, NotificationSigner
from hub_common.commands import CommandRejected, RejectionReason
from hub_common.events import Actor
from hub_common.logging import get_logger
from hub_gateway.dependencies import State

logger = get_logger(__name__)

business_central_notifications = APIRouter(tags=["business central notifications"])

# One POST may carry the notices of every subscription of the URL (5 entities of a company),
# each up to 1,000 before BC sends one collection notice instead.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_NOTICES = 10_000
NOTIFICATION_ACTOR = Actor.service("business-central")
# "api/v2.0/companies(<id>)/salesInvoices(<id>)", or a collection's "…/salesInvoices?$filter=…".
_RESOURCE = re.compile(r"^/?api/v2\.0/companies\(([0-9a-fA-F-]{36})\)/([A-Za-z]+)")


class Notice(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    subscription_id: str = Field(alias="subscriptionId", max_length=200)
    client_state: str = Field(alias="clientState", max_length=2048)
    resource: str = Field(max_length=4000)
    # created, updated, deleted or collection; a kind BC adds later still means a change.
    change_type: str = Field(alias="changeType", max_length=50)
    last_modified: datetime | None = Field(default=None, alias="lastModifiedDateTime")


class Notices(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: Annotated[list[Notice], Field(min_length=1, max_length=MAX_NOTICES)]


async def _capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="notice too large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="notice too large")
    return bytes(body)


def _entities_of(address: CompanyAddress, notices: Notices, signer: NotificationSigner) -> list[str]:
    """The changed entities, once each. A notice whose client state is not the one signed
    for this company and entity refuses them all (someone is forging); one about a resource
    the hub cannot read is passed over, so a shape BC adds later never makes BC delete a
    working subscription."""
    entities: list[str] = []
    for notice in notices.value:
        match = _RESOURCE.match(notice.resource)
        if match is None or match.group(1).lower() != str(address.company_id):
            logger.warning("notice about an unexpected resource passed over", resource=notice.resource[:200])
            continue
        entity = match.group(2)
        if not signer.client_state_matches(address, entity, notice.client_state):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="clientState does not match")
        if entity not in entities:
            entities.append(entity)
    if not entities:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="no notice about this company")
    return entities


@business_central_notifications.post(
    NOTIFICATION_PATH + "/{key}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "The handshake: the validation token, as text/plain"},
        400: {"description": "Not a notice of Business Central's shape"},
        401: {"description": "A notice whose clientState does not match"},
        404: {"description": "Not a notification address this hub signed"},
        413: {"description": "Larger than any notice"},
        503: {"description": "Not stored now; Business Central retries"},
    },
)
async def business_central_notification(
    key: Annotated[str, Path(max_length=200)],
    request: Request,
    state: State,
    validation_token: Annotated[str | None, Query(alias="validationToken", max_length=2048)] = None,
) -> Response:
    signer = state.notification_signer
    address = signer.address(key)
    if address is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such notification address")
    if validation_token is not None:
        # The handshake of a create or a renewal: only the token, exactly as sent.
        return PlainTextResponse(
            validation_token, status_code=status.HTTP_200_OK, headers={"X-Content-Type-Options": "nosniff"}
        )
    try:
        notices = Notices.model_validate_json(await _capped_body(request))
    except ValidationError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"not a Business Central notice: {error.error_count()} error(s)"
        ) from error
    entities = _entities_of(address, notices, signer)
    command = commands.RecordBusinessCentralChanges(
        firm_id=address.firm_id,
        actor=NOTIFICATION_ACTOR,
        correlation_id=request.state.correlation_id,
        client_id=address.client_id,
        company_id=address.company_id,
        entities=entities[:50],
        notices=len(notices.value),
        collection=any(notice.change_type == "collection" for notice in notices.value),
    )
    try:
        await commands.send_command(
            state.nats,
            commands.RECORD_BUSINESS_CENTRAL_CHANGES,
            command,
            commands.ChangesRecorded,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        if rejected.rejection.reason is RejectionReason.NOT_FOUND:
            # The client is gone, or its tenant took the firm's access back: BC deletes the
            # subscription when it hears 404.
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such client") from rejected
        logger.warning("notice not stored", reason=rejected.rejection.reason.value)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="not stored; try again") from rejected
    return Response(status_code=status.HTTP_202_ACCEPTED)
