"""Simulated OCPP 1.6J and 2.0.1 charge points (ocpp library client side), many per
process, and their smart meters (``meters``). Start at ``fleet``."""
