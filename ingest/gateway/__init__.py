"""OCPP-J central system: charge points connect over WebSocket, every CALL becomes an
envelope on ``ocpp.events`` before the station gets its answer.

Layout: ``framing`` (OCPP-J frames, transport- and version-free), ``schemas``
(payload validation per OCPP version), ``services`` (database, Kafka, metrics;
version-free), ``v16`` (OCPP 1.6J handlers), ``server`` (WebSocket transport).
"""
