"""Charts drawn on the server as SVG (no script, no library): a grant's burn-down in won."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_Y = 640, 260, 130, 20, 28  # left: room for "7,000,000,000원"


@dataclass
class BurnDown:
    """What the chart shows: the grant over its period, the remaining now, the forecast exhaustion."""

    start: dt.date
    end: dt.date
    grant_krw: int
    remaining_krw: int
    today: dt.date
    forecast: dt.date | None = None


def burn_down_svg(data: BurnDown, title: str, labels: dict[str, str], fmt_won, fmt_date) -> str:
    """An accessible SVG (``role="img"`` with a title and description): the plan line (even use over the
    period), the actual line (grant at the start to the remaining today) and the forecast to exhaustion."""
    days = max((data.end - data.start).days, 1)
    top = max(data.grant_krw, 1)

    def x(day: dt.date) -> float:
        clamped = min(max((day - data.start).days, 0), days)
        return PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) * clamped / days

    def y(krw: float) -> float:
        return PAD_Y + (HEIGHT - 2 * PAD_Y) * (1 - max(min(krw, top), 0) / top)

    today = min(max(data.today, data.start), data.end)
    lines = [
        f'<line class="axis" x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y(0):.1f}"/>',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{y(top):.1f}" x2="{PAD_LEFT}" y2="{y(0):.1f}"/>',
        f'<line class="plan" x1="{x(data.start):.1f}" y1="{y(top):.1f}" x2="{x(data.end):.1f}" y2="{y(0):.1f}"/>',
        f'<line class="actual" x1="{x(data.start):.1f}" y1="{y(top):.1f}" x2="{x(today):.1f}" y2="{y(data.remaining_krw):.1f}"/>',
        f'<circle class="actual" cx="{x(today):.1f}" cy="{y(data.remaining_krw):.1f}" r="4"/>',
    ]
    if data.forecast is not None:
        lines.append(
            f'<line class="forecast" x1="{x(today):.1f}" y1="{y(data.remaining_krw):.1f}" '
            f'x2="{x(data.forecast):.1f}" y2="{y(0):.1f}"/>'
        )
    text = [
        f'<text x="{PAD_LEFT - 6}" y="{y(top) + 4:.1f}" text-anchor="end">{escape(fmt_won(top))}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}">{escape(fmt_date(data.start))}</text>',
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{escape(fmt_date(data.end))}</text>',
    ]
    legend = (
        f'<text class="legend-plan" x="{PAD_LEFT + 8}" y="16">— {escape(labels["plan"])}</text>'
        f'<text class="legend-actual" x="{PAD_LEFT + 170}" y="16">— {escape(labels["actual"])}</text>'
        f'<text class="legend-forecast" x="{PAD_LEFT + 340}" y="16">- - {escape(labels["forecast"])}</text>'
    )
    description = escape(labels["description"])
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-title">{escape(title)}</title><desc id="chart-desc">{description}</desc>'
        f"{''.join(lines)}{''.join(text)}{legend}</svg>"
    )
