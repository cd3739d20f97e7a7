"""flows.recovery.ensure_recovery_dir: idempotent, refuses a directory it cannot resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.recovery import RecoveryDirError, ensure_recovery_dir, main, recovery_partitions


def test_creates_partitions_once_and_reuses_them(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions"
    assert ensure_recovery_dir(path, 2) == path
    parts = sorted(path.glob("part-*.sqlite3"))
    assert [p.name for p in parts] == ["part-0.sqlite3", "part-1.sqlite3"]
    content = [p.read_bytes() for p in parts]
    ensure_recovery_dir(path, 2)  # a restart: left as it is
    assert [p.read_bytes() for p in parts] == content
    assert recovery_partitions(path) == 2
    assert main([str(path), "2"]) == 0


def test_refuses_another_partition_count_or_an_incomplete_set(tmp_path: Path) -> None:
    ensure_recovery_dir(tmp_path / "a", 2)
    with pytest.raises(RecoveryDirError, match="holds 2 recovery partitions, not 3"):
        ensure_recovery_dir(tmp_path / "a", 3)
    assert main([str(tmp_path / "a"), "3"]) == 1
    (tmp_path / "a" / "part-1.sqlite3").unlink()
    with pytest.raises(RecoveryDirError, match="missing recovery partitions"):
        ensure_recovery_dir(tmp_path / "a", 2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "part-0.sqlite3").write_bytes(b"not sqlite")
    with pytest.raises(RecoveryDirError):
        ensure_recovery_dir(tmp_path / "b", 1)
