"""Payments: one provider interface (:mod:`billing.payments.provider`) with Stripe
(manual-capture PaymentIntents), a prepaid wallet (a double-entry ledger in PostgreSQL)
and postpaid accounts (charges onto the monthly statement) behind it."""
