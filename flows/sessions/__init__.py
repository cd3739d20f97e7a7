"""Metered charging sessions from OCPP events (logic: pure; dataflow: wiring)."""
