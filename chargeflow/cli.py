"""The ``chargeflow`` command: run the local stack or one process of it, and admin tasks."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import structlog
import typer

from chargeflow.settings import Settings
from dashboards.cli import app as dashboards_app
from runtime.logs import configure_logging
from runtime.settings import SettingsError, secret

if TYPE_CHECKING:
    from ingest.simulator.report import FleetReport
    from ingest.simulator.run import Simulation

# Errors never reach typer's traceback printer (main() turns them into one line);
# were one to, it must not show local variables (database URLs, passwords).
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
apikey_app = typer.Typer(no_args_is_help=True, help="API keys for callers of the HTTP API.")
station_app = typer.Typer(no_args_is_help=True, help="The charge point registry.")
idtag_app = typer.Typer(no_args_is_help=True, help="idTags (RFID cards, app tokens) of drivers.")
app.add_typer(apikey_app, name="apikey")
app.add_typer(station_app, name="station")
app.add_typer(idtag_app, name="idtag")
meter_app = typer.Typer(no_args_is_help=True, help="Smart meters (MQTT) and their connectors.")
app.add_typer(meter_app, name="meter")
tariff_app = typer.Typer(no_args_is_help=True, help="OCPI 2.2.1 tariffs: check and price them.")
app.add_typer(tariff_app, name="tariff")
app.add_typer(dashboards_app, name="dashboards")

ROLES = ("admin", "operator", "maintenance", "billing", "public")
T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = Settings.load()
    except SettingsError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _process_settings(load: Callable[[], T]) -> T:
    """A process's settings model (``Settings.gateway`` etc.), one line on an error."""
    try:
        return load()
    except SettingsError as exc:
        _fail(str(exc))


def _database_url(settings: Settings) -> str:
    """The database the way ``chargeflow run`` finds it: CHARGEFLOW_DATABASE_URL, else
    database CHARGEFLOW_DATABASE_NAME on the local server (127.0.0.1:5432), else on the
    embedded one under CHARGEFLOW_DATA_DIR (:func:`chargeflow.stack.open_database`)."""
    return secret(settings.database_url) or _found_database(
        settings.database_name, settings.data_dir
    )


@functools.cache
def _found_database(name: str, data_dir: Path) -> str:
    """A local or embedded database, migrated as ``chargeflow run`` migrates it; an
    embedded server stops when the command ends."""
    from chargeflow.stack import open_database
    from store.db import migrate

    server, url = open_database(None, name, data_dir)
    atexit.register(server.stop)
    migrate(url)
    return url


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise typer.BadParameter("CHARGEFLOW_KAFKA_BOOTSTRAP is not set (host:port of Kafka)")
    return settings.kafka_bootstrap


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def run() -> None:
    """Start the whole system: broker, database, gateway, flow, API and simulated stations."""
    from chargeflow.launcher import run as run_stack
    from chargeflow.settings_doc import unknown_variables

    settings = _settings()
    for name in unknown_variables(os.environ):
        structlog.get_logger("chargeflow.run").warning(
            "unknown setting, ignored (see docs/configuration.md)", variable=name
        )
    # Every process's settings, checked before anything starts.
    _process_settings(
        lambda: (
            settings.gateway,
            settings.api,
            settings.meters,
            settings.simulator,
            settings.webhooks,
        )
    )
    raise typer.Exit(run_stack(settings))


@app.command()
def migrate() -> None:
    """Apply database migrations (idempotent) and print the storage mode."""
    from store.db import migrate as apply

    mode = apply(_database_url(_settings()))
    typer.echo(f"schema at head; storage mode: {mode}")


@app.command()
def topics() -> None:
    """Create the Kafka topics that do not exist yet."""
    from bus.admin import ensure_topics

    settings = _settings()
    ensure_topics(_bootstrap(settings), settings.topics.all(), partitions=settings.topic_partitions)
    typer.echo("\n".join(settings.topics.all()))


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help=f"one of: {', '.join(ROLES)}")],
    name: Annotated[str, typer.Option(help="who or what uses the key")] = "cli",
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from store.api_keys import create_api_key

    if role not in ROLES:
        raise typer.BadParameter(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    typer.echo(create_api_key(_database_url(_settings()), name, role))


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (ids, names, roles; never the secrets)."""
    from store.api_keys import list_api_keys

    for key in list_api_keys(_database_url(_settings())):
        typer.echo(json.dumps(dataclasses.asdict(key), default=str))


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="the key id (or the whole key)", show_default=False)],
) -> None:
    """Revoke an API key by its id; the whole key is accepted but never echoed."""
    from store.api_keys import parse_api_key, revoke_api_key

    parsed = parse_api_key(key)
    key_id = parsed[0] if parsed is not None else key
    if not revoke_api_key(_database_url(_settings()), key_id):
        raise CliError(f"no active API key with id {key_id!r} (see: chargeflow apikey list)")
    typer.echo(f"revoked {key_id}")


@app.command("demo-seed")
def demo_seed(
    stations: Annotated[
        int | None,
        typer.Option(min=1, help="simulated charge points (default CHARGEFLOW_SIMULATED_STATIONS)"),
    ] = None,
) -> None:
    """Seed the demo that `chargeflow run` seeds (sites, tariff, simulated stations, id tags,
    smart meters) into a migrated database; idempotent. The stations' password is
    CHARGEFLOW_SIMULATOR_STATION_PASSWORD (or its _FILE), the one `chargeflow simulate` uses."""
    from chargeflow.launcher import seed_demo_site

    settings = _settings()
    simulator = _process_settings(lambda: settings.simulator)
    password = _process_settings(lambda: simulator.require("simulator_station_password"))
    ids = seed_demo_site(
        _database_url(settings), stations or simulator.simulated_stations, password
    )
    typer.echo(
        f"demo seeded: {len(ids)} stations {ids[0]}..{ids[-1]} on sites DEMO-DEPOT, DEMO-PARK"
    )


@station_app.command("add")
def station_add(
    charge_point_id: str,
    site: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="CHARGEFLOW_STATION_PASSWORD",
            help="HTTP Basic password (16-40 characters), stored only as an argon2 hash",
        ),
    ] = None,
    generate_password: Annotated[
        bool, typer.Option(help="generate a password and print it once")
    ] = False,
    security_profile: Annotated[
        int | None,
        typer.Option(
            help="1 = Basic auth (default), 2 = Basic auth over TLS only, "
            "0 = no authentication (legacy stations only)"
        ),
    ] = None,
) -> None:
    """Provision a charge point so it may connect (again: update its password/profile)."""
    from store.stations import generate_password as new_password
    from store.stations import provision_station

    if generate_password:
        if password is not None:
            raise typer.BadParameter("--password and --generate-password exclude each other")
        password = new_password()
    try:
        provision_station(
            _database_url(_settings()),
            charge_point_id,
            site_id=site,
            password=password,
            security_profile=security_profile,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"provisioned {charge_point_id}")
    if generate_password:
        typer.echo(f"password (shown once): {password}")


@station_app.command("site")
def station_site(
    site_id: str,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    capacity_w: Annotated[
        int | None, typer.Option(min=1, help="grid connection limit in watts (> 0)")
    ] = None,
) -> None:
    """Create or update a site (a group of stations behind one grid connection)."""
    from store.sites import upsert_site

    upsert_site(_database_url(_settings()), site_id, name or site_id, capacity_w)
    typer.echo(f"site {site_id}: capacity {capacity_w} W")


@idtag_app.command("add")
def idtag_add(
    id_tag: str,
    status: Annotated[str, typer.Option()] = "Accepted",
    parent: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add or update an idTag in the operator's list."""
    from store.id_tokens import add_id_tag

    add_id_tag(_database_url(_settings()), id_tag, status=status, parent_id_tag=parent)
    typer.echo(f"{id_tag}: {status}")


@app.command()
def gateway() -> None:
    """Run the OCPP gateway (WebSocket server) until SIGINT/SIGTERM."""
    from ingest.gateway.server import Gateway

    settings = _settings()
    _bootstrap(settings)
    config = _process_settings(
        lambda: settings.gateway.config(database_url=_database_url(settings))
    )

    async def main() -> None:
        async with Gateway(config):
            await _until_signalled()

    asyncio.run(main())


@app.command()
def api() -> None:
    """Run the HTTP API (FastAPI on uvicorn)."""
    import uvicorn

    from api.main import create_app
    from api.payments import from_settings as payments_from_settings

    settings = _settings()
    api_settings = _process_settings(lambda: settings.api)
    config = _process_settings(lambda: api_settings.config(database_url=_database_url(settings)))
    payments = _process_settings(payments_from_settings)
    uvicorn.run(
        create_app(config, payments),
        host=api_settings.api_host,
        port=api_settings.api_port,
        # The app logs each request itself, without the query string.
        log_config=None,
        access_log=False,
    )


def _ocpp_versions(text: str) -> tuple[str, ...]:
    versions = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in versions if v not in ("1.6", "2.0.1")]
    if not versions or unknown:
        raise typer.BadParameter(f"OCPP versions must be 1.6 and/or 2.0.1, got {text!r}")
    return versions


# Options of ``simulate`` too long to sit in its signature.
_OcppVersions = Annotated[
    str | None,
    typer.Option(
        help="comma-separated OCPP versions assigned to stations in turn, e.g. 1.6,2.0.1 "
        "(default CHARGEFLOW_SIMULATOR_OCPP_VERSIONS)"
    ),
]
_MeterMqttUrl = Annotated[
    str | None,
    typer.Option(
        help="also run a smart meter per connector (MTR-<station>-<connector>) that "
        "publishes the connector's register to this MQTT broker; default "
        "CHARGEFLOW_MQTT_URL, unset = no meters"
    ),
]
_SmartMeterInterval = Annotated[
    float | None,
    typer.Option(
        help="seconds between a smart meter's readings "
        "(default CHARGEFLOW_SIMULATED_METER_INTERVAL_S)"
    ),
]

_Faults = Annotated[
    str | None,
    typer.Option(
        # No square brackets: the help is rich markup, where [/X] closes a tag.
        help="inject faults: auto, auto:SHARE, auto:SHARE@FROM..TO, or "
        "SCENARIO:STATION(/CONNECTOR)@ONSET(+LEAD),... (docs/simulator.md; default "
        "CHARGEFLOW_SIMULATOR_FAULTS)"
    ),
]
_GroundTruth = Annotated[
    Path | None,
    typer.Option(help="write the injected faults here (JSON Lines: manifest, then one a line)"),
]
_Start = Annotated[
    str | None,
    typer.Option(help="RFC 3339 instant the station clocks start at (default: now)"),
]
_IdTags = Annotated[
    int,
    typer.Option(
        min=1,
        help="driver cards SIM-TAG-001..N the stations use (provisioned as chargeflow run "
        "does for the first 20); more than the sessions at once, or cards are shared",
    ),
]
_ProfileBehaviour = Annotated[
    str,
    typer.Option(
        help="stations that do not obey charging profiles: SIM-0003=ignore (accepts them "
        "and keeps drawing), SIM-0007=reject; comma-separated, the rest obey"
    ),
]
_ProfileReaction = Annotated[
    float | None,
    typer.Option(min=0, help="simulated seconds an EV takes to follow a new limit (5)"),
]


def _start(text: str | None) -> datetime | None:
    from bus.times import parse_rfc3339

    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--start: {exc}") from exc


@app.command()
def simulate(
    stations: Annotated[int, typer.Option(help="number of charge points")] = 20,
    gateway: Annotated[str, typer.Option(help="gateway base URL")] = "ws://127.0.0.1:9000/ocpp",
    sessions: Annotated[
        int | None, typer.Option(help="sessions per station; default: charge forever")
    ] = None,
    meter_interval: Annotated[
        float | None, typer.Option(help="simulated seconds between MeterValues")
    ] = None,
    time_scale: Annotated[float | None, typer.Option(help="simulated seconds per second")] = None,
    mean_dwell: Annotated[
        float | None, typer.Option(help="mean simulated seconds an EV stays plugged in")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="write ground truth JSON here")] = None,
    ocpp_versions: _OcppVersions = None,
    mqtt_url: _MeterMqttUrl = None,
    smart_meter_interval: _SmartMeterInterval = None,
    faults: _Faults = None,
    ground_truth: _GroundTruth = None,
    start: _Start = None,
    seed: Annotated[int | None, typer.Option(help="default CHARGEFLOW_SIMULATOR_SEED")] = None,
    id_tags: _IdTags = 20,
    profile_behaviour: _ProfileBehaviour = "",
    profile_reaction: _ProfileReaction = None,
) -> None:
    """Run simulated OCPP 1.6J / 2.0.1 charge points that charge cars (and their smart
    meters), with injected faults if asked (compressed time: --time-scale)."""
    from chargeflow.launcher import simulated_id_tags
    from ingest.simulator.run import Options, plan

    settings = _settings()
    sim = _process_settings(lambda: settings.simulator)
    options = Options(
        stations=stations,
        gateway_url=gateway,
        sessions=sessions,
        ocpp_versions=_ocpp_versions(ocpp_versions or sim.simulator_ocpp_versions),
        id_tags=tuple(simulated_id_tags(id_tags)),
        meter_interval_s=meter_interval,
        time_scale=time_scale,
        mean_dwell_s=mean_dwell,
        mqtt_url=mqtt_url,
        smart_meter_interval_s=smart_meter_interval,
        faults=faults,
        start=_start(start),
        seed=seed,
        profile_behaviour=profile_behaviour,
        profile_reaction_s=profile_reaction,
    )
    try:
        simulation = plan(sim, options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    result = asyncio.run(_run_simulation(simulation, ground_truth))
    if result is not None and report is not None:
        report.write_text(result.to_json())


async def _run_simulation(simulation: Simulation, ground_truth: Path | None) -> FleetReport | None:
    """Until the fleet is done or a signal; the ground truth written when it starts (a
    bench may read it while the run goes on) and again with the run's end."""
    from ingest.simulator.run import simulate, simulated_end

    if ground_truth is not None:
        simulation.write_ground_truth(ground_truth)
    began = asyncio.get_running_loop().time()
    try:
        return await simulate(simulation, until=_until_signalled)
    finally:
        if ground_truth is not None:
            end = simulated_end(simulation, began, asyncio.get_running_loop().time())
            simulation.write_ground_truth(ground_truth, end)


# ------------------------------------------------------------------ tariffs


def _read_json(path: Path, what: str) -> object:
    from billing.preview import decode_json

    try:
        raw = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read the {what} file {path}: {exc.strerror}")
    return decode_json(raw, f"the {what} file {path}")


@tariff_app.command("price")
def tariff_price(
    tariff: Annotated[Path, typer.Option(help="an OCPI 2.2.1 Tariff object (JSON)")],
    session: Annotated[
        Path,
        typer.Option(
            help='{"time_zone", "start", "stop", "readings": [{"time", "energy_wh", '
            '"power_w", "current_a"?}]}: the register and the power from each reading on'
        ),
    ],
) -> None:
    """Print the OCPI CDR (JSON) of a session priced under a tariff."""
    from billing.preview import PreviewError, encode_cdr, preview

    try:
        cdr = preview(_read_json(tariff, "tariff"), _read_json(session, "session"))
    except PreviewError as exc:
        _fail(str(exc))
    typer.echo(_indented(encode_cdr(cdr)))


@tariff_app.command("check")
def tariff_check(tariff: Path) -> None:
    """Validate an OCPI 2.2.1 Tariff object; exit 2 with the reasons when invalid."""
    from billing.preview import PreviewError
    from billing.tariffs import TariffError, parse_tariff

    try:
        parsed = parse_tariff(_read_json(tariff, "tariff"))
    except (PreviewError, TariffError) as exc:
        _fail(str(exc))
    typer.echo(f"valid: tariff {parsed.id} ({parsed.currency}, {len(parsed.elements)} elements)")


def _indented(raw: bytes) -> str:
    import msgspec

    return msgspec.json.format(raw, indent=2).decode()


# ------------------------------------------------------------------ smart meters (MQTT)


@meter_app.command("add")
def meter_add(
    meter_id: str,
    station: Annotated[str, typer.Option(help="charge point id the meter belongs to")],
    connector: Annotated[int, typer.Option(help="connector id (0 = the whole station)")] = 1,
    billing: Annotated[bool, typer.Option(help="its register is what sessions bill")] = False,
) -> None:
    """Register a smart meter on a station connector (or move it there)."""
    from store.meters import MeterRegistryError, add_meter

    try:
        add_meter(
            _database_url(_settings()), meter_id, station, connector, is_billing_meter=billing
        )
    except MeterRegistryError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{meter_id}: {station} connector {connector}" + (" (billing)" if billing else ""))


@meter_app.command("list")
def meter_list() -> None:
    """List registered smart meters."""
    from store.meters import list_meters

    for meter in list_meters(_database_url(_settings())):
        typer.echo(json.dumps(dataclasses.asdict(meter), default=str))


@app.command()
def meters() -> None:
    """Run the smart-meter MQTT bridge (MQTT readings -> Kafka) until SIGINT/SIGTERM."""
    from ingest.meters import MeterBridge

    settings = _settings()
    if not settings.mqtt_url:
        raise typer.BadParameter("CHARGEFLOW_MQTT_URL is not set (e.g. mqtt://127.0.0.1:1883)")
    _bootstrap(settings)
    config = _process_settings(lambda: settings.meters.config(database_url=_database_url(settings)))

    async def main() -> None:
        async with MeterBridge(config) as bridge:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, bridge.stop)
            await bridge.run()

    asyncio.run(main())


@app.command()
def webhooks() -> None:
    """Deliver fault alerts to the configured webhooks (signed POSTs) until SIGINT/SIGTERM."""
    from notify.worker import WebhooksWorker

    settings = _settings()
    _bootstrap(settings)
    config = _process_settings(
        lambda: settings.webhooks.config(database_url=_database_url(settings))
    )

    async def main() -> None:
        worker = WebhooksWorker(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


@app.command()
def billing() -> None:
    """Turn closed sessions into CDRs (or hold them for review) and capture their payments,
    until SIGINT/SIGTERM."""
    from api.payments import from_settings as payments_from_settings
    from invoicing.worker import InvoicingWorker

    settings = _settings()
    _bootstrap(settings)
    config = _process_settings(
        lambda: settings.billing.config(database_url=_database_url(settings))
    )
    payments = _process_settings(payments_from_settings)

    async def main() -> None:
        worker = InvoicingWorker(config, stripe=payments.stripe)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


class CliError(Exception):
    """A command failed for a reason the user can act on; ``main`` prints the message."""


def error_line(exc: BaseException) -> str:
    """One line for an error, secrets masked (a database error can quote its URL).

    >>> error_line(CliError("no active API key with id 'x'"))
    "error: no active API key with id 'x'"
    >>> import psycopg
    >>> error_line(psycopg.OperationalError(
    ...     "connection failed: Connection refused\\n\\tIs the server running?"))
    'error: cannot reach the database: connection failed: Connection refused'
    >>> error_line(KeyError("postgresql://app:s3cret@db/x"))
    "error: KeyError: 'postgresql://app:***@db/x'"
    """
    import psycopg

    from runtime.logs import redact_text

    wrapped = getattr(exc, "orig", None)  # SQLAlchemy (migrations) wraps the driver's error
    if isinstance(wrapped, psycopg.Error):
        exc = wrapped
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        message = f"cannot reach the database: {message}"
    elif isinstance(exc, psycopg.Error):
        message = f"database error: {message}"
    elif not isinstance(exc, CliError | ValueError | RuntimeError | OSError):
        message = f"{type(exc).__name__}: {message}"
    return redact_text(f"error: {message}")


def main() -> None:
    """Run the CLI: a usage or runtime error is one line on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text, as click shows it
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if _is_usage_error(exc):  # bad arguments and options (click's, typer's own)
            ctx = getattr(exc, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(
                error_line(CliError(exc.format_message())) + where,  # type: ignore[attr-defined]
                file=sys.stderr,
            )
            sys.exit(int(getattr(exc, "exit_code", 2)))
        # The traceback (without locals, redacted) only at CHARGEFLOW_LOG_LEVEL=DEBUG.
        logging.getLogger("chargeflow.cli").debug("command failed", exc_info=exc)
        print(error_line(exc), file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: BaseException) -> bool:
    """click's ClickException (typer vendors its own click, so matched by shape)."""
    return callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code")


if __name__ == "__main__":
    main()
