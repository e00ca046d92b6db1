"""Charts for the desk as inline SVG: no script, no external file (the CSP allows neither).

The charts have no viewBox: heights are in pixels and horizontal positions in percent of
the chart's width, so they fill any width without scaling their text (readable on a
phone as on a desk). Colours come from classes styled in site.css (so dark mode applies);
shapes carry only presentation attributes. Each chart is an `<svg role="img">` named by
its <title> and described in words by its <desc>; every page that has one also shows
its data as a table. All text is escaped here.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

LABEL_CHARS = 90
TRACK = 86.0  # percent of the width a full bar takes; its value is written after it


@dataclass(frozen=True)
class Point:
    label: str  # shown beside or under the mark
    value: float
    note: str = ""  # the mark's tooltip (an SVG <title>)


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _svg(chart_id: str, height: int, title: str, desc: str, body: list[str]) -> Markup:
    cid = escape(chart_id)
    return Markup(
        f'<svg class="chart" id="{cid}" role="img" width="100%" height="{height}" '
        f'aria-labelledby="{cid}-t" aria-describedby="{cid}-d" '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f}%" if unit == "%" else f"{value:,.0f}"


def _pct(value: float) -> str:
    return f"{value:.2f}%"


def bars(chart_id: str, title: str, desc: str, points: list[Point], unit: str = "") -> Markup:
    """Horizontal bars, one per point, each under its label (long titles fit)."""
    row = 42
    most = max((p.value for p in points), default=0) or 1
    body = []
    for i, p in enumerate(points):
        y = 4 + i * row
        width = p.value / most * TRACK
        body += [
            f"<g><title>{escape(p.note or p.label)}</title>",
            f'<text class="label" x="0" y="{y + 13}">{escape(_short(p.label))}</text>',
            f'<rect class="track" x="0" y="{y + 20}" width="{_pct(TRACK)}" height="14" rx="2"/>',
            f'<rect class="bar" x="0" y="{y + 20}" width="{_pct(width)}" height="14" rx="2"/>',
            f'<text class="value" x="100%" y="{y + 32}" text-anchor="end">'
            f"{escape(_fmt(p.value, unit))}</text></g>",
        ]
    return _svg(chart_id, 8 + row * max(len(points), 1), title, desc, body)


def nice_max(value: float) -> float:
    """A round top for an axis at or above `value`: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
    times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10.0 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    while power > value:
        power /= 10
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def columns(chart_id: str, title: str, desc: str, points: list[Point], unit: str = "") -> Markup:
    """Columns in order (oldest first) over four labelled gridlines."""
    height, top, plot = 230, 18, 176
    top_value = nice_max(max((p.value for p in points), default=0))
    body = []
    for k in range(5):
        y = top + plot - plot * k / 4
        body.append(f'<line class="grid" x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}"/>')
        if k:
            label = escape(_fmt(top_value * k / 4, unit))
            body.append(f'<text class="axis" x="0" y="{y - 4:.1f}">{label}</text>')
    slot = 100 / max(len(points), 1)
    for i, p in enumerate(points):
        h = p.value / top_value * plot
        body += [
            f"<g><title>{escape(p.note or p.label)}</title>",
            f'<rect class="bar" x="{_pct(i * slot + slot * 0.3)}" y="{top + plot - h:.1f}" '
            f'width="{_pct(slot * 0.4)}" height="{h:.1f}"/>',
            f'<text class="axis" x="{_pct(i * slot + slot / 2)}" y="{height - 14}" '
            f'text-anchor="middle">{escape(_short(p.label, 12))}</text></g>',
        ]
    body.append(f'<line class="axis-line" x1="0" x2="100%" y1="{top + plot}" y2="{top + plot}"/>')
    return _svg(chart_id, height, title, desc, body)
