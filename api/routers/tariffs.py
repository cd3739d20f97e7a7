"""Tariffs: price a session under any OCPI 2.2.1 Tariff before it goes live (roles
billing, operator, admin). The body is read as exact JSON: prices and registers never
pass through a float."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from api.deps import TariffTester
from api.problems import AUTHENTICATED, UNREADABLE_BODY, ProblemError
from billing.preview import PreviewError, decode_json, encode_cdr, preview

router = APIRouter(prefix="/v1/tariffs", tags=["tariffs"], responses=AUTHENTICATED)

# A preview is one session: a day of 10 s readings is ~1 MB of JSON.
MAX_PREVIEW_BYTES = 4 * 1024 * 1024

_PREVIEW_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["tariff", "session"],
                "properties": {
                    "tariff": {"type": "object", "description": "An OCPI 2.2.1 Tariff object"},
                    "session": {
                        "type": "object",
                        "description": "time_zone (IANA), start, stop (RFC 3339) and "
                        "readings [{time, energy_wh (cumulative register), power_w, "
                        "current_a?}]: power and current hold until the next reading; the "
                        "first reading is at start, the last at stop",
                    },
                },
            },
            "examples": {
                "one hour at 7.4 kW": {
                    "value": {
                        "tariff": {
                            "country_code": "NL",
                            "party_id": "CFL",
                            "id": "T1",
                            "currency": "EUR",
                            "last_updated": "2026-01-01T00:00:00Z",
                            "elements": [
                                {
                                    "price_components": [
                                        {"type": "ENERGY", "price": 0.30, "vat": 21, "step_size": 1}
                                    ]
                                }
                            ],
                        },
                        "session": {
                            "time_zone": "Europe/Amsterdam",
                            "start": "2026-03-01T10:00:00Z",
                            "stop": "2026-03-01T11:00:00Z",
                            "readings": [
                                {"time": "2026-03-01T10:00:00Z", "energy_wh": 0, "power_w": 7400},
                                {"time": "2026-03-01T11:00:00Z", "energy_wh": 7400, "power_w": 0},
                            ],
                        },
                    }
                }
            },
        }
    },
}


@router.post(
    "/preview",
    summary="Price a session under a tariff (the OCPI CDR it would produce)",
    description="Returns the CDR fields: `total_cost` {excl_vat, incl_vat}, `total_energy` "
    "(kWh), `total_time` and `total_parking_time` (h), the `charging_periods`, and "
    "chargeflow's `cost_breakdown` (one line per priced dimension and period; the lines "
    "add up to the totals exactly). 422 names what is invalid in the tariff or session.",
    responses={**UNREADABLE_BODY, 413: {"description": "Body larger than 4 MiB"}},
    openapi_extra={"requestBody": _PREVIEW_BODY},
)
async def preview_tariff(_principal: TariffTester, request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_PREVIEW_BYTES:
        raise ProblemError(
            status.HTTP_413_CONTENT_TOO_LARGE, "the preview body is larger than 4 MiB"
        )
    try:
        body = decode_json(raw, "the body")
        if not isinstance(body, dict) or not {"tariff", "session"} <= body.keys():
            raise PreviewError('the body must be {"tariff": {...}, "session": {...}}')
        cdr = preview(body["tariff"], body["session"])
    except PreviewError as exc:
        raise ProblemError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return Response(encode_cdr(cdr), media_type="application/json")
