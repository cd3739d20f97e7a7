"""OCPP-J central system: charge points connect over WebSocket, every CALL becomes an
envelope on ``ocpp.events`` before the station gets its answer.

Layout: ``framing`` (OCPP-J frames, transport- and version-free), ``schemas``
(payload validation per OCPP version), ``services`` (database, Kafka, metrics;
version-free), ``protocol`` (the CALL pipeline shared by all versions), ``v16``
(OCPP 1.6J handlers), ``v201`` (OCPP 2.0.1 handlers), ``server`` (WebSocket
transport, subprotocol negotiation). Envelopes carry the raw payload and its
version-independent form (``bus.normalized``).
"""
