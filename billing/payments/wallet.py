"""The prepaid wallet: a customer's balance in the ledger (:mod:`store.ledger`), topped
up with money received elsewhere; a session's authorisation holds part of it, declined
when the available balance does not cover it."""

from __future__ import annotations

from typing import ClassVar

from billing.money import check_currency
from billing.payments.ledger import LedgerProvider, payment
from billing.payments.provider import Payment
from store import ledger


class WalletProvider(LedgerProvider):
    kind: ClassVar[ledger.Provider] = "wallet"

    def authorize(
        self,
        *,
        session_id: str,
        customer: str,
        amount_minor: int,
        currency: str,
        payment_method: str | None,
        idempotency_key: str,
        off_session: bool = False,
    ) -> Payment:
        """Hold ``amount_minor`` of the wallet (``payment_method`` is not used: the
        wallet is the method); :class:`PaymentDeclined` when it does not cover it."""
        with self._connection() as conn:
            held = ledger.hold(
                conn, customer=customer, session_id=session_id, amount_minor=amount_minor,
                currency=check_currency(currency), idempotency_key=idempotency_key,
                at=self._clock(),
            )  # fmt: skip
        return payment(self.name, held)

    def top_up(
        self, customer: str, amount_minor: int, currency: str, *, reference: str,
        idempotency_key: str,
    ) -> ledger.TopUp:  # fmt: skip
        """Credit money received (``reference``: the payment that brought it)."""
        with self._connection() as conn:
            return ledger.top_up(
                conn, customer, amount_minor, check_currency(currency), reference=reference,
                idempotency_key=idempotency_key, at=self._clock(),
            )  # fmt: skip

    def balance(self, customer: str, currency: str) -> ledger.Balance:
        with self._connection() as conn:
            return ledger.balance(conn, customer, check_currency(currency))
