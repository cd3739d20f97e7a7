"""Grafana dashboards in code (Grafana's foundation SDK): Operations, Maintenance and
Billing over chargeflow's PostgreSQL/TimescaleDB tables; their provisioning files; the
``chargeflow dashboards export`` and ``publish`` commands; and Grafana's SQL macro
expansion (``macros``) that the tests run every panel's query through. See
docs/dashboards.md."""
