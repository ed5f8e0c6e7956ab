"""Client cards: adding, changing and removing them, and testing a Client URL.

A card's Client URL is parsed, never fetched (invariant 5); only Entra is asked which
tenant it names.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import delete, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.commands import (
    AddClient,
    CardToSaveAgain,
    MissingTimeZonesSet,
    RejectionReason,
    RemoveClient,
    SetMissingTimeZones,
    TestConnection,
    UpdateClient,
    refused,
)
from hub_common.db import lock_until_commit
from hub_common.entra import DirectoryUnavailable, LookupsSpent, TenantDirectory, TenantNotFound
from hub_common.events import (
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    ClientUpdated,
    ConnectionTested,
    ConnectionTestRequested,
    Failure,
    FailureKind,
)
from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_registry.domain.client_url import ParsedClientUrl, cleaned_client_url
from hub_registry.domain.refresh_schedule import InvalidSchedule, place_time_zone
from hub_registry.models import Accountant, Client, ConnectionTestAsked, Firm
from hub_registry.service import alerts
from hub_registry.service.refreshes import emit_refresh
from hub_registry.service.shared import (
    SERVICE_ACTOR,
    Context,
    account_numbers,
    account_numbers_column,
    client_connection,
    emit,
    live_client,
    lookups_spent,
    parse_url,
    parsed_connection,
    resolve_tenant,
)
from hub_registry.service.tenant_grants import has_grant
from hub_registry.settings import RegistrySettings

logger = get_logger(__name__)


async def _check_assignee(session: AsyncSession, firm_id: uuid.UUID, card: ClientCard) -> None:
    if card.assigned_accountant_id is None:
        return
    # Share-locked (PostgreSQL) so a colleague being removed meanwhile is waited for and
    # seen removed, instead of getting a card assigned after their removal.
    assignee = await session.get(
        Accountant, card.assigned_accountant_id, with_for_update={"read": True, "key_share": True}
    )
    if assignee is None or assignee.firm_id != firm_id or assignee.removed_at is not None:
        raise refused(
            RejectionReason.INVALID,
            "The assigned accountant is not a member of this firm",
            field="assigned_accountant_id",
        )


def _check_time_zone(time_zone: str | None) -> None:
    """A card's time zone is a place's (or UTC) that this host's tzdata knows, like a
    refresh schedule's: a link such as US/Eastern may mean another zone on another host."""
    if time_zone is None:
        return
    try:
        place_time_zone(time_zone)
    except InvalidSchedule as error:
        raise refused(RejectionReason.INVALID, error.message, "time_zone", **error.values) from error


def _as_saved(card: ClientCard) -> ClientCard:
    """The card as it is kept and told: its Client URL without what copying it added
    around it or unseen inside it (the card's link then opens as the client gave it)."""
    return card.model_copy(update={"client_url": cleaned_client_url(card.client_url)})


def _card_of(client: Client, *, time_zone: str | None) -> ClientCard:
    """The card as stored with ``time_zone``, for an event that changes it on the
    accountant's behalf (a ValidationError for a card saved under older rules)."""
    return ClientCard.model_validate(
        {
            "name": client.name,
            "client_url": client.client_url,
            "contact_name": client.contact_name,
            "email": client.email,
            "phone": client.phone,
            "notes": client.notes,
            "assigned_accountant_id": client.assigned_accountant_id,
            "tax_account_numbers": account_numbers(client.tax_account_numbers),
            "cash_account_numbers": account_numbers(client.cash_account_numbers),
            "time_zone": time_zone,
        }
    )


async def _check_unique(
    session: AsyncSession,
    firm_id: uuid.UUID,
    parsed: ParsedClientUrl,
    tenant_id: uuid.UUID,
    except_id: uuid.UUID | None,
) -> None:
    """One live card per tenant and environment in a firm, however the URL names the tenant
    (BC's environment names ignore case too)."""
    # Two saves of one firm at once must not both find no clash: the unique indexes cannot
    # tell that environments differing only in case, or a tenant named by domain and by id,
    # are one, so the firm's card saves take turns here.
    await lock_until_commit(session, f"client-cards:{firm_id}")
    same_tenant = or_(col(Client.tenant_id) == tenant_id, func.lower(Client.tenant) == parsed.tenant.lower())
    query = select(Client.id, Client.name).where(
        Client.firm_id == firm_id,
        same_tenant,
        func.lower(Client.environment) == parsed.environment.lower(),
        col(Client.removed_at).is_(None),
    )
    for clash in (await session.execute(query)).all():
        if clash.id != except_id:
            raise refused(
                RejectionReason.CONFLICT,
                N_("The client %(client)s already uses this tenant (%(tenant)s) and environment %(environment)s"),
                field="client_url",
                client=repr(clash.name),
                tenant=str(tenant_id),
                environment=parsed.environment,
            )


async def insert_client(
    *,
    session: AsyncSession,
    context: Context,
    card: ClientCard,
    source: ClientSource,
    settings: RegistrySettings,
    directory: TenantDirectory,
    client_id: uuid.UUID | None = None,
    known_tenant_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, ClientConnection]:
    """Add a client from its card; ``known_tenant_id`` is the tenant's directory id when a
    verified token already said it (an invitation), so Entra is not asked."""
    parsed = parse_url(card.client_url, settings)
    card = _as_saved(card)
    # What the card alone can refuse first: asking Entra is the slow part.
    _check_time_zone(card.time_zone)
    await _check_assignee(session, context.firm_id, card)
    tenant_id = known_tenant_id or await resolve_tenant(directory, parsed.tenant, asking_firm=context.firm_id)
    await _check_unique(session, context.firm_id, parsed, tenant_id, except_id=None)
    client = Client(
        id=client_id or uuid.uuid4(),
        firm_id=context.firm_id,
        name=card.name,
        client_url=card.client_url,
        tenant=parsed.tenant,
        tenant_id=tenant_id,
        environment=parsed.environment,
        company_name=parsed.company_name,
        contact_name=card.contact_name,
        email=card.email,
        phone=card.phone,
        notes=card.notes,
        assigned_accountant_id=card.assigned_accountant_id,
        tax_account_numbers=account_numbers_column(card.tax_account_numbers),
        cash_account_numbers=account_numbers_column(card.cash_account_numbers),
        time_zone=card.time_zone,
        source=source.value,
    )
    session.add(client)
    await session.flush()
    connection = parsed_connection(parsed, tenant_id)
    await emit(
        session,
        context,
        ClientAdded(
            client_id=client.id, card=card, connection=connection, source=source, card_revision=client.card_revision
        ),
    )
    return client.id, connection


async def add_client(
    *, session: AsyncSession, command: AddClient, settings: RegistrySettings, directory: TenantDirectory
) -> tuple[uuid.UUID, bool]:
    """A card added by hand; its figures wait for the client's permission unless the
    tenant already granted this firm access. Returns the client id and whether it did."""
    client_id, connection = await insert_client(
        session=session,
        context=Context.of(command),
        card=command.card,
        source=ClientSource.MANUAL,
        settings=settings,
        directory=directory,
    )
    return client_id, await has_grant(session, command.firm_id, connection.tenant_id)


async def update_client(
    *, session: AsyncSession, command: UpdateClient, settings: RegistrySettings, directory: TenantDirectory
) -> int:
    """Saves the card; returns its new revision."""
    parsed = parse_url(command.card.client_url, settings)
    _check_time_zone(command.card.time_zone)
    await _check_assignee(session, command.firm_id, command.card)
    tenant_id = await _tenant_of_card(session, command, parsed, directory)
    # Locked (PostgreSQL): two saves at once must not both count the same accounts revision.
    # Taken after Entra was asked, so the lock is not held while Entra answers.
    client = await live_client(session, command.firm_id, command.client_id, for_update=True)
    expected = command.expected_card_revision
    if expected is not None and expected != client.card_revision:
        # Saved by someone else since this save's card was read: taken as it is, their
        # change would be undone without anyone seeing it.
        raise refused(
            RejectionReason.PRECONDITION_FAILED,
            N_(
                "Someone saved this client card since you opened it: reload the card to see their change, "
                "then make yours again"
            ),
        )
    # A card saved before tenants were resolved has no tenant id: its tenant is the name it
    # gave, as the gateway's read model compares it (a first save there is no move).
    same_tenant = (
        tenant_id == client.tenant_id
        if client.tenant_id is not None
        else parsed.tenant.lower() == client.tenant.lower()
    )
    moved = not same_tenant or parsed.environment.lower() != client.environment.lower()
    if moved:
        # Only a card that moves to another tenant or environment can clash; cards that
        # clashed before the rule (environments differing only in case) stay editable.
        await _check_unique(session, command.firm_id, parsed, tenant_id, except_id=client.id)
    card = _as_saved(command.card)
    client.name = card.name
    client.client_url = card.client_url
    client.tenant = parsed.tenant
    client.tenant_id = tenant_id
    client.environment = parsed.environment
    client.company_name = parsed.company_name
    client.contact_name = card.contact_name
    client.email = card.email
    client.phone = card.phone
    client.notes = card.notes
    client.assigned_accountant_id = card.assigned_accountant_id
    client.time_zone = card.time_zone
    chosen = (account_numbers_column(card.tax_account_numbers), account_numbers_column(card.cash_account_numbers))
    renumbered = chosen != (client.tax_account_numbers, client.cash_account_numbers)
    client.tax_account_numbers, client.cash_account_numbers = chosen
    if renumbered or moved:
        # What a refresh asked for before says is stale from now on (events.RefreshRequested).
        client.accounts_revision += 1
    if moved:
        client.moved_revision = client.accounts_revision
    client.updated_at = datetime.now(UTC)
    context = Context.of(command)
    client.card_revision += 1
    updated = ClientUpdated(
        client_id=client.id,
        card=card,
        connection=parsed_connection(parsed, tenant_id),
        moved_revision=client.moved_revision,
        card_revision=client.card_revision,
    )
    await emit(session, context, updated)
    if moved:
        # The card names another tenant or environment (a wrong URL corrected, a move to
        # Production): the old one's companies are not this client's, and nothing would
        # read the new one until the schedule came round.
        await alerts.forget_companies(session, context, client, listed=None, at=client.updated_at)
        await emit_refresh(session, context, client, company_id=None)
    return client.card_revision


def card_updated(client: Client, card: ClientCard) -> ClientUpdated:
    """The event of a card saved as it stands, its connection as resolved (a revision of
    the card: a save made on the one before is refused)."""
    client.card_revision += 1
    return ClientUpdated(
        client_id=client.id,
        card=card,
        connection=client_connection(client),
        # Every update says where the card last moved: a replica that applies this one
        # before the move would otherwise never learn of it.
        moved_revision=client.moved_revision,
        card_revision=client.card_revision,
    )


async def _tenant_of_card(
    session: AsyncSession, command: UpdateClient, parsed: ParsedClientUrl, directory: TenantDirectory
) -> uuid.UUID:
    """The tenant id the saved card names. Entra is asked only when the card names its
    tenant otherwise than before: saving notes, an assignee or a time zone takes none of the
    firm's lookups, and does not fail while Entra is away."""
    known = (
        await session.execute(
            select(col(Client.tenant), col(Client.tenant_id)).where(
                col(Client.id) == command.client_id, col(Client.firm_id) == command.firm_id
            )
        )
    ).one_or_none()
    if known is not None:
        tenant, tenant_id = known
        if isinstance(tenant_id, uuid.UUID) and str(tenant).lower() == parsed.tenant.lower():
            return tenant_id
    return await resolve_tenant(directory, parsed.tenant, asking_firm=command.firm_id)


# Cards given a zone by one command: each is a write and an event, and the answer must come
# within the gateway's command timeout; a firm with more asks again (the page does).
TIME_ZONES_PER_ANSWER = 500


async def set_missing_time_zones(
    *, session: AsyncSession, command: SetMissingTimeZones, per_answer: int = TIME_ZONES_PER_ANSWER
) -> MissingTimeZonesSet:
    _check_time_zone(command.time_zone)
    # Locked (PostgreSQL) like a card save, so one saved meanwhile with a zone keeps it; a
    # lock that still lets other tables' rows point at the card (an alert episode inserted
    # meanwhile must not deadlock with it).
    without_zone = (
        await session.execute(
            select(Client)
            .where(
                Client.firm_id == command.firm_id,
                col(Client.removed_at).is_(None),
                col(Client.time_zone).is_(None),
            )
            .order_by(col(Client.id))
            .with_for_update(key_share=True)
        )
    ).scalars()
    context = Context.of(command)
    answer = MissingTimeZonesSet(clients=0)
    for client in without_zone:
        try:
            card = _card_of(client, time_zone=command.time_zone)
        except ValidationError:
            answer.to_save_again.append(CardToSaveAgain(client_id=client.id, name=client.name))
            continue
        if answer.clients == per_answer:
            answer.remaining += 1
            continue
        client.time_zone = command.time_zone
        client.updated_at = datetime.now(UTC)
        await emit(session, context, card_updated(client, card))
        answer.clients += 1
    return answer


async def unassign_accountant(session: AsyncSession, context: Context, accountant: Accountant) -> int:
    """A colleague removed from the firm: the live cards assigned to them are assigned to
    nobody, each a ClientUpdated by whoever removed them. Returns how many."""
    assigned = (
        await session.execute(
            select(Client)
            .where(
                Client.firm_id == accountant.firm_id,
                col(Client.assigned_accountant_id) == accountant.id,
                col(Client.removed_at).is_(None),
            )
            .order_by(col(Client.id))
            .with_for_update(key_share=True)
        )
    ).scalars()
    unassigned = 0
    for client in assigned:
        try:
            card = _card_of(client, time_zone=client.time_zone).model_copy(update={"assigned_accountant_id": None})
        except ValidationError:
            # A card saved under older rules cannot travel as it is, so it stays as every
            # reader knows it; saving it again asks for another assignee.
            logger.warning("card of a removed accountant left assigned", client_id=str(client.id))
            continue
        client.assigned_accountant_id = None
        client.updated_at = datetime.now(UTC)
        unassigned += 1
        await emit(session, context, card_updated(client, card))
    return unassigned


async def remove_client(*, session: AsyncSession, command: RemoveClient) -> None:
    client = await live_client(session, command.firm_id, command.client_id)
    client.removed_at = datetime.now(UTC)
    if client.source == ClientSource.SAMPLE.value:
        firm = await session.get(Firm, command.firm_id)
        if firm is not None:
            firm.sample_client_removed = True
    await alerts.forget_client(session, Context.of(command), client.id, now=client.removed_at)
    await emit(session, Context.of(command), ClientRemoved(client_id=client.id))


async def test_connection(
    *, session: AsyncSession, command: TestConnection, settings: RegistrySettings, directory: TenantDirectory
) -> uuid.UUID:
    """Ask a fetcher to reach the client's BC; the URL is parsed here, never fetched."""
    if command.client_id is not None:
        await live_client(session, command.firm_id, command.client_id)
    parsed = parse_url(command.client_url, settings)
    test_id = uuid.uuid4()
    not_found: TenantNotFound | None = None
    tenant_id: uuid.UUID | None = None
    try:
        tenant_id = await directory.resolve(parsed.tenant, firm_id=command.firm_id)
    except LookupsSpent as spent:
        raise lookups_spent(spent) from spent
    except TenantNotFound as error:
        not_found = error
    except DirectoryUnavailable as error:
        raise refused(
            RejectionReason.UNAVAILABLE, N_("%(reason)s; try again in a moment"), "client_url", reason=str(error)
        ) from error
    # Counted once Entra has answered, so the firm's tests wait for each other only here.
    await _count_connection_test(session, command.firm_id, test_id, settings)
    if not_found is not None or tenant_id is None:
        # Entra answered the test already: record the outcome like any failed test, so it
        # shows in Check Errors with Entra's words, and no fetcher needs to ask again.
        await emit(
            session,
            Context.of(command),
            ConnectionTested(
                test_id=test_id,
                client_id=command.client_id,
                ok=False,
                connection=parsed_connection(parsed, None),
                failure=Failure(
                    kind=FailureKind.TENANT_NOT_FOUND,
                    summary=N_("Microsoft Entra ID does not know the client's tenant."),
                    fix=N_("Check the tenant id or domain in the Client URL with the client's administrator."),
                    http_status=400,
                    bc_error_code="AADSTS90002",
                    message=str(not_found),
                    occurred_at=datetime.now(UTC),
                ),
            ),
        )
        return test_id
    await emit(
        session,
        Context.of(command),
        ConnectionTestRequested(
            test_id=test_id, client_id=command.client_id, connection=parsed_connection(parsed, tenant_id)
        ),
    )
    return test_id


CONNECTION_TEST_WINDOW = timedelta(hours=1)


async def _count_connection_test(
    session: AsyncSession, firm_id: uuid.UUID, test_id: uuid.UUID, settings: RegistrySettings
) -> None:
    """Count the test against the firm's allowance for the hour, or refuse it: a script
    testing in a loop would share out the client tenant's BC limits and fill the event log."""
    # Across the registry's replicas: each count sees the tests counted before it.
    await lock_until_commit(session, f"connection-tests:{firm_id}")
    now = datetime.now(UTC)
    asked = col(ConnectionTestAsked.firm_id) == firm_id
    await session.execute(
        delete(ConnectionTestAsked).where(asked, col(ConnectionTestAsked.requested_at) <= now - CONNECTION_TEST_WINDOW)
    )
    count, oldest = (
        await session.execute(select(func.count(), func.min(ConnectionTestAsked.requested_at)).where(asked))
    ).one()
    allowance = settings.connection_tests_per_firm_per_hour
    if count >= allowance and isinstance(oldest, datetime):
        wait = oldest.replace(tzinfo=oldest.tzinfo or UTC) + CONNECTION_TEST_WINDOW - now
        raise refused(
            RejectionReason.RATE_LIMITED,
            N_(
                "Your firm tested %(count)s Client URLs in the last hour, the most the hub tests for one firm;"
                " try again in %(minutes)s minutes."
            ),
            "client_url",
            count=allowance,
            minutes=max(1, math.ceil(wait.total_seconds() / 60)),
        )
    session.add(ConnectionTestAsked(test_id=test_id, firm_id=firm_id, requested_at=now))


async def resolve_missing_tenant_ids(*, session: AsyncSession, directory: TenantDirectory) -> int:
    """Cards saved before tenants were resolved learn their tenant id (a ClientUpdated each).

    Until then they read nothing (no grant can name them), and their Connect link cannot be
    made. A tenant Entra does not know, or an Entra that does not answer, is left for the
    next start; returns how many cards were resolved.
    """
    waiting = (
        await session.execute(select(Client).where(col(Client.removed_at).is_(None), col(Client.tenant_id).is_(None)))
    ).scalars()
    resolved = 0
    for client in waiting:
        try:
            tenant_id = await directory.resolve(client.tenant)
        except (TenantNotFound, DirectoryUnavailable) as error:
            logger.warning("tenant not resolved", client_id=str(client.id), reason=str(error)[:200])
            continue
        try:
            card = _card_of(client, time_zone=client.time_zone)
        except ValidationError:
            # Saved under older rules: its own save (which resolves the tenant) mends it; the
            # other cards still learn theirs.
            logger.warning("tenant not resolved: the card needs saving again", client_id=str(client.id))
            continue
        client.tenant_id = tenant_id
        context = Context(client.firm_id, SERVICE_ACTOR, f"resolve-tenant-{client.id}")
        await emit(session, context, card_updated(client, card))
        resolved += 1
    return resolved
