"""Bytewax recovery directories for the flows the launcher runs.

``ensure_recovery_dir(path, partitions)`` creates ``path`` with ``partitions``
empty recovery partitions (what ``python -m bytewax.recovery DIR N`` does) unless
it already holds them, so a restart reuses the stored state and input offsets.
Bytewax panics when asked to create partitions that exist, and a directory with a
different or incomplete set of partitions cannot be resumed safely: that raises
:class:`RecoveryDirError` instead of guessing.

Then run a flow with recovery::

    python -m flows.run MODULE:FLOW -r DIR -s SNAPSHOT_SECS -b BACKUP_SECS

(``-b 0`` keeps no old snapshots; a backup interval only matters when the
recovery files are copied off the machine while the flow runs.)
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

from bytewax.recovery import init_db_dir

_PART_FILE = re.compile(r"part-(\d+)\.sqlite3")


class RecoveryDirError(RuntimeError):
    """A recovery directory that cannot be used as asked."""


def _part_meta(file: Path) -> tuple[int, int]:
    """(part_index, part_count) stored in one partition file."""
    try:
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT part_index, part_count FROM parts").fetchone()
    except sqlite3.Error as exc:
        raise RecoveryDirError(f"{file} is not a Bytewax recovery partition: {exc}") from exc
    if row is None:
        raise RecoveryDirError(f"{file} is not an initialised recovery partition")
    return int(row[0]), int(row[1])


def recovery_partitions(path: Path) -> int:
    """How many partitions ``path`` holds (0 if none); checks they form a complete set."""
    if not path.exists():
        return 0
    files = [f for f in path.iterdir() if _PART_FILE.fullmatch(f.name)]
    if not files:
        return 0
    metas = {_part_meta(f) for f in files}
    counts = {count for _, count in metas}
    if len(counts) != 1:
        raise RecoveryDirError(f"{path} mixes partition sets of sizes {sorted(counts)}")
    [count] = counts
    indices = {index for index, _ in metas}
    if indices != set(range(count)):
        missing = sorted(set(range(count)) - indices)
        raise RecoveryDirError(f"{path} is missing recovery partitions {missing} of {count}")
    return count


def ensure_recovery_dir(path: Path | str, partitions: int = 1) -> Path:
    """Create ``path`` with ``partitions`` recovery partitions, or check the existing ones.

    Idempotent: a directory that already holds exactly ``partitions`` partitions is
    left as it is (its snapshots are what a restart resumes from). A directory
    holding a different number raises :class:`RecoveryDirError`; the partition
    count is fixed for the life of the recovery data (the worker count is not).
    """
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    path = Path(path)
    existing = recovery_partitions(path)
    if existing == partitions:
        return path
    if existing:
        raise RecoveryDirError(
            f"{path} holds {existing} recovery partitions, not {partitions}; keep the old "
            "count or move the directory away (that forgets the flow's state and offsets)"
        )
    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, partitions)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.recovery DIR [PARTITIONS]``: idempotent ``bytewax.recovery``."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m flows.recovery DIR [PARTITIONS]", file=sys.stderr)
        return 2
    try:
        ensure_recovery_dir(Path(args[0]), int(args[1]) if len(args) > 1 else 1)
    except (RecoveryDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
