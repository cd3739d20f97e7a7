"""The faults flow: envelopes of every charge point -> its diagnostics -> alerts."""
