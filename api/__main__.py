"""``python -m api``: serve the API from CHARGEFLOW_* environment variables.

CHARGEFLOW_DATABASE_URL (required), CHARGEFLOW_KAFKA_BOOTSTRAP (optional),
CHARGEFLOW_API_HOST (default 127.0.0.1), CHARGEFLOW_API_PORT (default 8000),
CHARGEFLOW_API_AUTH_FAILURE_LIMIT / _WINDOW_S (default 20 per 60 s).
"""

from __future__ import annotations

import os
import sys

from api.config import ApiConfig
from api.main import serve


def main() -> None:
    database_url = os.environ.get("CHARGEFLOW_DATABASE_URL")
    if not database_url:
        sys.exit("CHARGEFLOW_DATABASE_URL is required")
    config = ApiConfig(
        database_url=database_url,
        kafka_bootstrap=os.environ.get("CHARGEFLOW_KAFKA_BOOTSTRAP") or None,
        auth_failure_limit=int(os.environ.get("CHARGEFLOW_API_AUTH_FAILURE_LIMIT", "20")),
        auth_failure_window_s=int(os.environ.get("CHARGEFLOW_API_AUTH_FAILURE_WINDOW_S", "60")),
    )
    serve(
        config,
        host=os.environ.get("CHARGEFLOW_API_HOST", "127.0.0.1"),
        port=int(os.environ.get("CHARGEFLOW_API_PORT", "8000")),
    )


if __name__ == "__main__":
    main()
