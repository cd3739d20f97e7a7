"""``chargeflow dashboards ...``: export the dashboards for file provisioning, or publish
them (with their folder and datasource) to a running Grafana."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dashboards.common import Flavour

app = typer.Typer(no_args_is_help=True, help="Grafana dashboards: export or publish them.")

Plain = Annotated[
    bool,
    typer.Option(
        "--plain-postgresql",
        help="SQL for plain PostgreSQL (date_bin) instead of TimescaleDB (time_bucket, last).",
    ),
]
Currencies = Annotated[
    list[str] | None,
    typer.Option(
        "--currency", help="One Billing dashboard per currency (repeatable).", show_default="EUR"
    ),
]


def _options(plain: bool, currencies: list[str] | None) -> tuple[Flavour, tuple[str, ...]]:
    from billing.money import CurrencyError, check_currency
    from dashboards.common import Flavour

    try:
        checked = tuple(check_currency(c) for c in (currencies or ["EUR"]))
    except CurrencyError as exc:
        raise typer.BadParameter(str(exc)) from None
    return Flavour(timescale=not plain), checked


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Where the dashboards' JSON files go.")],
    plain: Plain = False,
    currency: Currencies = None,
) -> None:
    """Write each dashboard as <uid>.json into DIRECTORY (Grafana file provisioning)."""
    from dashboards.catalog import export as write

    flavour, currencies = _options(plain, currency)
    for path in write(directory, flavour, currencies):
        typer.echo(str(path))


@app.command()
def publish(
    url: Annotated[str, typer.Option(envvar="CHARGEFLOW_GRAFANA_URL", help="Grafana's base URL.")],
    token: Annotated[
        str,
        typer.Option(
            envvar="CHARGEFLOW_GRAFANA_TOKEN",
            help="A service account token (Editor, or Admin to manage the datasource).",
            show_default=False,
        ),
    ],
    skip_datasource: Annotated[
        bool,
        typer.Option(help="Leave the datasource alone (provisioned by file)."),
    ] = False,
    plain: Plain = False,
    currency: Currencies = None,
) -> None:
    """Create or update the folder, the datasource (from CHARGEFLOW_GRAFANA_DB_*) and the
    dashboards in Grafana; a repeat changes nothing."""
    from dashboards.provisioning import ProvisioningError
    from dashboards.publish import PublishError
    from dashboards.publish import publish as run

    flavour, currencies = _options(plain, currency)
    try:
        report = run(
            url,
            token,
            env=None if skip_datasource else dict(os.environ),
            flavour=flavour,
            currencies=currencies,
        )
    except (PublishError, ProvisioningError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        typer.echo(line)
