"""The dead-letter contract: what every producer of a dead letter says about it.

A dead letter is the original message, key and bytes unchanged, on the dead-letter
topic, with headers saying why and where it came from. The flows, the gateway's
command consumer and the meter bridge all write them, so the header names live here.

>>> dict(dead_letter_headers("bad json", "decode", topic="ocpp.events", partition=2, offset=7))
... # doctest: +NORMALIZE_WHITESPACE
{'deadletter.reason': b'bad json', 'deadletter.stage': b'decode',
 'deadletter.source.topic': b'ocpp.events', 'deadletter.source.partition': b'2',
 'deadletter.source.offset': b'7'}
"""

from __future__ import annotations

REASON = "deadletter.reason"
STAGE = "deadletter.stage"
SOURCE = "deadletter.source"
SOURCE_TOPIC = "deadletter.source.topic"
SOURCE_PARTITION = "deadletter.source.partition"
SOURCE_OFFSET = "deadletter.source.offset"
TRUNCATED_FROM = "deadletter.truncated_from"

Headers = list[tuple[str, bytes]]


def dead_letter_headers(
    reason: str,
    stage: str,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    source: str | None = None,
    truncated_from: int | None = None,
) -> Headers:
    """The headers of one dead letter. ``partition`` and ``offset`` are -1 for a
    source that is not Kafka (then ``source`` names it, e.g. ``mqtt``);
    ``truncated_from`` is the original size when the value was cut to fit."""
    headers = [(REASON, reason.encode()), (STAGE, stage.encode())]
    if source is not None:
        headers.append((SOURCE, source.encode()))
    headers += [
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(-1 if partition is None else partition).encode()),
        (SOURCE_OFFSET, str(-1 if offset is None else offset).encode()),
    ]
    if truncated_from is not None:
        headers.append((TRUNCATED_FROM, str(truncated_from).encode()))
    return headers
