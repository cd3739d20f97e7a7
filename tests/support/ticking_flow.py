"""A dataflow that runs until stopped and prints a line per item (for stop tests)."""

from __future__ import annotations

import sys
from datetime import timedelta

import bytewax.operators as op
from bytewax.connectors.demo import RandomMetricSource
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink


def tick(item: tuple[str, float]) -> tuple[str, float]:
    print("tick", file=sys.stderr, flush=True)
    return item


flow = Dataflow("ticking")
ticks = op.map(
    "tick",
    op.input("in", flow, RandomMetricSource("metric", interval=timedelta(milliseconds=100))),
    tick,
)
op.output("out", ticks, TestingSink([]))
