"""Money: exact Decimal while calculating, rounded once to the currency's minor unit
(ROUND_HALF_UP, the rounding OCPI's own examples use), integer minor units for payments.

>>> to_minor(Decimal("5.625"), "EUR")
563
>>> to_minor(Decimal("1999.5"), "JPY")
2000
>>> from_minor(563, "EUR")
Decimal('5.63')
>>> round_money(Decimal("0.0049"), "EUR")
Decimal('0.00')
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies whose minor unit is not 1/100 (the rest: two decimals).
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip


class CurrencyError(ValueError):
    """Not an ISO 4217 alphabetic code."""


def check_currency(currency: str) -> str:
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise CurrencyError(f"currency must be an ISO 4217 code such as EUR, got {currency!r}")
    return currency.upper()


@functools.lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """Digits after the decimal point of the currency's minor unit (EUR 2, JPY 0)."""
    return _EXPONENTS.get(check_currency(currency), 2)


@functools.lru_cache(maxsize=512)
def _minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half up to the currency's minor unit."""
    return amount.quantize(_minor_unit(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` (major units) as an integer count of minor units, rounded half up."""
    return int(round_money(amount, currency).scaleb(exponent(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units as a Decimal amount in major units."""
    return (
        Decimal(minor).scaleb(-exponent(currency)).quantize(Decimal(1).scaleb(-exponent(currency)))
    )
