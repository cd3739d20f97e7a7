"""Billing: OCPI 2.2.1 tariffs and the cost of a session, CDRs, and payments. Pure code:
no I/O here except in the payment providers' adapters (``billing.payments``)."""
