"""Prices before charging: a quote for one connector (any role, public included: the
driver's app shows it before the session starts), and attaching it to the session that
started with it (roles billing, operator, admin). The quoted price is frozen: the
session is priced with it whatever happens to demand or the tariff afterwards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, status

from api.deps import CurrentPrincipal, DbConn, SessionReader
from api.params import EXAMPLE_QUOTE_ID, EXAMPLE_STATION, text_id
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.prices import (
    DemandPublic,
    PriceLinePublic,
    QuoteAttachCreate,
    QuotePublic,
)
from billing.dynamic import DemandPolicy, DemandSnapshot, make_quote, price_lines
from store import id_tokens as token_store
from store import quotes as quote_store
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from store.load import site_demand
from store.sites import station_location
from store.stations import station_exists

router = APIRouter(prefix="/v1/prices", tags=["prices"], responses=AUTHENTICATED)

Station = Annotated[str, text_id(Query, "Charge point id", EXAMPLE_STATION)]
Connector = Annotated[int, Query(ge=1, le=1000, description="Connector (EVSE) id", examples=[1])]
IdTag = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:*-]+$",
        description="The driver's token: members of a customer group may pay less",
    ),
]


def _share(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 4)))


def _quote_public(
    quote: quote_store.QuoteRecord, time_zone: str, demand: DemandPublic | None
) -> QuotePublic:
    """The quote as the driver sees it: the prices in force when it was made, in the
    location's local time."""
    tariff = quote.tariff
    local = quote.created_at.astimezone(ZoneInfo(time_zone)).replace(tzinfo=None)
    return QuotePublic(
        quote_id=quote.quote_id,
        station=quote.charge_point_id,
        connector=quote.connector_id,
        created_at=quote.created_at,
        valid_until=quote.valid_until,
        currency=tariff.currency,
        tariff_id=tariff.id,
        prices=[
            PriceLinePublic(
                type=line["type"],
                unit=line["unit"],
                price_excl_vat=line["price_excl_vat"],
                price_incl_vat=line["price_incl_vat"],
                vat=line["vat"],
                conditions=line["conditions"],
            )
            for line in price_lines(tariff, local)
        ],
        alt_text=[t.model_dump() for t in tariff.tariff_alt_text],
        demand=demand,
        tariff=quote.body,
    )


@router.get(
    "/quote",
    response_model=QuotePublic,
    summary="The price of charging at a connector now, frozen for a few minutes",
    description="The tariff that applies to the connector (and the driver's customer "
    "group), its energy price adjusted for the site's demand within the operator's bounds; "
    "every component in force now, per kWh first (AFIR Art. 5). Start the session before "
    "`valid_until` and attach the quote to it: the session is priced as quoted. 404: no "
    "such station, or no tariff applies.",
    responses=NOT_FOUND,
)
async def get_quote(
    _principal: CurrentPrincipal,
    conn: DbConn,
    request: Request,
    station: Station,
    connector: Connector,
    id_tag: IdTag = None,
) -> QuotePublic:
    config = request.app.state.config
    if not await station_exists(conn, station):
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"station {station} not found")
    now = datetime.now(UTC)  # a quote is for a driver standing there now
    group = None if id_tag is None else await token_store.customer_group_of(conn, id_tag)
    applied = await assignment_store.tariff_for(conn, station, connector, group, now)
    if applied is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"no tariff applies at {station}")
    site_id, time_zone = await station_location(conn, station)
    utilisation, occupancy = (None, None) if site_id is None else await site_demand(conn, site_id)
    demand = DemandSnapshot(_share(utilisation), _share(occupancy))
    policy = (
        DemandPolicy(
            threshold=Decimal(str(config.demand_threshold)),
            max_uplift=Decimal(str(config.demand_max_uplift)),
        )
        if config.demand_max_uplift > 0
        else None
    )
    quote_id = uuid.uuid4()
    made = make_quote(
        applied.tariff,
        now=now,
        validity=timedelta(seconds=config.quote_valid_s),
        quote_tariff_id=f"Q-{quote_id.hex[:32]}",
        demand=demand,
        policy=policy,
    )
    quoted: dict[str, Any] | None = (
        None if made.tariff is applied.tariff else made.tariff.model_dump(exclude_none=True)
    )
    stored = await quote_store.create_quote(
        conn,
        charge_point_id=station,
        connector_id=connector,
        id_tag=id_tag,
        valid_for=timedelta(seconds=config.quote_valid_s),
        at=now,
        applied=applied,
        quoted=quoted,
    )
    assert stored is not None  # the tariff was resolved above
    return _quote_public(
        stored,
        time_zone,
        DemandPublic(
            utilisation=demand.utilisation, occupancy=demand.occupancy, factor=made.factor
        ),
    )


@router.post(
    "/quotes/{quote_id}/attach",
    response_model=QuotePublic,
    summary="The session started with this quote: price it as quoted (once)",
    description="409: the quote expired, is used already, or the session has a quote.",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def attach_quote(
    quote_id: Annotated[
        uuid.UUID, Path(description="The quote's id", examples=[str(EXAMPLE_QUOTE_ID)])
    ],
    body: QuoteAttachCreate,
    _principal: SessionReader,
    conn: DbConn,
) -> QuotePublic:
    if await quote_store.get_quote(conn, quote_id) is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"quote {quote_id} not found")
    try:
        quote = await quote_store.attach_quote_to_session(conn, quote_id, body.session_id)
    except tariff_store.QuoteError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    _site, time_zone = await station_location(conn, quote.charge_point_id)
    return _quote_public(quote, time_zone, None)
