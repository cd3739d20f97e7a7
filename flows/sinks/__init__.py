"""Where the flows write: :mod:`flows.sinks.database` (PostgreSQL: a flow's rows writer
behind one sink that batches, retries, overlaps the write with the epoch snapshot and
runs an after-commit hook), :mod:`flows.sinks.kafka` (Kafka topics and dead letters) and
:mod:`flows.sinks.output` (wiring a stream of row lists to a sink)."""
