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

A cluster whose processes each have a volume of their own (a Kubernetes StatefulSet's
PVCs, one compose volume per process) must not give two processes copies of the same
partition: Bytewax uses one copy and a later run may pick the other, stale one.
``ensure_process_partitions(path, partitions, process_id, processes)`` creates only the
partitions process ``process_id`` owns (index ``% processes == process_id``); together
the processes hold the whole set once (``python -m flows.recovery DIR PARTITIONS
--process I --processes N``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import sys
import tempfile
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


def owned_partitions(partitions: int, process_id: int, processes: int) -> list[int]:
    """The recovery partitions process ``process_id`` of ``processes`` keeps.

    >>> owned_partitions(4, 1, 2), owned_partitions(2, 0, 2), owned_partitions(3, 1, 2)
    ([1, 3], [0], [1])
    """
    if processes < 1 or not 0 <= process_id < processes:
        raise ValueError(f"process id {process_id} is not one of {processes} processes")
    if partitions < processes:
        raise ValueError(
            f"{partitions} recovery partitions for {processes} processes: some process "
            "would hold none; use at least as many partitions as processes"
        )
    return [p for p in range(partitions) if p % processes == process_id]


def _local_partitions(path: Path) -> dict[int, int]:
    """index -> part_count of the partition files in ``path``."""
    if not path.exists():
        return {}
    metas = [_part_meta(f) for f in path.iterdir() if _PART_FILE.fullmatch(f.name)]
    return dict(metas)


def ensure_process_partitions(
    path: Path | str, partitions: int, process_id: int, processes: int
) -> Path:
    """Create the partitions of one process of a cluster in ``path`` (its own volume),
    or check that ``path`` holds exactly those, of a set of ``partitions``."""
    path = Path(path)
    owned = owned_partitions(partitions, process_id, processes)
    existing = _local_partitions(path)
    if existing:
        counts = set(existing.values())
        if counts != {partitions} or sorted(existing) != owned:
            raise RecoveryDirError(
                f"{path} holds partitions {sorted(existing)} of {sorted(counts)}, not "
                f"{owned} of {partitions} (process {process_id} of {processes}); keep the "
                "old partition and process counts or move the partitions as they belong"
            )
        return path
    path.mkdir(parents=True, exist_ok=True)
    # init_db_dir makes the whole set; the process keeps its share, created beside the
    # target so the move stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=path, prefix=".init-") as scratch:
        init_db_dir(Path(scratch), partitions)
        for index in owned:
            name = f"part-{index}.sqlite3"
            shutil.move(str(Path(scratch) / name), path / name)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.recovery DIR [PARTITIONS] [--process I --processes N]``:
    idempotent ``bytewax.recovery``; with ``--process``, one cluster process's share."""
    parser = argparse.ArgumentParser(prog="python -m flows.recovery")
    parser.add_argument("directory", type=Path)
    parser.add_argument("partitions", type=int, nargs="?", default=1)
    parser.add_argument("--process", type=int, default=None, help="this process's id")
    parser.add_argument("--processes", type=int, default=None, help="processes in the cluster")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if (args.process is None) != (args.processes is None):
        parser.error("--process and --processes go together")
    try:
        if args.process is None:
            ensure_recovery_dir(args.directory, args.partitions)
        else:
            ensure_process_partitions(args.directory, args.partitions, args.process, args.processes)
    except (RecoveryDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
