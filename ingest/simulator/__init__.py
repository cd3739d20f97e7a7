"""Simulated OCPP 1.6J charge points (ocpp library client side), many per process."""
