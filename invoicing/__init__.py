"""The billing worker (``chargeflow billing``): every closed session on
``sessions.closed`` becomes an OCPI CDR (stored, published on ``billing.cdrs``, its
payment captured) or a session held for review; see docs/billing.md."""
