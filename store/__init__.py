"""PostgreSQL / TimescaleDB: one module per aggregate with its reads and writes, ``db``
for connections and the schema, the aggregate refresher and the migrations."""
