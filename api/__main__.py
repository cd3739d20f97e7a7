"""``python -m api``: serve the API with its settings (:class:`api.settings.ApiSettings`:
``CHARGEFLOW_*`` environment and ``.env``; CHARGEFLOW_DATABASE_URL is required)."""

from __future__ import annotations

import sys

from api.main import serve
from api.payments import from_settings as payments_from_settings
from api.settings import ApiSettings
from runtime.logs import configure_logging
from runtime.settings import SettingsError


def main() -> None:
    try:
        settings = ApiSettings.load()
        config = settings.config()
        payments = payments_from_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    serve(config, host=settings.api_host, port=settings.api_port, payments=payments)


if __name__ == "__main__":
    main()
