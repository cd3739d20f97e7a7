"""What every chargeflow process shares at run time, below every other package.

Settings parts (Kafka, database, topics, logging) that each process's own settings
model is composed from, log configuration, retry policies per kind of dependency,
and the health/metrics HTTP endpoint. It imports no other chargeflow package.
"""
