"""The station's OCPP message history: ``ocpp.events`` -> ``ocpp_messages``."""
