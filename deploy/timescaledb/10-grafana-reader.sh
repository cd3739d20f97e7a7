#!/bin/sh
# First start of the database volume only (docker-entrypoint-initdb.d): the read-only
# role Grafana's datasource uses; its password is the grafana_db_password secret.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader_password="$(cat /run/secrets/grafana_db_password)" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE chargeflow TO grafana_reader;
GRANT pg_read_all_data TO grafana_reader;
SQL
