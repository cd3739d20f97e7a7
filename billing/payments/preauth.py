"""What an authorised session's pre-authorisation holds: the configured estimate, or
less when the session's tariff caps the price below it. Pure (no I/O)."""

from __future__ import annotations

from billing.money import to_minor
from billing.tariffs import Tariff


def hold_amount(estimate_minor: int, tariff: Tariff) -> int | None:
    """Minor units of ``tariff.currency`` to hold: ``estimate_minor``, or the tariff's
    ``max_price`` incl. VAT when that is lower (a session never costs more than it).
    None when there is nothing to hold (a tariff capped at 0). A ``max_price`` given
    excl. VAT only does not cap the hold: its VAT is per component, unknown before the
    session has run.

    >>> from billing.tariffs import parse_tariff
    >>> def capped(**max_price: str) -> Tariff:
    ...     return parse_tariff({
    ...         "country_code": "NL", "party_id": "CFL", "id": "T", "currency": "EUR",
    ...         "last_updated": "2026-01-01T00:00:00Z", "max_price": max_price or None,
    ...         "elements": [{"price_components": [
    ...             {"type": "ENERGY", "price": "0.30", "step_size": 1}]}]})
    >>> hold_amount(5000, capped())
    5000
    >>> hold_amount(5000, capped(excl_vat="16.53", incl_vat="20.00"))
    2000
    >>> hold_amount(5000, capped(excl_vat="80", incl_vat="96.80"))
    5000
    >>> hold_amount(5000, capped(excl_vat="10"))
    5000
    >>> hold_amount(5000, capped(excl_vat="0", incl_vat="0")) is None
    True
    """
    cap = tariff.max_price.incl_vat if tariff.max_price is not None else None
    if cap is None:
        return estimate_minor
    cap_minor = to_minor(cap, tariff.currency)
    if cap_minor <= 0:
        return None
    return min(estimate_minor, cap_minor)
