"""Schema, migrations, batch writers and read queries for TimescaleDB / PostgreSQL."""
