"""``python -m flows.run MODULE:FLOW [bytewax.run options]``.

Exactly ``python -m bytewax.run`` (same options: ``-w``, ``-i``, ``-a``, ``-r``,
``-s``, ``-b``), plus a clean stop: SIGINT or SIGTERM ends the dataflow and the
process exits 0. Bytewax itself turns a signal into a KeyboardInterrupt inside
its Rust runtime and exits 1 with a traceback, which a supervisor cannot tell
from a crash. State not yet snapshotted is recovered from the last epoch on the
next start (sinks are idempotent).
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
from types import FrameType

from bytewax.errors import BytewaxRuntimeError

log = logging.getLogger("chargeflow.flows")


def main() -> int:
    # A stop makes Bytewax's Rust runtime panic on the KeyboardInterrupt; keep that
    # to one line instead of a full Rust backtrace (set RUST_BACKTRACE=1 to debug).
    os.environ.setdefault("RUST_BACKTRACE", "0")
    stop_signal: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_signal.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.argv[0] = "bytewax.run"
    try:
        runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except (KeyboardInterrupt, BytewaxRuntimeError):
        if not stop_signal:
            raise
        print(f"dataflow stopped on {stop_signal[0]}", file=sys.stderr, flush=True)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
