"""Bytewax dataflows: pure step functions plus thin wiring to sources and sinks."""
