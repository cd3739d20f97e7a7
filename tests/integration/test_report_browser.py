"""The HTML usage report in a real browser: headless Chromium (Debian's ``chromium``,
driven over the DevTools protocol by playwright with the system executable; no browser
is downloaded) loads the page from the API served over HTTP with an API key, and

* each chart is on the page, of a useful size, and not blank: the pixel variance of its
  screenshot is far above that of an empty region (which is checked to be ~0, so the
  measure can fail);
* every number the page shows equals the API's JSON: ``data-value`` is the JSON value,
  and the text people read parses back to it (kWh, %, h:mm:ss, amounts);
* the page prints to PDF.

``make test`` installs the ``chromium`` package where /usr/bin/chromium is missing."""

from __future__ import annotations

import io
import os
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat
from playwright.async_api import Browser, Page, async_playwright

from api.config import ApiConfig
from tests.support.api import served_api
from tests.support.reports import PERIOD, SITE, seed_usage_day

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("CHARGEFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = ("utilisation", "peak-hours", "energy")
# A chart is lines, bars and text on white: its grey levels vary a lot (2,500-10,000
# here). A blank region varies by 0; the threshold sits far from both.
MIN_VARIANCE = 500.0


@pytest.fixture
def chromium() -> Path:
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: `make test` installs the chromium package"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # launch_persistent_context would take the profile directory; a fresh one each
        # run is what a plain launch gives (playwright makes and removes it).
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def variance(png: bytes) -> float:
    """Variance of the grey levels of a screenshot (0 for one flat colour)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    return float(ImageStat.Stat(image).var[0])


def parse_shown(field: str, text: str) -> Decimal | None:
    """The number a person reads in ``text``, in the JSON's unit (None for '-')."""
    text = text.strip().replace(",", "")
    if text == "-":
        return None
    name = field.rsplit(".", 1)[-1]
    if name in ("utilisation", "occupancy"):
        return Decimal(text.removesuffix(" %")) / 100
    if name == "energy_wh":
        return Decimal(text.removesuffix(" kWh")) * 1000
    if name.endswith("_s"):
        hours, minutes, seconds = (int(p) for p in text.split(":"))
        return Decimal(hours * 3600 + minutes * 60 + seconds)
    if name == "total_incl_vat":
        return Decimal(text.split(" ")[0])
    return Decimal(text)


async def shown_numbers(page: Page) -> list[tuple[str, str, str, str]]:
    """(row, field, data-value, text) of every number on the page; row is the table
    row's connector (``CP/1``, ``total``) or ``card``."""
    rows: list[list[str]] = await page.eval_on_selector_all(
        "[data-field]",
        """els => els.map(e => [
            e.closest('tr') ? e.closest('tr').dataset.connector : 'card',
            e.dataset.field, e.dataset.value, e.textContent])""",
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def json_value(body: dict[str, Any], row: str, field: str) -> Any:
    if row == "card":
        figures, field = body["totals"], field.removeprefix("totals.")
    elif row == "total":
        figures = body["totals"]
    else:
        cp, connector = row.rsplit("/", 1)
        figures = next(
            c
            for c in body["connectors"]
            if c["charge_point_id"] == cp and c["connector_id"] == int(connector)
        )
    if field.startswith("revenue."):
        _, currency, amount = field.split(".")
        money = [m[amount] for m in figures["revenue"] if m["currency"] == currency]
        return money[0] if money else "0"
    return figures[field]


async def check_charts(page: Page, shots: Path) -> None:
    """Each chart is on the page, of a useful size, and not blank; an empty region of the
    same page measures flat (so the measure can fail)."""
    for chart in CHARTS:
        figure = page.locator(f"#chart-{chart} svg")
        assert await figure.count() == 1, chart
        box = await figure.bounding_box()
        assert box is not None
        assert box["width"] > 300, (chart, box)
        assert box["height"] > 150, (chart, box)
        shot = await figure.screenshot()
        (shots / f"{chart}.png").write_bytes(shot)
        assert variance(shot) > MIN_VARIANCE, (chart, variance(shot))
    await page.evaluate(
        """() => { const d = document.createElement('div'); d.id = 'blank';
        d.style.cssText = 'width:400px;height:200px;margin:40px 0;background:#fff';
        document.body.appendChild(d); }"""
    )
    assert variance(await page.locator("#blank").screenshot()) < 1.0


async def check_numbers(page: Page, body: dict[str, Any]) -> None:
    """The page's numbers equal the JSON's, as data and as the text shown."""
    numbers = await shown_numbers(page)
    rows = {row for row, *_ in numbers}
    assert rows == {"card", "total", "CP-R1/1", "CP-R1/2"}, rows
    assert len(numbers) >= 4 * 10
    for row, field, value, text in numbers:
        expected = json_value(body, row, field)
        shown = parse_shown(field, text)
        if expected is None:
            assert (value, shown) == ("", None), (row, field)
            continue
        assert value == str(expected), (row, field, value, expected)
        assert shown == Decimal(str(expected)), (row, field, text, expected)
    assert await page.title() == f"Usage report: Site {SITE}"
    heading = await page.locator("p.meta").inner_text()
    assert re.search(r"2026-06-01 02:00 CEST to 2026-06-02 02:00 CEST", heading), heading


async def test_html_report_in_headless_chromium(
    clean_db: str, keys: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    seed_usage_day(clean_db)
    headers = {"X-API-Key": keys["billing"]}
    query = {**PERIOD, "site": SITE}
    # CHARGEFLOW_REPORT_SHOTS=<dir> keeps the chart screenshots to look at.
    shots = Path(os.environ.get("CHARGEFLOW_REPORT_SHOTS") or tmp_path)
    with served_api(ApiConfig(database_url=clean_db)) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            body = (await client.get("/v1/reports/usage", params=query)).json()
        context = await browser.new_context(
            extra_http_headers=headers, viewport={"width": 1280, "height": 900}
        )
        page = await context.new_page()
        url = str(httpx.URL(f"{base}/v1/reports/usage", params={**query, "format": "html"}))
        response = await page.goto(url)
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        await check_numbers(page, body)
        await check_charts(page, shots)
        # Printable: Chromium's own print to PDF.
        pdf = await page.pdf(prefer_css_page_size=True)
        assert pdf.startswith(b"%PDF")
        assert len(pdf) > 10_000
        await context.close()
