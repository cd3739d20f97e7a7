"""The usage report's charts as inline SVG, drawn server-side by matplotlib (wheels only,
no browser: docs/reports.md). Figures are built without pyplot (no global figure state),
so charts can be drawn in worker threads."""

from __future__ import annotations

import io

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.usage import WEEKDAYS, UsageReport

# Share-of-period segments, left to right, with their colours.
SEGMENTS = (
    ("Charging", "charging_s", "#2b8a3e"),
    ("Idle (plugged in)", "idle_s", "#f08c00"),
    ("Down", "downtime_s", "#c92a2a"),
    ("Available", "available_s", "#a5d8ff"),
    ("Unknown", "unknown_s", "#dee2e6"),
)
MAX_BARS = 60  # beyond this a bar chart is unreadable on a page; the table has them all


def _svg(figure: Figure) -> str:
    """The figure as an SVG element (no XML prolog: it is inlined in the page)."""
    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def plain(text: str) -> str:
    """``text`` shown as is: matplotlib reads text between two ``$`` as math (a station
    id like ``A$1$`` would be typeset, and bad math raises)."""
    return text.replace("$", r"\$")


def _labels(report: UsageReport) -> list[str]:
    return [plain(f"{c.charge_point_id} / {c.connector_id}") for c in report.connectors[:MAX_BARS]]


def utilisation_chart(report: UsageReport) -> str:
    """Per connector, how the observed period was spent (stacked shares, %)."""
    connectors = report.connectors[:MAX_BARS]
    figure = Figure(figsize=(8, 1.2 + 0.32 * max(1, len(connectors))), layout="constrained")
    axes = figure.subplots()
    labels = _labels(report)
    left = [0.0] * len(connectors)
    for name, attribute, colour in SEGMENTS:
        shares = [
            100 * getattr(c.figures, attribute) / c.figures.period_s if c.figures.period_s else 0
            for c in connectors
        ]
        axes.barh(labels, shares, left=left, color=colour, label=name)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of the observed period")
    axes.invert_yaxis()
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(SEGMENTS), fontsize=8)
    if not connectors:
        axes.text(50, 0, "no connectors", ha="center", va="center")
    return _svg(figure)


def energy_chart(report: UsageReport) -> str:
    """Energy delivered per connector (kWh)."""
    connectors = report.connectors[:MAX_BARS]
    figure = Figure(figsize=(8, 1.0 + 0.32 * max(1, len(connectors))), layout="constrained")
    axes = figure.subplots()
    axes.barh(_labels(report), [c.figures.energy_wh / 1000 for c in connectors], color="#1971c2")
    axes.set_xlabel("kWh")
    axes.invert_yaxis()
    return _svg(figure)


def peak_hours_chart(report: UsageReport) -> str:
    """Sessions started per local hour of day and weekday (a heatmap)."""
    grid = [[0] * 24 for _ in range(7)]
    for cell in report.peak_hours:
        grid[cell.weekday][cell.hour] = cell.sessions
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    axes.set_yticks(range(7), list(WEEKDAYS))
    axes.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    axes.set_xlabel(f"Hour of day ({report.time_zone})")
    figure.colorbar(image, ax=axes, label="sessions started", ticks=MaxNLocator(integer=True))
    return _svg(figure)
