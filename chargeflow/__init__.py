"""chargeflow composition root: CLI, settings and the local stack launcher."""
