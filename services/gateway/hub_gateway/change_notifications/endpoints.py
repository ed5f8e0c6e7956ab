"""Where Business Central posts change notices (the webhooks the fetcher subscribes).

BC calls ``/webhooks/business-central/{key}`` in two ways:
* with ``?validationToken=…`` when a subscription is created or renewed: the answer is the
  token itself, as text/plain, within BC's 5 seconds (on POST or GET: Microsoft does not
  say which method BC uses);
* with a JSON body ``{"value": [notice, ...]}`` when records changed.

The key is signed by the hub (hub_common.change_notifications), so the firm, client and
company come from it, never from what the body says, and a notice's entity is the one its
``clientState`` was signed for (the ``resource`` is BC's to spell). A POST with at least
one notice carrying such a client state is answered 202 once the registry has stored it
(and asked for the refresh it leads to), whatever else the notices hold; when it cannot
be stored in time the answer is 503, which BC retries. Any other refusal (404, 401, 400)
makes BC delete the subscription, which is right for a key or secret the hub no longer
signs, and only for those.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub_common import commands
from hub_common.change_notifications import NOTIFICATION_PATH, NOTIFIED_ENTITIES, CompanyAddress, NotificationSigner
from hub_common.commands import CommandRejected, RejectionReason
from hub_common.events import Actor
from hub_common.logging import get_logger
from hub_gateway.dependencies import State

logger = get_logger(__name__)

business_central_notifications = APIRouter(tags=["business central notifications"])

# One POST may carry the notices of every subscription of the URL (5 entities of a company),
# each up to 1,000 before BC sends one collection notice instead. The gateway's BodySizeLimit
# holds this path's bodies to it.
MAX_NOTICES_BODY_BYTES = 4 * 1024 * 1024
MAX_NOTICES = 10_000
NOTIFICATION_ACTOR = Actor.service("business-central")
# How long BC's POST waits for the registry to store its notice; beyond it the answer is
# 503, which BC retries, rather than an answer BC may no longer be waiting for.
NOTICE_STORE_WAIT_SECONDS = 4.0


class Notice(BaseModel):
    """The fields of a notice the hub reads; the others (subscriptionId, resource,
    lastModifiedDateTime, …) may be absent or of any shape."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    client_state: str = Field(alias="clientState", max_length=2048)
    # created, updated, deleted or collection; a kind BC adds later, or none, still means a
    # change (only "collection" is told apart, so any shape is taken).
    change_type: object = Field(default=None, alias="changeType")


class Notices(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Each item is read on its own, so one odd notice does not refuse the others.
    value: Annotated[list[object], Field(min_length=1, max_length=MAX_NOTICES)]


def _signed_notices(address: CompanyAddress, notices: Notices, signer: NotificationSigner) -> list[tuple[str, Notice]]:
    """Each notice whose client state the hub signed for this company, with the entity it
    was signed for. The others are passed over: a working subscription must not be
    deleted for a notice the hub cannot read, and a forged one changes nothing."""
    # Signed once per request: a POST may hold 10,000 notices.
    expected = [(entity, signer.client_state(address, entity).encode()) for entity in NOTIFIED_ENTITIES]
    signed: list[tuple[str, Notice]] = []
    for item in notices.value:
        try:
            notice = Notice.model_validate(item)
        except ValidationError:
            continue
        given = notice.client_state.encode()
        entity = next((entity for entity, state in expected if hmac.compare_digest(state, given)), None)
        if entity is not None:
            signed.append((entity, notice))
    if len(signed) < len(notices.value):
        logger.warning(
            "notices without a client state of this address passed over", count=len(notices.value) - len(signed)
        )
    if not signed:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="no notice with this address's clientState")
    return signed


def _handshake(validation_token: str) -> Response:
    """The handshake of a create or a renewal: only the token, exactly as sent."""
    return PlainTextResponse(
        validation_token, status_code=status.HTTP_200_OK, headers={"X-Content-Type-Options": "nosniff"}
    )


def _address(key: str, signer: NotificationSigner) -> CompanyAddress:
    address = signer.address(key)
    if address is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such notification address")
    return address


@business_central_notifications.get(
    NOTIFICATION_PATH + "/{key}",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "The handshake: the validation token, as text/plain"},
        404: {"description": "Not a notification address this hub signed"},
    },
)
async def business_central_handshake(
    key: Annotated[str, Path(max_length=200)],
    state: State,
    validation_token: Annotated[str, Query(alias="validationToken", max_length=2048)],
) -> Response:
    _address(key, state.notification_signer)
    return _handshake(validation_token)


@business_central_notifications.post(
    NOTIFICATION_PATH + "/{key}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "The handshake: the validation token, as text/plain"},
        400: {"description": "Not a notice of Business Central's shape"},
        401: {"description": "No notice with the clientState of this address"},
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
    address = _address(key, signer)
    if validation_token is not None:
        return _handshake(validation_token)
    try:
        notices = Notices.model_validate_json(await request.body())
    except ValidationError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"not a Business Central notice: {error.error_count()} error(s)"
        ) from error
    signed = _signed_notices(address, notices, signer)
    entities = list(dict.fromkeys(entity for entity, _ in signed))
    command = commands.RecordBusinessCentralChanges(
        firm_id=address.firm_id,
        actor=NOTIFICATION_ACTOR,
        correlation_id=request.state.correlation_id,
        client_id=address.client_id,
        company_id=address.company_id,
        entities=entities,
        notices=len(signed),
        collection=any(notice.change_type == "collection" for _, notice in signed),
    )
    wait = min(NOTICE_STORE_WAIT_SECONDS, state.settings.command_timeout_seconds)
    try:
        # The request's own timeout, and one over all of it (a broker that is reconnecting
        # holds the publish before the wait for the reply starts).
        async with asyncio.timeout(wait):
            await commands.send_command(
                state.nats, commands.RECORD_BUSINESS_CENTRAL_CHANGES, command, commands.ChangesRecorded, timeout=wait
            )
    except TimeoutError as late:
        logger.warning("notice not stored in time", seconds=wait)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="not stored; try again") from late
    except CommandRejected as rejected:
        if rejected.rejection.reason is RejectionReason.NOT_FOUND:
            # The client is gone, or its tenant took the firm's access back: BC deletes the
            # subscription when it hears 404.
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such client") from rejected
        logger.warning("notice not stored", reason=rejected.rejection.reason.value)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="not stored; try again") from rejected
    return Response(status_code=status.HTTP_202_ACCEPTED)
