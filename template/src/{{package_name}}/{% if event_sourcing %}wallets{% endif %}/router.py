"""The wallet API: commands append events, reads fold them (at any point in the past),
the list reads the ``wallet_summaries`` read model."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import AwareDatetime, BeforeValidator, Field
from sqlalchemy import select

from ..core.auth.dependencies import PrincipalDep
from ..core.auth.principal import Principal
from ..core.errors import ForbiddenError, NotFoundError, problem_responses
from ..core.etags import etag_for, if_match_allows
from ..core.tenant import current_tenant
from ..events.domain import DomainEvent
from ..events.repository import Loaded
from . import domain
from .dependencies import WalletId, WalletRepositoryDep, WalletSessionDep
from .domain import WalletState
from .models import WalletSummary
from .schemas import (
    Movement,
    WalletCreate,
    WalletEventRead,
    WalletRead,
    WalletSummaryPage,
    WalletSummaryRead,
)

router = APIRouter(prefix="/api/v1/wallets", tags=["wallets"])

IfMatch = Annotated[
    str | None,
    Header(description="ETag from a previous read; 412 if the wallet changed since"),
]
ETAG_HEADER = {"ETag": {"description": "The wallet's version", "schema": {"type": "string"}}}


def _rfc3339_only(value: object) -> object:
    # pydantic reads a number as a Unix time; here a number is a version, so a time is
    # only what starts with a date.
    if isinstance(value, str) and value[4:5] != "-":
        raise ValueError("a time must be RFC 3339, e.g. 2026-01-31T12:00:00Z")
    return value


Version = Annotated[int, Field(ge=1, le=2**31 - 1)]
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
At = Annotated[
    Version | Instant | None,
    Query(
        description=(
            "Time travel: the wallet as it was after this version (an integer), or at "
            "this instant (RFC 3339 with an offset, e.g. 2026-01-31T12:00:00Z)"
        ),
    ),
]


def _check_access(principal: Principal, state: WalletState) -> None:
    # Example policy: a wallet is its owner's; admins see and act on every one.
    if state.owner != principal.subject and not principal.has_roles("admin"):
        raise ForbiddenError("only the wallet's owner or an admin may use it")


def _read(loaded: Loaded[WalletState]) -> WalletRead:
    return WalletRead(
        id=loaded.aggregate_id,
        owner=loaded.state.owner,
        currency=loaded.state.currency,
        balance=loaded.state.balance,
        closed=loaded.state.closed,
        version=loaded.version,
        created_at=loaded.created_at,
        changed_at=loaded.changed_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"headers": {**ETAG_HEADER, "Location": {"schema": {"type": "string"}}}},
        **problem_responses(401, 409, 422),
    },
)
async def open_wallet(
    principal: PrincipalDep,
    body: WalletCreate,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    request: Request,
    response: Response,
) -> WalletRead:
    wallet_id = str(uuid.uuid4())
    loaded, _ = await wallets.execute(
        session,
        wallet_id,
        lambda _: domain.open_wallet(principal.subject, body.currency),
        actor=principal.subject,
        create=True,
    )
    response.headers["Location"] = request.url_for("get_wallet", wallet_id=wallet_id).path
    response.headers["ETag"] = etag_for(loaded.version)
    return _read(loaded)


@router.get("", responses=problem_responses(401, 422))
async def list_wallets(
    principal: PrincipalDep,
    session: WalletSessionDep,
    after: Annotated[
        str | None, Query(max_length=64, description="next_after of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> WalletSummaryPage:
    """The caller's wallets, from the read model: a change shows here once the
    projection has applied it (``GET /api/v1/events/projections`` shows its lag)."""
    query = (
        select(WalletSummary)
        .where(
            WalletSummary.owner == principal.subject,
            WalletSummary.tenant.is_(None)
            if current_tenant.get() is None
            else WalletSummary.tenant == current_tenant.get(),
        )
        .order_by(WalletSummary.wallet_id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(WalletSummary.wallet_id > after)
    rows = list(await session.scalars(query))
    items = [WalletSummaryRead.model_validate(row) for row in rows[:limit]]
    return WalletSummaryPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


@router.get(
    "/{wallet_id}",
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 404, 422)},
)
async def get_wallet(
    wallet_id: WalletId,
    principal: PrincipalDep,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    response: Response,
    at: At = None,
) -> WalletRead:
    """The wallet now, or as it was at ``at`` (time travel)."""
    at_version = at if isinstance(at, int) else None
    at_time = at if isinstance(at, datetime) else None
    loaded = await wallets.load(session, str(wallet_id), at_version=at_version, at_time=at_time)
    if loaded is None:
        raise NotFoundError(
            f"wallet {wallet_id} does not exist" + ("" if at is None else f" at {at}")
        )
    _check_access(principal, loaded.state)
    response.headers["ETag"] = etag_for(loaded.version)
    return _read(loaded)


@router.get("/{wallet_id}/history", responses=problem_responses(401, 403, 404, 422))
async def wallet_history(
    wallet_id: WalletId,
    principal: PrincipalDep,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    after_version: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WalletEventRead]:
    """The audit trail: every event of the wallet, who caused it and when."""
    loaded = await wallets.load(session, str(wallet_id))
    if loaded is None:
        raise NotFoundError(f"wallet {wallet_id} does not exist")
    _check_access(principal, loaded.state)
    events = await wallets.store.stream(
        session, str(wallet_id), after_version=after_version, limit=limit
    )
    return [
        WalletEventRead(
            version=event.version,
            type=event.event_type,
            data=event.decoded(wallets.kind.events).model_dump(mode="json"),
            actor=event.actor,
            recorded_at=event.recorded_at,
            position=event.position,
        )
        for event in events
    ]


async def _command(
    wallets: WalletRepositoryDep,
    session: WalletSessionDep,
    principal: Principal,
    wallet_id: uuid.UUID,
    if_match: str | None,
    decide: "domain.Decision",
    response: Response,
) -> WalletRead:
    def checked(state: WalletState) -> list[DomainEvent]:
        _check_access(principal, state)
        return decide(state)

    loaded, _ = await wallets.execute(
        session,
        str(wallet_id),
        checked,
        actor=principal.subject,
        precondition=lambda version: if_match_allows(if_match, etag_for(version)),
    )
    response.headers["ETag"] = etag_for(loaded.version)
    return _read(loaded)


COMMAND_RESPONSES = {
    200: {"headers": ETAG_HEADER},
    **problem_responses(401, 403, 404, 409, 412, 422),
}


@router.post("/{wallet_id}/deposits", responses=COMMAND_RESPONSES)
async def deposit(
    wallet_id: WalletId,
    body: Movement,
    principal: PrincipalDep,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    response: Response,
    if_match: IfMatch = None,
) -> WalletRead:
    return await _command(
        wallets,
        session,
        principal,
        wallet_id,
        if_match,
        lambda state: domain.deposit(state, body.amount, body.reference),
        response,
    )


@router.post("/{wallet_id}/withdrawals", responses=COMMAND_RESPONSES)
async def withdraw(
    wallet_id: WalletId,
    body: Movement,
    principal: PrincipalDep,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    response: Response,
    if_match: IfMatch = None,
) -> WalletRead:
    """409 when the balance does not cover the amount."""
    return await _command(
        wallets,
        session,
        principal,
        wallet_id,
        if_match,
        lambda state: domain.withdraw(state, body.amount, body.reference),
        response,
    )


@router.post("/{wallet_id}/close", responses=COMMAND_RESPONSES)
async def close_wallet(
    wallet_id: WalletId,
    principal: PrincipalDep,
    session: WalletSessionDep,
    wallets: WalletRepositoryDep,
    response: Response,
    if_match: IfMatch = None,
) -> WalletRead:
    """409 unless the balance is zero."""
    return await _command(wallets, session, principal, wallet_id, if_match, domain.close, response)
