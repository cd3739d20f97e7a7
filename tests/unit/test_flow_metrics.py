"""flows.metrics: which port a flow process serves on (the rule, and the endpoint itself
with one process per container), and the input lag
from librdkafka's partition statistics (never negative)."""

from __future__ import annotations

import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from chargeflow.stack import free_port
from flows.metrics import endpoint_port, input_lag, process_id, serve
from flows.settings import FlowSettings
from runtime.settings import SettingsError


def _metrics_port(monkeypatch: pytest.MonkeyPatch, raw: str | None) -> int | None:
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://127.0.0.1/x")
    if raw is None:
        monkeypatch.delenv("CHARGEFLOW_FLOW_METRICS_PORT", raising=False)
    else:
        monkeypatch.setenv("CHARGEFLOW_FLOW_METRICS_PORT", raw)
    return FlowSettings.load(_env_file=None).flow_config().metrics_port


def test_metrics_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _metrics_port(monkeypatch, None) is None
    assert _metrics_port(monkeypatch, " ") is None
    assert _metrics_port(monkeypatch, "off") is None
    assert _metrics_port(monkeypatch, "0") == 0
    assert _metrics_port(monkeypatch, "9110") == 9110
    for bad in ("x", "-1", "65536"):
        with pytest.raises(SettingsError, match="CHARGEFLOW_FLOW_METRICS_PORT"):
            _metrics_port(monkeypatch, bad)


def test_each_process_of_a_flow_gets_its_own_port() -> None:
    argv = ["bytewax.run", "flows.sessions.dataflow:from_env()"]
    assert process_id(argv, {}) == 0
    assert process_id(argv, {"BYTEWAX_PROCESS_ID": "2"}) == 2
    assert process_id([*argv, "-i", "3", "-a", "h:1;h:2"], {"BYTEWAX_PROCESS_ID": "2"}) == 3
    assert process_id([*argv, "--process-id=1", "-r", "dir"], {}) == 1
    assert endpoint_port(9110, 0) == 9110
    assert endpoint_port(9110, 3) == 9113
    assert endpoint_port(0, 3) == 0  # a free port, whatever the process


def test_one_process_per_container_serves_on_the_setting_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CHARGEFLOW_FLOW_METRICS_PORT_PER_PROCESS=false (deploy/): process 2 of a cluster
    listens on the port as set, so one probe port fits every pod of a StatefulSet."""
    base = free_port()
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://127.0.0.1:9/x")
    monkeypatch.setenv("CHARGEFLOW_FLOW_METRICS_PORT", str(base))
    monkeypatch.setenv("CHARGEFLOW_FLOW_METRICS_PORT_PER_PROCESS", "false")
    config = FlowSettings.load(_env_file=None).flow_config()
    server = serve("chargeflow-test", config, ["t"], argv=["bytewax.run", "-i", "2"], environ={})
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{base}/livez", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_input_lag_from_partition_statistics() -> None:
    stats = {"hi_offset": 120, "lo_offset": 20}
    assert input_lag(stats, 100, OFFSET_BEGINNING) == 20
    assert input_lag(stats, 120, OFFSET_BEGINNING) == 0
    # Nothing read yet: from the start of the partition, or from its end.
    assert input_lag(stats, OFFSET_BEGINNING, OFFSET_BEGINNING) == 100
    assert input_lag(stats, OFFSET_END, OFFSET_END) == 0
    # The broker's end not known yet.
    assert input_lag({"hi_offset": -1001, "lo_offset": -1001}, 5, OFFSET_BEGINNING) is None


def test_input_lag_is_clamped_at_zero_when_the_high_watermark_lags_behind() -> None:
    # Tansu can report a high watermark below offsets already read.
    assert input_lag({"hi_offset": 90, "lo_offset": 0}, 100, OFFSET_BEGINNING) == 0
