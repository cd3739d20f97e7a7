"""Webhooks: fault alerts delivered to the operator's HTTP endpoints (``chargeflow webhooks``).

Pure parts: :mod:`notify.signing` (the ``Chargeflow-Signature`` header and
:func:`~notify.signing.verify_signature` for receivers), :mod:`notify.policy` (which
endpoint wants which alert, the request, the retry schedule). Adapters: :mod:`notify.intake`
(``alerts`` topic -> ``webhook_deliveries`` rows), :mod:`notify.delivery` (due rows ->
signed POSTs), :mod:`notify.worker` (the process). docs/webhooks.md is the receiver's guide.
"""
