"""Child processes of the local stack: started in their own process groups, output
prefixed with their name, stopped in order (SIGINT, then SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread = field(repr=False)


class Supervisor:
    def __init__(self, out: IO[str] | None = None) -> None:
        self.children: list[Child] = []
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self._width = 10

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: the terminal's Ctrl-C reaches only the launcher,
            # which then stops the children in a known order.
            start_new_session=True,
        )
        pump = threading.Thread(target=self._pump, args=(name, process), daemon=True)
        child = Child(name, process, pump)
        self.children.append(child)
        self._width = max(self._width, len(name))
        pump.start()
        return child

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                print(f"{name:<{self._width}} | {line}", file=self._out, flush=True)

    def exited(self) -> Child | None:
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop children in reverse start order; escalate per child if it lingers."""
        for child in reversed(self.children):
            _stop_group(child.process, grace)
        for child in self.children:
            child.pump.join(timeout=2)


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (grace if sig != signal.SIGKILL else 5)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    # Reap anything the child left behind in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
