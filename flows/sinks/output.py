"""Wiring a flow's rows to its sink (:func:`rows_output`)."""

from __future__ import annotations

from typing import Any, TypeVar

import bytewax.operators as op
from bytewax.dataflow import operator
from bytewax.operators import KeyedStream
from bytewax.outputs import FixedPartitionedSink, Sink

T = TypeVar("T")


def _rows(item: tuple[str, list[T]]) -> list[T]:
    return item[1]


@operator
def rows_output(step_id: str, up: KeyedStream[list[T]], sink: Sink[Any]) -> None:
    """Write ``(key, [rows])`` to ``sink``: as they are to a
    :class:`flows.sinks.database.PostgresSink` (any ``FixedPartitionedSink``: rows go
    to its writers by key, one item per key and batch), row by row to any other sink
    (a test's ``TestingSink``)."""
    if isinstance(sink, FixedPartitionedSink):
        op.output("write", up, sink)
    else:
        op.output("write", op.flat_map("rows", up, _rows), sink)
