"""The webhooks worker's pure parts: signatures (and the receiver snippet in
docs/webhooks.md), the retry schedule, endpoint filters, request headers, what an
attempt's error says, reading the alerts topic, and the endpoint settings."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from bus.alerts import AlertKind, FaultAlert, Severity, encode_fault_alert
from chargeflow.launcher import LocalStack, banner
from chargeflow.settings import Settings
from notify.config import WebhooksConfig
from notify.policy import (
    AlertMessageError,
    Endpoint,
    RetryPolicy,
    delivery_id,
    endpoints_for,
    exception_error,
    read_alert_message,
    request_headers,
)
from notify.settings import WebhooksSettings
from notify.signing import SignatureError, sign, verify_signature
from runtime.settings import SettingsError
from store.alerts import version_key
from tests.support.paths import ROOT
from tests.support.webhooks import fault_alert

SECRET = "unit-secret-0123456789abcdef"
BODY = b'{"alert_id":"a1","severity":"high"}'
T = 1_800_000_000


# ------------------------------------------------------------------ signatures


def test_a_signature_verifies_over_the_exact_body_and_secret() -> None:
    header = sign(SECRET, BODY, timestamp=T)
    verify_signature(SECRET, header, BODY, tolerance=300, now=T + 299)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, header, BODY.replace(b"high", b"low"), now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET + "x", header, BODY, now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, header, BODY + b" ", now=T)  # not re-serialised JSON: bytes


def test_a_tampered_timestamp_or_signature_is_rejected() -> None:
    header = sign(SECRET, BODY, timestamp=T)
    moved = header.replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, moved, BODY, now=T)
    flipped = header[:-1] + ("0" if header[-1] != "0" else "1")
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, flipped, BODY, now=T)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_a_stale_or_future_timestamp_is_rejected(skew: int) -> None:
    header = sign(SECRET, BODY, timestamp=T)
    with pytest.raises(SignatureError, match="outside the tolerance"):
        verify_signature(SECRET, header, BODY, tolerance=300, now=T + skew)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Chargeflow-Signature header"),
        ("", "no Chargeflow-Signature header"),
        ("v1=abc", "no timestamp"),
        (f"t={T}", "no v1 signature"),
        ("t=soon,v1=abc", "not an integer"),
        (f"t={T},v0=abc", "no v1 signature"),
    ],
)
def test_a_malformed_header_says_why(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(SECRET, header, BODY, now=T)


def test_any_of_several_v1_signatures_may_match() -> None:
    """Receivers rotating secrets: a header with an old and a new signature."""
    new = sign(SECRET, BODY, timestamp=T).split("v1=")[1]
    verify_signature(SECRET, f"t={T},v1={'0' * 64},v1={new}", BODY, now=T)


def _doc_verify() -> Callable[..., bool]:
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


def test_the_receiver_snippet_in_the_docs_agrees_with_the_signer() -> None:
    import time

    verify = _doc_verify()
    now = int(time.time())
    header = sign(SECRET, BODY, timestamp=now)
    assert verify(SECRET, header, BODY)
    assert not verify(SECRET, header, BODY + b"x")
    assert not verify("other-secret-0123456789", header, BODY)
    assert not verify(SECRET, sign(SECRET, BODY, timestamp=now - 301), BODY)
    assert not verify(SECRET, "t=,v1=", BODY)


def test_the_example_request_in_the_docs_is_signed_correctly() -> None:
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    header = re.search(r"Chargeflow-Signature: (t=\d+,v1=[0-9a-f]{64})", doc)
    body = re.search(r"\n\n(\{\"alert_id\".*?\"schema_version\":1\})\n```", doc, re.DOTALL)
    assert header is not None
    assert body is not None
    raw = body.group(1).replace("\n ", "").encode()
    timestamp = int(header.group(1).split(",")[0][2:])
    verify_signature("example-secret-0123456789", header.group(1), raw, now=timestamp)


# ---------------------------------------------------------------- retry schedule


def test_the_backoff_doubles_from_the_base_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=10.0, max_s=60.0)
    assert [policy.backoff.base(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 60.0, 60.0]
    rng = random.Random(7)
    for failures in range(1, 8):
        delay = policy.next_delay(failures, rng)
        assert delay is not None
        base = policy.backoff.base(failures)
        assert 0.5 * base <= delay <= base
    assert policy.next_delay(8) is None  # the last allowed try failed: dead
    assert RetryPolicy(max_attempts=1).next_delay(1) is None


def test_jitter_spreads_receivers_that_failed_together() -> None:
    policy = RetryPolicy(base_s=10.0, max_s=3600.0)
    rng = random.Random(3)
    delays = {round(policy.next_delay(3, rng) or 0, 3) for _ in range(20)}
    assert len(delays) > 10


def test_a_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# ----------------------------------------------------------- filters and headers


def test_endpoint_filters_on_kind_and_minimum_severity() -> None:
    every = Endpoint("every", "http://h/1", SECRET)
    heat = Endpoint(
        "heat", "http://h/2", SECRET, kinds=frozenset({AlertKind.CONNECTOR_OVERHEATING})
    )
    urgent = Endpoint("urgent", "http://h/3", SECRET, min_severity=Severity.HIGH)
    both = Endpoint(
        "both",
        "http://h/4",
        SECRET,
        kinds=frozenset({AlertKind.GROUND_FAULT}),
        min_severity=Severity.CRITICAL,
    )
    endpoints = [every, heat, urgent, both]

    def names(alert: FaultAlert) -> list[str]:
        return [e.name for e in endpoints_for(alert, endpoints)]

    assert names(fault_alert(severity=Severity.MEDIUM)) == ["every", "heat"]
    assert names(fault_alert(severity=Severity.HIGH)) == ["every", "heat", "urgent"]
    ground = fault_alert(kind=AlertKind.GROUND_FAULT, severity=Severity.HIGH)
    assert names(ground) == ["every", "urgent"]
    critical = fault_alert(kind=AlertKind.GROUND_FAULT, severity=Severity.CRITICAL)
    assert names(critical) == ["every", "urgent", "both"]


def test_the_delivery_id_is_stable_per_endpoint_and_version() -> None:
    first, later = fault_alert(), fault_alert(minutes=5)
    a = delivery_id("ops", first.alert_id, version_key(first))
    assert a == delivery_id("ops", first.alert_id, version_key(first))
    assert a != delivery_id("ops", later.alert_id, version_key(later))
    assert a != delivery_id("pager", first.alert_id, version_key(first))
    assert re.fullmatch(r"whd_[0-9a-f]{32}", a)


def test_request_headers_sign_the_body_and_name_the_delivery() -> None:
    endpoint = Endpoint("ops", "http://h/x", SECRET)
    body = encode_fault_alert(fault_alert())
    headers = request_headers(endpoint, body, delivery="whd_1", attempt=3, timestamp=T)
    verify_signature(SECRET, headers["Chargeflow-Signature"], body, now=T)
    assert headers["Content-Type"] == "application/json"
    assert headers["Chargeflow-Delivery"] == "whd_1"
    assert headers["Chargeflow-Attempt"] == "3"
    assert SECRET not in repr(endpoint)
    assert all(SECRET not in v for v in headers.values())


def test_an_attempt_error_never_carries_the_secret_or_the_url() -> None:
    endpoint = Endpoint("ops", "https://hooks.example/T0K3N", SECRET)
    error = exception_error(
        ConnectionError(f"failed for https://hooks.example/T0K3N with {SECRET}"), endpoint
    )
    assert SECRET not in error
    assert "T0K3N" not in error
    assert error == "ConnectionError: failed for <ops> with ***"
    assert len(exception_error(OSError("x" * 5000), endpoint)) == 500


# ---------------------------------------------------------------- the topic


def test_reading_the_alerts_topic() -> None:
    alert = fault_alert()
    assert read_alert_message(encode_fault_alert(alert)) == alert
    assert read_alert_message(b'{"kind": "security.alert", "payload": {}}') is None
    assert read_alert_message(b'{"payload": {}}') is None
    for bad, reason in [
        (b"{not json", "not valid JSON"),
        (None, "not valid JSON"),
        (b'{"kind": "fault.alert", "alert_id": 3}', "does not match schema"),
        (
            encode_fault_alert(alert).replace(b'"schema_version":1', b'"schema_version":9'),
            "newer than supported",
        ),
    ]:
        with pytest.raises(AlertMessageError, match=reason):
            read_alert_message(bad)


# ---------------------------------------------------------------- settings


def _json(*endpoints: dict[str, Any]) -> str:
    return json.dumps(list(endpoints))


def _load(monkeypatch: pytest.MonkeyPatch, endpoints: str, **env: str) -> WebhooksConfig:
    monkeypatch.setenv("CHARGEFLOW_WEBHOOKS_ENDPOINTS", endpoints)
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://u:pw@h/d")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config: WebhooksConfig = WebhooksSettings.load().config()
    return config


def test_endpoints_come_from_one_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load(
        monkeypatch,
        _json(
            {"name": "ops", "url": "https://ops.example/h", "secret": SECRET},
            {
                "name": "pager",
                "url": "http://127.0.0.1:9/p",
                "secret": SECRET,
                "kinds": ["ground_fault"],
                "min_severity": "critical",
            },
        ),
        CHARGEFLOW_WEBHOOKS_MAX_ATTEMPTS="3",
    )
    ops, pager = config.endpoints
    assert (ops.name, ops.url, ops.secret, ops.kinds, ops.min_severity) == (
        "ops",
        "https://ops.example/h",
        SECRET,
        None,
        None,
    )
    assert pager.kinds == frozenset({AlertKind.GROUND_FAULT})
    assert pager.min_severity is Severity.CRITICAL
    assert config.retry.max_attempts == 3
    assert SECRET not in repr(config)
    assert SECRET not in repr(WebhooksSettings.load())


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ('[{"name": "a", "url": "http://h/x", "secret": "short-one"}]', r"\[0\]\.secret: "),
        ('[{"name": "a", "url": "http://h/x", "secret": 1234567890123456789}]', r"\.secret"),
        (_json({"name": "a", "url": "ftp://h/x", "secret": SECRET}), r"\[0\]\.url: "),
        (
            _json({"name": "a", "url": "https://u:pw@h/x", "secret": SECRET}),
            "must not carry credentials",
        ),
        (_json({"name": "a b", "url": "http://h/x", "secret": SECRET}), r"\.name"),
        (_json({"name": "a", "url": "http://h/x", "secret": SECRET})[:-2], "not valid JSON"),
        (
            _json({"name": "a", "url": "http://h/x", "secret": SECRET, "kinds": ["hot"]}),
            r"\.kinds\[0\]",
        ),
        (
            _json(
                {"name": "a", "url": "http://h/1", "secret": SECRET},
                {"name": "a", "url": "http://h/2", "secret": SECRET},
            ),
            "names must be unique",
        ),
    ],
)
def test_a_bad_endpoint_is_one_line_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, endpoints: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        _load(monkeypatch, endpoints)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith("CHARGEFLOW_WEBHOOKS_ENDPOINTS") or "unique" in text
    for secret in (SECRET, "short-one", "1234567890123456789", "pw@"):
        assert secret not in text


def test_the_banner_names_the_webhooks_worker_only_with_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = LocalStack(Settings(), bootstrap="127.0.0.1:1", database_url="postgresql://x@h/d")
    assert "webhooks" not in banner(stack, "cf_key")
    monkeypatch.setenv(
        "CHARGEFLOW_WEBHOOKS_ENDPOINTS",
        _json({"name": "ops", "url": "http://127.0.0.1:9/h", "secret": SECRET}),
    )
    text = banner(LocalStack(Settings(), bootstrap="127.0.0.1:1", database_url="x"), "cf_key")
    line = next(line for line in text.splitlines() if line.strip().startswith("webhooks"))
    assert "ops" in line
    assert ":9103/healthz  /metrics" in line
    assert SECRET not in text
