"""Per-CALL fast paths of the gateway against what they replace: the nesting limit,
cached key conversion and direct response serialisation (ocpp library's pipeline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.v16 import call_result as cr16
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import AuthorizationStatus, DataTransferStatus, RegistrationStatus
from ocpp.v201 import call_result as cr201
from ocpp.v201.datatypes import IdTokenInfoType, IdTokenType
from ocpp.v201.enums import (
    AuthorizationStatusEnumType,
    IdTokenEnumType,
    NotifyEVChargingNeedsStatusEnumType,
    RegistrationStatusEnumType,
)

from bus.envelope import Envelope, Kind, decode_envelope, encode_envelope, new_message_id
from bus.normalized import normalize_v201
from ingest.gateway import framing
from ingest.gateway.payloads import response_payload, to_snake_case
from ingest.gateway.schemas import SchemaSet

NOW = "2026-01-05T10:00:00.000Z"


def nested_text(depth: int) -> str:
    """``depth`` levels of arrays/objects as JSON text."""
    return '{"a":[' * (depth // 2) + ('{"a":1}' if depth % 2 else "1") + "]}" * (depth // 2)


def frame_with_payload_depth(total: int) -> str:
    """A DataTransfer CALL whose frame nests ``total`` levels (frame array = 1)."""
    return '[2,"d","DataTransfer",{"vendorId":"x","data":' + nested_text(total - 2) + "}]"


@pytest.mark.parametrize("depth", [1, 2, 10, 63, 64])
def test_nesting_up_to_the_limit_parses(depth: int) -> None:
    text = "[" * depth + "]" * depth
    assert framing.nesting_depth(text) <= framing.MAX_NESTING_DEPTH
    assert not isinstance(
        framing.parse_frame(frame_with_payload_depth(max(depth, 3))), framing.FrameError
    )


@pytest.mark.parametrize("depth", [65, 100, 1000, 100_000])
def test_nesting_past_the_limit_is_a_frame_error_with_the_id(depth: int) -> None:
    frame = framing.parse_frame(frame_with_payload_depth(depth))
    assert isinstance(frame, framing.FrameError)
    assert (frame.unique_id, frame.error_code, frame.fault) == ("d", "FormationViolation", "depth")


def test_brackets_inside_strings_do_not_count() -> None:
    text = '[2,"x","DataTransfer",{"vendorId":"' + "[{" * 500 + '\\"]"}]'
    assert framing.nesting_depth(text) == 2
    assert isinstance(framing.parse_frame(text), framing.CallFrame)


def test_unparseable_deep_text_never_raises() -> None:
    for text in ("[" * 5000, "{" * 5000, '["' + "[" * 5000, "[" * 5000 + '"'):
        assert isinstance(framing.parse_frame(text), framing.FrameError)


def test_deepest_allowed_payload_goes_through_every_step() -> None:
    """Schema check, key conversion, normalisation and envelope encoding of a 2.0.1
    DataTransfer whose ``data`` nests as deep as the frame limit allows."""
    frame = framing.parse_frame(frame_with_payload_depth(framing.MAX_NESTING_DEPTH))
    assert isinstance(frame, framing.CallFrame)
    assert SchemaSet("2.0.1").validate("DataTransfer", frame.payload) is None
    assert to_snake_case(frame.payload) == camel_to_snake_case(frame.payload)
    now = datetime.now(UTC)
    facts = normalize_v201("CP", "DataTransfer", frame.payload, {"status": "Accepted"}, now)
    envelope = Envelope(
        message_id=new_message_id(),
        charge_point_id="CP",
        received_at=now,
        measured_at=now,
        kind=Kind.OCPP_CALL,
        ocpp_version="2.0.1",
        action="DataTransfer",
        unique_id="d",
        payload=frame.payload,
        response={"status": "Accepted"},
        normalized=facts,
    )
    assert decode_envelope(encode_envelope(envelope)).payload == frame.payload


KEYS = st.sampled_from(
    [
        "connectorId",
        "meterValue",
        "sampledValue",
        "idTag",
        "chargePointVendor",
        "evseId",
        "ocppCSMSURL",
        "V2XChargingParameters",
        "SoC",
        "transactionId",
        "a",
        "",
        "ABC",
        "x_y",
        "soCLimitReached",
        "unitOfMeasure",
    ]
) | st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(JSON)
def test_cached_snake_case_matches_the_library(data: Any) -> None:
    assert to_snake_case(data) == camel_to_snake_case(data)


def library_response(result: Any) -> dict[str, Any]:
    return dict(
        json.loads(json.dumps(snake_to_camel_case(remove_nones(serialize_as_dict(result)))))
    )


RESULTS: list[Any] = [
    cr16.BootNotification(current_time=NOW, interval=300, status=RegistrationStatus.accepted),
    cr16.Heartbeat(current_time=NOW),
    cr16.StatusNotification(),
    cr16.MeterValues(),
    cr16.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)),
    cr16.Authorize(
        id_tag_info=IdTagInfo(
            status=AuthorizationStatus.blocked, parent_id_tag="P", expiry_date=NOW
        )
    ),
    cr16.StartTransaction(
        transaction_id=7,
        id_tag_info=IdTagInfo(status=AuthorizationStatus.concurrent_tx, parent_id_tag="G"),
    ),
    cr16.StopTransaction(),
    cr16.StopTransaction(id_tag_info=IdTagInfo(status=AuthorizationStatus.invalid)),
    cr16.DataTransfer(status=DataTransferStatus.unknown_vendor_id),
    cr16.DataTransfer(status=DataTransferStatus.accepted, data="x"),
    cr16.DiagnosticsStatusNotification(),
    cr16.FirmwareStatusNotification(),
    cr201.BootNotification(
        current_time=NOW, interval=60, status=RegistrationStatusEnumType.accepted
    ),
    cr201.Heartbeat(current_time=NOW),
    cr201.Authorize(
        id_token_info=IdTokenInfoType(
            status=AuthorizationStatusEnumType.accepted,
            cache_expiry_date_time=NOW,
            group_id_token=IdTokenType(id_token="G", type=IdTokenEnumType.central),
        )
    ),
    cr201.TransactionEvent(),
    cr201.TransactionEvent(
        id_token_info=IdTokenInfoType(status=AuthorizationStatusEnumType.concurrent_tx)
    ),
    cr201.MeterValues(),
    cr201.NotifyEvent(),
    cr201.NotifyReport(),
    cr201.NotifyEVChargingNeeds(status=NotifyEVChargingNeedsStatusEnumType.processing),
    cr201.SecurityEventNotification(),
    cr201.FirmwareStatusNotification(),
    cr201.LogStatusNotification(),
    cr201.DataTransfer(status="Accepted", data={"nested_key": [1, None, {"b": None}]}),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_response_payload_matches_the_library(result: Any) -> None:
    ours = response_payload(result)
    assert ours == library_response(result)
    assert json.dumps(ours) == json.dumps(library_response(result))
    assert all(type(v) in (str, int, float, bool, dict, list) for v in ours.values())


@pytest.mark.parametrize(
    "uid", ["\x1f\x1f\U00010000\U00010000\U00010000", "é" * 36, "a", "\U0001f4a5" * 36]
)
def test_too_deep_frames_keep_escaped_ids(uid: str) -> None:
    text = "[2," + json.dumps(uid) + ',"DataTransfer",' + nested_text(100) + "]"
    frame = framing.parse_frame(text)
    assert isinstance(frame, framing.FrameError)
    assert frame.unique_id == uid
    assert framing.recover_unique_id("[2," + json.dumps(uid + "x" * (37 - len(uid))) + ",") == "-1"
