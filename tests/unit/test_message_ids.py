"""Envelope ids: UUIDv7 (time-ordered, creation time inside), unique within a process,
across processes started at the same moment, and in a forked child."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from bus.envelope import new_message_id


def test_ids_are_uuid7_carrying_their_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(new_message_id())
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_are_unique_and_ordered_within_a_process() -> None:
    ids = [new_message_id() for _ in range(200_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 for i in ids)
    # Same millisecond or later: never goes back in time.
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps)


def test_ids_are_unique_across_processes_and_forks() -> None:
    code = (
        "from bus.envelope import new_message_id\n"
        "print('\\n'.join(new_message_id() for _ in range(20000)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = [line for p in procs for line in p.communicate()[0].split()]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: ids from the tag it drew after the fork
        os.write(write, "\n".join(new_message_id() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as child:
        ids += child.read().split()
    ids += [new_message_id() for _ in range(1000)]
    assert len(ids) == 4 * 20000 + 2000
    assert len(set(ids)) == len(ids)
