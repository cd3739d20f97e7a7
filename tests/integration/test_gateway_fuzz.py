"""Fuzzing a live gateway over real websockets (both subprotocols), with hypothesis.

The gateway runs in-process but on its own event loop in a background thread
(real broker, real database, real sockets), so the test can count the gateway
loop's asyncio tasks exactly while the fuzzing client uses the blocking
``websockets.sync`` client. Each example sends one fuzzed frame, then a control
``Heartbeat`` CALL on the same connection: the gateway handles a connection's
frames one at a time, so every answer that arrives before the control answer
belongs to the fuzzed frame.

Checked per example:
- a frame that is a JSON array ``[2, <id>, ...]`` with a parseable message id (a
  non-empty string of at most 36 characters) gets exactly one answer, a CALLRESULT
  or a CALLERROR, carrying that same id; a CALLRESULT only for a well-formed CALL
  (4 elements, action string, object payload);
- any other frame gets at most one answer, and only a CALLERROR;
- every CALLERROR is ``[4, id, code, description, details]`` with a code that
  exists in the negotiated OCPP version (1.6 and 2.0.1 differ);
- the connection stays open, unless the frame is larger than ``max_frame_bytes``
  (then it is closed with 1009 and the test reconnects);
After each strategy: a separate control station is still served and, once the
fuzzing connections are closed, the gateway loop is back to its baseline task
count (no leaked tasks) with no station left connected.

Bounds and determinism: the ``chargeflow-gateway-fuzz`` hypothesis profile runs
``CHARGEFLOW_FUZZ_EXAMPLES`` (default 200) examples per strategy and subprotocol,
no deadline, ``derandomize=True`` so CI always runs the same examples (set
``CHARGEFLOW_FUZZ_RANDOM=1`` to explore new ones locally; a failure prints the
frame to reproduce it). The gateway's per-connection rate limit is raised for
this gateway only: it delays frames by design and is tested in
test_gateway_security.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from store.id_tokens import add_id_tag
from store.stations import provision_station
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

T = TypeVar("T")

settings.register_profile(
    "chargeflow-gateway-fuzz",
    max_examples=int(os.environ.get("CHARGEFLOW_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=os.environ.get("CHARGEFLOW_FUZZ_RANDOM", "") not in ("1", "true", "yes"),
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
FUZZ = settings.get_profile("chargeflow-gateway-fuzz")

PASSWORD = "fuzz-station-password-1"
MAX_FRAME_BYTES = 65536
NOW = "2026-01-05T10:00:00.000Z"

ERROR_CODES = {
    "ocpp1.6": frozenset(
        {
            "NotImplemented",
            "NotSupported",
            "InternalError",
            "ProtocolError",
            "SecurityError",
            "FormationViolation",
            "PropertyConstraintViolation",
            "OccurenceConstraintViolation",
            "TypeConstraintViolation",
            "GenericError",
        }
    ),
    "ocpp2.0.1": frozenset(
        {
            "FormatViolation",
            "GenericError",
            "InternalError",
            "MessageTypeNotSupported",
            "NotImplemented",
            "NotSupported",
            "OccurrenceConstraintViolation",
            "PropertyConstraintViolation",
            "ProtocolError",
            "RpcFrameworkError",
            "SecurityError",
            "TypeConstraintViolation",
        }
    ),
}
SUBPROTOCOLS = tuple(ERROR_CODES)


# --------------------------------------------------------------------------- the gateway


class GatewayThread:
    """A Gateway serving on its own event loop in a daemon thread."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway: Gateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()/alive
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Gateway(self.config) as gw:
            self.gateway = gw
            self._ready.set()
            await self._stop.wait()

    def start(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._error is None

    def run(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """``fn()`` evaluated on the gateway's loop."""
        assert self.loop is not None

        async def call() -> T:
            return fn()

        fut: Future[T] = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return fut.result(timeout)

    def task_count(self) -> int:
        """Tasks on the gateway loop, not counting the one doing the counting."""
        return self.run(lambda: len(asyncio.all_tasks())) - 1

    def connected(self) -> list[str]:
        assert self.gateway is not None
        return self.run(lambda: list(self.gateway.connected_stations))  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url


@pytest.fixture(scope="module")
def fuzz_gateway(broker: EmbeddedBroker, database_url: str) -> Iterator[GatewayThread]:
    topics = Topics.with_prefix(f"fz{uuid.uuid4().hex[:8]}.")
    ensure_topics(broker.bootstrap, topics.all(), partitions=2)
    config = GatewayConfig(
        kafka_bootstrap=broker.bootstrap,
        database_url=database_url,
        topics=topics,
        max_frame_bytes=MAX_FRAME_BYTES,
        max_messages_per_s=100_000.0,
        message_burst=100_000,
        offline_grace_s=0.0,  # no per-station pending-offline task after a disconnect
        validate_responses=True,
        gc_young_threshold=0,
    )
    gw = GatewayThread(config).start()
    try:
        yield gw
    finally:
        gw.stop()


def basic_auth(cp_id: str) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def open_connection(gw: GatewayThread, cp_id: str, subprotocol: str) -> ClientConnection:
    ws = connect(
        f"{gw.url}/{cp_id}",
        subprotocols=[Subprotocol(subprotocol)],
        additional_headers=basic_auth(cp_id),
        max_size=None,
        open_timeout=30.0,
        legacy=True,
    )
    assert ws.subprotocol == subprotocol
    return ws


def control_call(ws: ClientConnection) -> list[Any]:
    """A Heartbeat CALL; returns the answers that arrived before its CALLRESULT."""
    uid = "ctl-" + uuid.uuid4().hex
    ws.send(json.dumps([2, uid, "Heartbeat", {}]))
    before: list[Any] = []
    deadline = time.monotonic() + 30
    while True:
        raw = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        frame = json.loads(raw)
        if isinstance(frame, list) and len(frame) > 1 and frame[1] == uid:
            assert frame[0] == 3, f"control Heartbeat not answered with CALLRESULT: {frame}"
            assert "currentTime" in frame[2]
            return before
        before.append(frame)


# --------------------------------------------------------------------------- the oracle


def _call_id(msg: Any) -> str | None:
    """The message id a correct receiver can read: ``[2, "<1-36 chars>", ...]``."""
    if not isinstance(msg, list) or len(msg) < 2:
        return None
    kind, uid = msg[0], msg[1]
    if isinstance(kind, bool) or not isinstance(kind, int) or kind != 2:
        return None
    if not isinstance(uid, str) or not 1 <= len(uid) <= 36:
        return None
    return uid


def _well_formed_call(msg: Any) -> bool:
    return (
        isinstance(msg, list)
        and len(msg) == 4
        and isinstance(msg[2], str)
        and bool(msg[2])
        and isinstance(msg[3], dict)
    )


@dataclass(frozen=True)
class Case:
    """One fuzzed frame and what a correct receiver must do with it."""

    frame: str | bytes
    call_id: str | None = None  # a CALL with a readable message id: answer with it
    well_formed: bool = False  # a CALLRESULT is a possible answer

    def __repr__(self) -> str:
        shown: Any = (
            self.frame
            if len(self.frame) <= 400
            else (f"{self.frame[:300]!r}... ({len(self.frame)} chars/bytes)")
        )
        return f"Case({shown!r}, call_id={self.call_id!r})"


def built(structure: Any, *, ensure_ascii: bool = False) -> Case:
    """A frame we built as a Python structure."""
    return Case(
        json.dumps(structure, ensure_ascii=ensure_ascii),
        _call_id(structure),
        _well_formed_call(structure),
    )


def raw(frame: str | bytes) -> Case:
    """A frame of arbitrary text/bytes: the oracle is what a JSON parser makes of it.
    (Not for deeply nested text: a RecursionError in this thread can upset CPython
    3.11's AST checks later, when pytest formats a traceback.)"""
    try:
        msg = json.loads(frame)
    except (ValueError, RecursionError):
        return Case(frame)
    return Case(frame, _call_id(msg), _well_formed_call(msg))


def frame_size(frame: str | bytes) -> int:
    return len(frame.encode("utf-8") if isinstance(frame, str) else frame)


def check_answer_shape(answer: Any, subprotocol: str) -> None:
    assert isinstance(answer, list), answer
    assert len(answer) >= 3, answer
    assert answer[0] in (3, 4), f"the gateway sent a non-answer: {answer!r}"
    assert isinstance(answer[1], str), answer
    assert answer[1], answer
    if answer[0] == 3:
        assert len(answer) == 3, answer
        assert isinstance(answer[2], dict), answer
    else:
        assert len(answer) == 5, answer
        assert answer[2] in ERROR_CODES[subprotocol], (
            f"{answer[2]!r} is not an OCPP {subprotocol} error code: {answer!r}"
        )
        assert isinstance(answer[3], str), answer
        assert isinstance(answer[4], dict), answer


class Fuzzer:
    """One fuzzing connection (reconnected after an expected close)."""

    def __init__(self, gw: GatewayThread, subprotocol: str, cp_id: str) -> None:
        self.gw = gw
        self.subprotocol = subprotocol
        self.cp_id = cp_id
        self.ws: ClientConnection | None = None
        self.examples = 0
        self.answered_calls = 0
        self.oversized = 0

    def connection(self) -> ClientConnection:
        if self.ws is None:
            self.ws = open_connection(self.gw, self.cp_id, self.subprotocol)
        return self.ws

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def check(self, case: Case) -> None:
        self.examples += 1
        ws = self.connection()
        oversized = frame_size(case.frame) > MAX_FRAME_BYTES
        closed: ConnectionClosed | None = None
        answers: list[Any] = []
        try:
            ws.send(case.frame)
            answers = control_call(ws)
        except ConnectionClosed as exc:
            closed = exc
        except TimeoutError:
            self.close()
            raise AssertionError("no answer to the control Heartbeat within 30 s") from None
        if closed is not None:
            self.ws = None
            code = closed.rcvd.code if closed.rcvd is not None else None
            reason = closed.rcvd.reason if closed.rcvd is not None else None
            assert oversized, (
                f"the gateway closed the connection (code {code}, reason "
                f"{reason!r}) on a {frame_size(case.frame)}-byte frame"
            )
            assert code == 1009, f"oversized frame closed with {code}, expected 1009"
            self.oversized += 1
            return
        assert not oversized, "a frame larger than max_frame_bytes was accepted"
        for answer in answers:
            check_answer_shape(answer, self.subprotocol)
        uid = case.call_id
        if uid is not None:
            assert len(answers) == 1, f"a CALL must get exactly one answer, got {answers!r}"
            assert answers[0][1] == uid, f"answer carries {answers[0][1]!r}, CALL had {uid!r}"
            if answers[0][0] == 3:
                assert case.well_formed, f"CALLRESULT to a malformed CALL: {answers!r}"
            self.answered_calls += 1
        else:
            assert len(answers) <= 1, f"more than one answer to one frame: {answers!r}"
            assert all(a[0] == 4 for a in answers), f"CALLRESULT to a non-CALL: {answers!r}"


# --------------------------------------------------------------------------- strategies


EXTREME_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31 - 1,
        -(2**31),
        2**31,
        2**53 + 1,
        2**63 - 1,
        -(2**63),
        2**63,
        2**64,
        -(2**64),
        10**40,
        -(10**40),
        10**300,
        1e308,
        -1e308,
        5e-324,
        1e-320,
        -0.0,
        0.5,
        math.inf,
        -math.inf,
        math.nan,
    ]
)
NUMBERS = EXTREME_NUMBERS | st.integers() | st.floats()
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\u0000",
        "\ufeff",
        "\u202eevil",
        "\U0001f4a5" * 25,
        "é" * 21,
        "a\nb\r\tc",
        '"quoted"',
        "\\",
        "null",
        "[]",
        "{}",
        "%s%n",
        "' OR 1=1 --",
        "\uffff",
        "\u30fe\u2572(\uff61\u25d5\u203f\u25d5\uff61)\u2571",
        "A" * 20,
        "A" * 21,
        "A" * 36,
        "A" * 37,
        "A" * 255,
        "A" * 256,
        "A" * 1000,
        "A" * 2500,
    ]
)
HUGE_STRINGS = st.sampled_from([10_000, 60_000, 65_400, 66_000, 100_000]).map(lambda n: "x" * n)
BAD_DATES = st.sampled_from(
    [
        "",
        "yesterday",
        "now",
        "2026-13-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-05T25:00:00Z",
        "2026-01-05T10:00:60Z",
        "2026-01-05T10:00:00",
        "2026-01-05 10:00:00Z",
        "2026-01-05T10:00:00+24:00",
        "2026-01-05T10:00:00.Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59.999999999999Z",
        "+002026-01-05T10:00:00Z",
        "1e10",
        "2026-01-05T10:00:00.000000000000000000001Z",
        "2026-W02-1T10:00:00Z",
        "2026-01-05T10:00:00Z\u0000",
        "\uff12\uff10\uff12\uff16-01-05T10:00:00Z",
    ]
)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


def deep(depth: int) -> Any:
    """Nested objects/arrays, as a structure (json.dumps handles a few hundred levels)."""
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def deep_text(depth: int) -> str:
    """The same nesting as JSON text, for depths no recursive encoder/decoder survives."""
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


DEEP = st.sampled_from([10, 50, 100, 200, 300]).map(deep)
# Nesting the gateway's JSON parser survives; deeper frames: test_deeply_nested_frames.
DEEP_SAFE = st.sampled_from([400, 500, 800])

JSON_SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | NASTY_STRINGS
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=20,
)
WEIRD_VALUES = JSON_VALUES | HUGE_STRINGS | BAD_DATES | DEEP | EXTREME_NUMBERS

UIDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=36) | st.sampled_from(
    ["1", "-1", "0", "ctl", "a" * 36]
)
BAD_UIDS = (
    st.sampled_from(["", "a" * 37, "x" * 1000])
    | st.none()
    | NUMBERS
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(TEXT, st.integers(), max_size=2)
)

TX_201 = {"transactionId": "TX-FUZZ-1", "chargingState": "Charging"}
REGISTER_201 = [
    {
        "timestamp": NOW,
        "sampledValue": [
            {
                "value": 1000.5,
                "context": "Sample.Periodic",
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ],
    }
]

VALID_CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "ocpp1.6": [
        (
            "BootNotification",
            {
                "chargePointVendor": "Acme",
                "chargePointModel": "AC22",
                "chargePointSerialNumber": "SN-1",
                "firmwareVersion": "1.0",
            },
        ),
        ("Heartbeat", {}),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": NOW},
        ),
        ("Authorize", {"idTag": "FUZZ-TAG"}),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "FUZZ-TAG", "meterStart": 1000, "timestamp": NOW},
        ),
        (
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 1,
                "meterValue": [
                    {
                        "timestamp": NOW,
                        "sampledValue": [
                            {
                                "value": "1000",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                                "context": "Sample.Periodic",
                            },
                            {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                        ],
                    }
                ],
            },
        ),
        (
            "StopTransaction",
            {
                "transactionId": 1,
                "meterStop": 2000,
                "timestamp": NOW,
                "idTag": "FUZZ-TAG",
                "reason": "Local",
                "transactionData": [{"timestamp": NOW, "sampledValue": [{"value": "2000"}]}],
            },
        ),
        ("DataTransfer", {"vendorId": "acme", "messageId": "ping", "data": "hello"}),
        ("DiagnosticsStatusNotification", {"status": "Idle"}),
        ("FirmwareStatusNotification", {"status": "Installed"}),
    ],
    "ocpp2.0.1": [
        (
            "BootNotification",
            {
                "chargingStation": {
                    "vendorName": "Acme",
                    "model": "DC50",
                    "serialNumber": "SN-201",
                },
                "reason": "PowerUp",
            },
        ),
        ("Heartbeat", {}),
        (
            "StatusNotification",
            {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ),
        ("Authorize", {"idToken": {"idToken": "FUZZ-TAG", "type": "ISO14443"}}),
        (
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": NOW,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": TX_201,
                "evse": {"id": 1, "connectorId": 1},
                "idToken": {"idToken": "FUZZ-TAG", "type": "ISO14443"},
                "meterValue": REGISTER_201,
            },
        ),
        (
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": NOW,
                "triggerReason": "MeterValuePeriodic",
                "seqNo": 1,
                "transactionInfo": TX_201,
                "meterValue": REGISTER_201,
            },
        ),
        (
            "MeterValues",
            {
                "evseId": 1,
                "meterValue": [
                    {
                        "timestamp": NOW,
                        "sampledValue": [
                            {
                                "value": 230.1,
                                "measurand": "Voltage",
                                "phase": "L1-N",
                                "unitOfMeasure": {"unit": "V"},
                            },
                            {
                                "value": 7,
                                "measurand": "Power.Active.Import",
                                "unitOfMeasure": {"unit": "W", "multiplier": 3},
                            },
                        ],
                    }
                ],
            },
        ),
        (
            "NotifyEvent",
            {
                "generatedAt": NOW,
                "seqNo": 0,
                "eventData": [
                    {
                        "eventId": 1,
                        "timestamp": NOW,
                        "trigger": "Alerting",
                        "actualValue": "95",
                        "eventNotificationType": "HardWiredMonitor",
                        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                        "variable": {"name": "Temperature"},
                    }
                ],
            },
        ),
        ("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": NOW}),
        ("DataTransfer", {"vendorId": "acme", "messageId": "ping", "data": {"a": [1, 2]}}),
        ("FirmwareStatusNotification", {"status": "Installed", "requestId": 3}),
        ("LogStatusNotification", {"status": "Uploaded"}),
    ],
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths(child, (*prefix, i))
    return found


def containers(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [prefix] if isinstance(value, dict | list) else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += containers(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += containers(child, (*prefix, i))
    return found


def get_at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_payload(draw: st.DrawFn, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with 1-3 mutations: drop, insert or replace a field anywhere."""
    mutated = json.loads(json.dumps(payload))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "insert", "replace", "replace", "replace"]))
        if op == "drop":
            candidates = paths(mutated)
            if not candidates:
                continue
            path = draw(st.sampled_from(candidates))
            parent = get_at(mutated, path[:-1])
            del parent[path[-1]]
        elif op == "insert":
            path = draw(st.sampled_from(containers(mutated)))
            parent = get_at(mutated, path)
            value = draw(WEIRD_VALUES)
            if isinstance(parent, dict):
                parent[draw(TEXT | st.sampled_from(sorted(parent) or ["x"]))] = value
            else:
                parent.insert(draw(st.integers(0, len(parent))), value)
        else:
            candidates = paths(mutated)
            if not candidates:
                continue
            path = draw(st.sampled_from(candidates))
            get_at(mutated, path[:-1])[path[-1]] = draw(WEIRD_VALUES)
    return mutated


def random_frames(subprotocol: str) -> st.SearchStrategy[Case]:
    """Random bytes (binary frames) and random text."""
    return st.one_of(
        st.binary(max_size=300).map(raw),
        TEXT.map(raw),
        st.text(st.sampled_from('[]{}",:0123456789.-eE tfnrul\\'), max_size=80).map(raw),
        st.binary(max_size=200).map(lambda b: raw(b"[2," + b)),
        st.tuples(UIDS, TEXT).map(lambda t: raw(json.dumps([2, t[0], "Heartbeat"])[:-1] + t[1])),
    )


def random_json(subprotocol: str) -> st.SearchStrategy[Case]:
    """Random JSON documents, and arrays shaped a bit like OCPP-J frames."""
    frame_like = st.tuples(
        st.sampled_from([2, 2, 3, 4]) | JSON_SCALARS,
        UIDS | BAD_UIDS,
    ).flatmap(lambda head: st.lists(JSON_VALUES, max_size=4).map(lambda tail: [*head, *tail]))
    return st.one_of(
        JSON_VALUES.map(built),
        JSON_VALUES.map(lambda v: built(v, ensure_ascii=True)),
        frame_like.map(built),
    )


def mutated_calls(subprotocol: str) -> st.SearchStrategy[Case]:
    """Valid CALLs of this version with mutated payloads."""
    calls = VALID_CALLS[subprotocol]
    return st.tuples(UIDS, st.sampled_from(calls)).flatmap(
        lambda pick: mutated_payload(pick[1][1]).map(
            lambda payload: built([2, pick[0], pick[1][0], payload])
        )
    )


ACTIONS = {sp: sorted({a for a, _ in calls}) for sp, calls in VALID_CALLS.items()}


def deep_call(uid: str, action: str, depth: int, *, whole_payload: bool) -> Case:
    nested = deep_text(depth)
    payload = nested if whole_payload else '{"vendorId":"x","data":' + nested + "}"
    return Case(
        "[2," + json.dumps(uid) + "," + json.dumps(action) + "," + payload + "]",
        call_id=uid if 1 <= len(uid) <= 36 else None,
        well_formed=True,
    )


def frame_shapes(subprotocol: str) -> st.SearchStrategy[Case]:
    """Wrong message type ids, ids and element counts; unknown and server-side actions;
    CALLRESULT/CALLERROR frames with ids the gateway never used; deep nesting."""
    payload = st.sampled_from([p for _, p in VALID_CALLS[subprotocol]])
    action = (
        st.sampled_from(ACTIONS[subprotocol])
        | st.sampled_from(
            [
                "Reset",
                "RemoteStartTransaction",
                "GetVariables",
                "FlyToTheMoon",
                "heartbeat",
                "Heartbeat ",
                "",
                "A" * 1000,
                "__init__",
                "route_map",
                "_on_action",
            ]
        )
        | TEXT
    )
    message_type = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, -2, 2**64, 2.0, "2", True, None, [2]])
    return st.one_of(
        st.tuples(message_type, UIDS | BAD_UIDS, action, payload).map(list).map(built),
        # [2, id], [2, id, action], [2, id, action, payload, extra]
        st.tuples(UIDS, action, payload, JSON_VALUES, st.sampled_from([2, 3, 5])).map(
            lambda t: built([2, *t[:4]][: t[4]])
        ),
        st.tuples(UIDS, JSON_VALUES).map(lambda t: built([3, t[0], t[1]])),
        st.tuples(
            UIDS, st.sampled_from(sorted(ERROR_CODES[subprotocol])) | TEXT, TEXT, JSON_VALUES
        ).map(lambda t: built([4, *t])),
        st.tuples(st.sampled_from([3, 4]), UIDS, st.lists(JSON_VALUES, max_size=5)).map(
            lambda t: built([t[0], t[1], *t[2]])
        ),
        st.tuples(UIDS, action, DEEP_SAFE).map(
            lambda t: deep_call(t[0], t[1], t[2], whole_payload=False)
        ),
        st.tuples(UIDS, action, DEEP_SAFE).map(
            lambda t: deep_call(t[0], t[1], t[2], whole_payload=True)
        ),
        DEEP_SAFE.map(lambda d: Case("[" + deep_text(d) + "]")),
    )


STRATEGIES: dict[str, Callable[[str], st.SearchStrategy[Case]]] = {
    "random_frames": random_frames,
    "random_json": random_json,
    "mutated_calls": mutated_calls,
    "frame_shapes": frame_shapes,
}


# --------------------------------------------------------------------------- the tests


@contextmanager
def plain_failure() -> Iterator[None]:
    """Report an assertion failure as its message (and hypothesis' notes: the falsifying
    frame), without a traceback. pytest builds tracebacks with ``ast.parse``, and on
    CPython 3.11.7 that can die with "SystemError: AST constructor recursion depth
    mismatch" (cpython gh-106905) after the deep-nesting cases, killing the session."""
    try:
        yield
    except AssertionError as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))
        pytest.fail(f"{type(exc).__name__}: {exc}\n{notes}".rstrip(), pytrace=False)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_fuzzed_frames_are_answered_and_never_hurt_the_gateway(
    fuzz_gateway: GatewayThread, database_url: str, subprotocol: str, strategy: str
) -> None:
    gw = fuzz_gateway
    tag = f"{strategy[:6]}-{subprotocol[4:]}-{uuid.uuid4().hex[:6]}"
    fuzz_id, control_id = f"FZ-{tag}", f"CTL-{tag}"
    for cp_id in (fuzz_id, control_id):
        provision_station(database_url, cp_id, password=PASSWORD)
    add_id_tag(database_url, "FUZZ-TAG")
    poll_until(gw.connected, lambda c: not c, 30, "no station connected before fuzzing")
    baseline = gw.task_count()

    control = open_connection(gw, control_id, subprotocol)
    fuzzer = Fuzzer(gw, subprotocol, fuzz_id)

    @FUZZ
    @given(case=STRATEGIES[strategy](subprotocol))
    def fuzz(case: Case) -> None:
        assert gw.alive, "the gateway thread died"
        fuzzer.check(case)

    try:
        with plain_failure():
            fuzz()
        # Still serving: the fuzzed connection (fresh if it was closed) and another station.
        assert control_call(fuzzer.connection()) == []
        assert control_call(control) == []
    finally:
        fuzzer.close()
        control.close()
    assert gw.alive
    assert fuzzer.examples >= 1
    # No leaked tasks: once both connections are gone the loop is back at its baseline.
    poll_until(gw.connected, lambda c: not c, 30, "fuzz stations disconnected")
    counts = poll_until(
        gw.task_count,
        lambda n: n <= baseline,
        30,
        f"gateway loop back to its {baseline} baseline tasks",
    )
    assert counts <= baseline


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("depth", [60, 65, 900, 1000, 3000, 10_000])
@pytest.mark.parametrize("where", ["frame", "payload", "data"])
def test_deeply_nested_frames(
    fuzz_gateway: GatewayThread, database_url: str, subprotocol: str, depth: int, where: str
) -> None:
    """Nesting far beyond any OCPP message (a 12 KB frame can nest 3,000 levels) is
    answered like any other bad frame and does not cost the station its connection
    (the gateway refuses frames nesting deeper than 64 levels before parsing them)."""
    gw = fuzz_gateway
    cp_id = f"FZ-deep-{uuid.uuid4().hex[:6]}"
    provision_station(database_url, cp_id, password=PASSWORD)
    fuzzer = Fuzzer(gw, subprotocol, cp_id)
    uid = f"deep-{depth}"
    case = {
        "frame": Case("[" + deep_text(depth) + "]"),  # not a CALL: no json.loads here
        "payload": deep_call(uid, "DataTransfer", depth, whole_payload=True),
        "data": deep_call(uid, "DataTransfer", depth, whole_payload=False),
    }[where]
    try:
        with plain_failure():
            fuzzer.check(case)
        assert control_call(fuzzer.connection()) == []
    finally:
        fuzzer.close()


def test_stray_answers_do_not_pile_up_per_connection(
    fuzz_gateway: GatewayThread, database_url: str
) -> None:
    """CALLRESULT/CALLERROR frames answering nothing the gateway sent must not be kept:
    a station could otherwise grow the gateway's memory without bound."""
    gw = fuzz_gateway
    cp_id = f"FZ-stray-{uuid.uuid4().hex[:6]}"
    provision_station(database_url, cp_id, password=PASSWORD)
    ws = open_connection(gw, cp_id, "ocpp1.6")
    try:
        for i in range(200):
            ws.send(json.dumps([3, f"stray-{i}", {"x": "y" * 1000}]))
            ws.send(json.dumps([4, f"stray-e-{i}", "GenericError", "", {}]))
        assert control_call(ws) == []
        assert gw.gateway is not None
        station = gw.run(lambda: gw.gateway._stations[cp_id])  # type: ignore[union-attr]
        queued = gw.run(lambda: station._response_queue.qsize())
        dropped = {
            kind: gw.run(
                lambda k=kind: gw.gateway.registry.get_sample_value(  # type: ignore[misc]
                    "chargeflow_gateway_stray_answers_total", {"kind": k}
                )
            )
            for kind in ("callresult", "callerror")
        }
        with plain_failure():
            assert queued <= 10, f"{queued} unsolicited answers kept for this connection"
            assert gw.run(lambda: station._awaiting) is None
            assert all(n is not None and n >= 200 for n in dropped.values()), dropped
    finally:
        ws.close()
