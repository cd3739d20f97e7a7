"""flows.recovery.ensure_recovery_dir: idempotent, refuses a directory it cannot resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.recovery import (
    RecoveryDirError,
    ensure_process_partitions,
    ensure_recovery_dir,
    main,
    recovery_partitions,
)


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


def test_a_cluster_process_keeps_only_its_share(tmp_path: Path) -> None:
    dirs = [ensure_process_partitions(tmp_path / f"p{i}", 4, i, 2) for i in range(2)]
    assert sorted(p.name for p in dirs[0].iterdir()) == ["part-0.sqlite3", "part-2.sqlite3"]
    assert sorted(p.name for p in dirs[1].iterdir()) == ["part-1.sqlite3", "part-3.sqlite3"]
    content = (dirs[1] / "part-3.sqlite3").read_bytes()
    ensure_process_partitions(dirs[1], 4, 1, 2)  # a restart: left as it is
    assert (dirs[1] / "part-3.sqlite3").read_bytes() == content
    assert main([str(tmp_path / "p1"), "4", "--process", "1", "--processes", "2"]) == 0


def test_a_cluster_process_refuses_another_share(tmp_path: Path) -> None:
    ensure_process_partitions(tmp_path / "p0", 2, 0, 2)
    with pytest.raises(RecoveryDirError, match=r"holds partitions \[0\] of \[2\], not \[1\]"):
        ensure_process_partitions(tmp_path / "p0", 2, 1, 2)
    with pytest.raises(RecoveryDirError, match="not \\[0, 2\\] of 4"):
        ensure_process_partitions(tmp_path / "p0", 4, 0, 2)
    assert main([str(tmp_path / "p0"), "2", "--process", "1", "--processes", "2"]) == 1
    with pytest.raises(ValueError, match="at least as many partitions as processes"):
        ensure_process_partitions(tmp_path / "q", 1, 0, 2)
    with pytest.raises(ValueError, match="not one of 2 processes"):
        ensure_process_partitions(tmp_path / "q", 2, 2, 2)
    assert not (tmp_path / "q").exists()
