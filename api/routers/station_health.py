"""The health of one station's connectors (the faults flow's latest risk and the
features behind it) and its unresolved alerts. Roles maintenance, operator, admin."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AlertHandler, DbConn
from api.params import ChargePointPath
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.schemas.alerts import ConnectorHealthPublic, StationHealthPublic, TopContribution
from bus.alerts import Severity
from store import alerts as alert_store
from store import stations

router = APIRouter(prefix="/v1/stations", tags=["alerts"], responses=AUTHENTICATED)

TOP_CONTRIBUTIONS = 5


@router.get(
    "/{station_id}/health",
    response_model=StationHealthPublic,
    summary="Current risk per connector of one station",
    description="Per connector the faults flow scored: its latest risk (0-1), whether the "
    f"model is still warming up, the {TOP_CONTRIBUTIONS} features that deviate most from "
    "the connector's own baseline and the latest feature values; plus the station's "
    "alerts not resolved yet, per severity. 404 for a station that is not provisioned.",
    responses=NOT_FOUND,
)
async def station_health(
    station_id: ChargePointPath, _principal: AlertHandler, conn: DbConn
) -> StationHealthPublic:
    if not await stations.station_exists(conn, station_id):
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"station {station_id!r} not found")
    health = await alert_store.station_health(conn, station_id)
    return StationHealthPublic(
        station_id=station_id,
        connectors=[
            ConnectorHealthPublic(
                connector_id=c.connector_id,
                at=c.at,
                risk=c.risk,
                phase=c.phase,
                top_contributions=top_contributions(c.contributions),
                features=c.features,
            )
            for c in health.connectors
        ],
        unresolved_alerts={s: health.unresolved_by_severity.get(s.value, 0) for s in Severity},
    )


def top_contributions(
    contributions: dict[str, float], n: int = TOP_CONTRIBUTIONS
) -> list[TopContribution]:
    """The ``n`` largest deviations by size, largest first (ties by name).

    >>> [t.feature for t in top_contributions({"a": 0.5, "b": -3.0, "c": 2.0}, 2)]
    ['b', 'c']
    """
    ranked = sorted(contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return [TopContribution(feature=k, contribution=v) for k, v in ranked[:n]]
