"""``python -m flows.run MODULE:FLOW [bytewax.run options]``.

Exactly ``python -m bytewax.run`` (same options: ``-w``, ``-i``, ``-a``, ``-r``,
``-s``, ``-b``), plus the process's log configuration (``CHARGEFLOW_LOG_LEVEL``,
``CHARGEFLOW_LOG_FORMAT``, as every chargeflow process) and a clean stop: SIGINT or
SIGTERM ends the dataflow, logs one line and the process exits 0. Bytewax itself
turns a signal into a KeyboardInterrupt inside its Rust runtime, which panics (a
message and, with ``RUST_BACKTRACE`` set, a full backtrace on stderr) and exits 1, so
a supervisor could not tell a stop from a crash. State not yet snapshotted is
recovered from the last epoch on the next start (sinks are idempotent).
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
from types import FrameType
from typing import TextIO

from bytewax.errors import BytewaxRuntimeError

from runtime.logs import configure_logging
from runtime.settings import LoggingSettings

log = logging.getLogger("chargeflow.flows")


class NativeStderrMute:
    """Points file descriptor 2 at /dev/null while Python's own writers (``sys.stderr``
    and the logging handlers on it) keep writing to the real stderr.

    Rust prints its panic report straight to fd 2; on a requested stop that report is
    the expected unwinding of the dataflow, not an error, so it is kept out of the log.
    """

    def __init__(self) -> None:
        self._saved_fd: int | None = None
        self._real: TextIO | None = None
        self._original: TextIO | None = None

    def mute(self) -> None:
        if self._saved_fd is not None:
            return
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self._original = sys.stderr
        self._real = open(self._saved_fd, "w", buffering=1, closefd=False)  # noqa: SIM115
        self._swap_streams(self._original, self._real)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def restore(self) -> None:
        if self._saved_fd is None or self._real is None or self._original is None:
            return
        self._real.flush()
        os.dup2(self._saved_fd, 2)
        self._swap_streams(self._real, self._original)
        self._real.close()
        os.close(self._saved_fd)
        self._saved_fd = None

    @staticmethod
    def _swap_streams(old: TextIO, new: TextIO) -> None:
        sys.stderr = new
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


def main() -> int:
    logging_settings = LoggingSettings.load()
    configure_logging(logging_settings.log_level, logging_settings.log_format)
    stop_signal: list[str] = []
    native_stderr = NativeStderrMute()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop_signal:
            stop_signal.append(signal.Signals(signum).name)
            native_stderr.mute()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.argv[0] = "bytewax.run"
    try:
        runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except (KeyboardInterrupt, BytewaxRuntimeError):
        native_stderr.restore()
        if not stop_signal:
            raise
        log.info("dataflow stopped on %s", stop_signal[0])
        return 0
    finally:
        native_stderr.restore()
    return 0


if __name__ == "__main__":
    sys.exit(main())
