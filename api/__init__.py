"""FastAPI service: sessions (and later CDRs, tariffs, commands, ...) over the store."""
