"""Readable (console) or JSON logs for every chargeflow process, stdlib and structlog alike.

What every line gets, in both formats:

* a full ISO 8601 timestamp in UTC (``2026-12-02T02:42:21.123456Z``);
* tracebacks without local variables (a frame's locals hold request headers, API
  keys and database URLs): JSON carries them as structured frames
  (``exception``), the console as plain Python tracebacks;
* redaction as a second line of defence: values under secret-named keys are masked,
  and secret patterns (API keys, ``Bearer``/``Basic`` credentials, passwords in
  URLs and conninfo strings, Stripe keys) are masked inside every string, in
  structlog events, in records of other libraries (uvicorn, psycopg, alembic,
  websockets, aiomqtt) and in the rendered line including its traceback.

librdkafka logs through the Python logger :data:`KAFKA_LOGGER_NAME` (pass
:func:`kafka_logger` as the ``logger`` config of every confluent-kafka client),
rate-limited by :class:`RepeatFilter` so an unreachable broker cannot flood the log.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"
KAFKA_LOGGER_NAME = "librdkafka"

# Keys whose (text) value is a secret as a whole, matched as substrings of the
# lower-cased key. URLs and DSNs are not here: only their credentials are masked
# (by the text patterns), the host and database stay readable.
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "cookie",
    "credential",
    "private_key",
)

# A value never spans a quote, a backslash or whitespace, so masking inside a
# rendered JSON line keeps it valid JSON.
_VALUE = r"[^\s\"'\\]"
_STRUCTURAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Our API keys: cf_<key_id>_<secret>; the key id alone is safe to show.
    (re.compile(r"\bcf_([0-9a-f]{16})_[A-Za-z0-9_\-]+"), rf"cf_\1_{MASK}"),
    (re.compile(r"\bcf_(?![0-9a-f]{16}_\*\*\*)[A-Za-z0-9_\-]{6,}"), f"cf_{MASK}"),
    (re.compile(r"\b(Bearer)\s+(?>[A-Za-z0-9+/._~\-]{8,}=*)(?!\*)", re.IGNORECASE), rf"\1 {MASK}"),
    # base64(user:password); an English word after "Basic" is left alone.
    (re.compile(r"\b(Basic)\s+(?=[a-z]*[A-Z0-9+/=])[A-Za-z0-9+/]{8,}=*"), rf"\1 {MASK}"),
    # scheme://user:password@host (database, MQTT, Kafka URLs).
    (
        re.compile(rf"\b([a-z][a-z0-9+.\-]*://[^\s:/@\"'\\]*):{_VALUE}+@", re.IGNORECASE),
        rf"\1:{MASK}@",
    ),
    # Stripe secret and restricted keys, webhook signing secrets.
    (re.compile(r"\b(sk_live|sk_test|rk_live|rk_test|whsec)_[A-Za-z0-9]+"), rf"\1_{MASK}"),
)
# password=..., "token": "...", api_key: ... (conninfo strings, repr'd dicts, rendered
# key=value pairs). Values already masked and plain booleans/None are left alone.
_KEYED_PATTERN = (
    re.compile(
        r"(?i)\b([\w\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|authorization)"
        r"[\w\-]*)(['\"]?\s*[=:]\s*['\"]?)(?!\*\*\*)"
        rf"(?!(?:true|false|none|null)(?!{_VALUE}))(?:(?:Bearer|Basic)\s+)?{_VALUE}+"
    ),
    rf"\1\2{MASK}",
)


def redact_text(text: str, *, keyed: bool = True) -> str:
    """``text`` with every secret pattern masked (``keyed=False``: all but
    ``name=value`` pairs, which would break the syntax of a rendered JSON line).

    >>> redact_text("key cf_0123456789abcdef_Zm9vYmFyYmF6cXV4 refused")
    'key cf_0123456789abcdef_*** refused'
    >>> redact_text("Authorization: Bearer abc.def-123")
    'Authorization: ***'
    >>> redact_text("connect postgresql://app:s3cr3t@db:5432/chargeflow")
    'connect postgresql://app:***@db:5432/chargeflow'
    >>> redact_text("mqtt://meter:pa%40ss@broker:1883 down")
    'mqtt://meter:***@broker:1883 down'
    >>> redact_text("host=db user=app password=s3cr3t dbname=x")
    'host=db user=app password=*** dbname=x'
    >>> redact_text("stripe sk_live_51Habc and whsec_XyZ123")
    'stripe sk_live_*** and whsec_***'
    >>> redact_text('{"api_key": "k-123", "url": "redis://h:6379/0"}')
    '{"api_key": "***", "url": "redis://h:6379/0"}'
    >>> redact_text("a plain line about Basic authentication, has_password=False")
    'a plain line about Basic authentication, has_password=False'
    >>> redact_text("Authorization: Basic U0lNLTAwMDE6cGFzc3dvcmQ=")
    'Authorization: ***'
    >>> redact_text('WWW-Authenticate: Bearer realm="chargeflow"')
    'WWW-Authenticate: Bearer realm="chargeflow"'
    """
    for pattern, replacement in _STRUCTURAL_PATTERNS:
        text = pattern.sub(replacement, text)
    if keyed:
        text = _KEYED_PATTERN[0].sub(_KEYED_PATTERN[1], text)
    return text


def is_secret_key(key: object) -> bool:
    """Whether a value stored under ``key`` is a secret as a whole.

    >>> is_secret_key("Authorization"), is_secret_key("station_password")
    (True, True)
    >>> is_secret_key("database_url"), is_secret_key("charge_point_id")
    (False, False)
    """
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_value(value: Any, key: object = None) -> Any:
    """``value`` with secrets masked: text and bytes under a secret-named key
    entirely, secret patterns inside any other text, recursively through dicts,
    lists and tuples. Other values (numbers, booleans, None) pass unchanged.

    >>> redact_value({"password": "hunter2hunter2", "ok": True, "has_password": False})
    {'password': '***', 'ok': True, 'has_password': False}
    >>> redact_value(["Bearer cf_0123456789abcdef_sec", 3])
    ['Bearer cf_0123456789abcdef_***', 3]
    >>> redact_value({"headers": [("x-api-key", b"cf_0123456789abcdef_s")]})
    {'headers': [('x-api-key', '***')]}
    """
    if isinstance(value, str | bytes):
        if key is not None and is_secret_key(key):
            return MASK
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        masked = redact_text(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {k: redact_value(v, k) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str | bytes):
        # A (name, value) pair: HTTP headers, Kafka headers.
        name = value[0] if isinstance(value[0], str) else value[0].decode("utf-8", "replace")
        return (value[0], redact_value(value[1], name))
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, key) for v in value)
    return value


def redact_event(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: :func:`redact_value` over every field of the event.

    >>> redact_event(None, "info", {"event": "login", "password": "x" * 20})
    {'event': 'login', 'password': '***'}
    """
    for key, value in list(event_dict.items()):
        if key.startswith("_") or key == "exc_info":
            continue  # structlog's own record plumbing; exc_info is rendered later
        event_dict[key] = redact_value(value, key)
    return event_dict


def _redacting(renderer: Callable[..., Any], *, keyed: bool) -> Processor:
    """The renderer, then the patterns over its whole output (tracebacks included)."""

    def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        return redact_text(str(renderer(logger, method, event_dict)), keyed=keyed)

    return render


def plain_traceback_without_locals(sio: TextIO, exc_info: Any) -> None:
    """Python's own traceback layout; no local variables, no source beyond the line."""
    structlog.dev.plain_traceback(sio, exc_info)


# ---------------------------------------------------------------- librdkafka


class RepeatFilter(logging.Filter):
    """Lets ``burst`` similar records through per ``interval_s`` and drops the rest;
    the first record let through after a suppression says how many were dropped.

    "Similar" means same logger, level and message with digits ignored (ports,
    counters and millisecond figures change between otherwise identical lines).
    """

    def __init__(
        self, burst: int = 5, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # similarity key -> [window start, records in window, suppressed so far]
        self._windows: dict[tuple[str, int, str], list[float]] = {}

    @staticmethod
    def similarity_key(record: logging.LogRecord) -> tuple[str, int, str]:
        return record.name, record.levelno, re.sub(r"\d+", "#", record.getMessage())

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.similarity_key(record)
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.interval_s:
                suppressed = int(window[2]) if window is not None else 0
                self._windows[key] = [now, 1, 0]
                if len(self._windows) > 1000:  # forget windows long past
                    self._forget_before(now - self.interval_s)
            elif window[1] < self.burst:
                window[1] += 1
                suppressed = 0
            else:
                window[2] += 1
                return False
        if suppressed:
            record.msg = f"{record.getMessage()} ({suppressed} similar lines suppressed)"
            record.args = ()
            record.suppressed = suppressed
        return True

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, w in self._windows.items() if w[0] < cutoff and not w[2]]:
            del self._windows[key]


def kafka_logger() -> logging.Logger:
    """The logger to pass as ``"logger"`` in every confluent-kafka client config.

    librdkafka's lines then go through the process's log configuration (format,
    redaction, rate limit) instead of straight to stderr. The client hands them
    over on ``poll()``/``consume()``/``flush()``.
    """
    logger = logging.getLogger(KAFKA_LOGGER_NAME)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger


def with_kafka_logger(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with :func:`kafka_logger` as its ``logger`` (unless one is set)."""
    return {"logger": kafka_logger(), **config}


# ---------------------------------------------------------------- configuration


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("chargeflow").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("chargeflow").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def build_formatter(fmt: str = "console", *, colors: bool = False) -> logging.Formatter:
    """The formatter every handler of a chargeflow process uses (``console``/``json``)."""
    shared = _shared_processors()
    if fmt == "json":
        final: list[Processor] = [
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact_event,
            _redacting(structlog.processors.JSONRenderer(), keyed=False),
        ]
    elif fmt == "console":
        final = [
            redact_event,
            _redacting(
                structlog.dev.ConsoleRenderer(
                    colors=colors, exception_formatter=plain_traceback_without_locals
                ),
                keyed=True,
            ),
        ]
    else:
        raise ValueError(f"log format must be console or json, got {fmt!r}")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "INFO", fmt: str = "console", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging (every library) through one handler on
    ``stream`` (stderr) in ``fmt``; uncaught exceptions (main and other threads) are
    logged the same way."""
    out = stream if stream is not None else sys.stderr
    formatter = build_formatter(fmt, colors=fmt == "console" and out.isatty())
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that install handlers of their own (uvicorn's default log config does)
    # would print past the redaction and formats above: their records go to the root.
    for owned in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        library_logger = logging.getLogger(owned)
        library_logger.handlers.clear()
        library_logger.propagate = True
    # Per-frame chatter from the protocol libraries is noise at INFO
    # (the ocpp library logs every frame at INFO through the per-station loggers).
    for noisy in (
        "websockets",
        "ocpp",
        "chargeflow.gateway.ocpp",
        "chargeflow.simulator.ocpp",
        "uvicorn.access",
        "alembic.runtime.migration",
        "alembic.runtime.plugins",  # "setup plugin ..." once per process, when first imported
        # httpx logs every request's URL at INFO: a webhook URL can carry a token.
        "httpx",
        "httpcore",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    kafka_logger()
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
