"""Small server-rendered SVG charts (no JavaScript, no chart library): lines over time and paired bars.

Every label is escaped; the output is safe to mark as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

__all__ = ["bar_pairs", "line_chart"]

_W, _H, _PAD = 560, 180, 34


def _scale(values: Sequence[float], lo: float | None = None) -> tuple[float, float]:
    low = min(values) if lo is None else lo
    high = max(values)
    return (low, high if high > low else low + 1.0)


def line_chart(
    points: Sequence[tuple[float, float]], *, title: str, unit: str = "", lo: float | None = None
) -> Markup:
    """``points``: (x, y) with x in seconds; an empty series says so instead of drawing nothing."""
    head = f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">'
    head += f'<text x="{_PAD}" y="14" class="chart-title">{escape(title)}</text>'
    if len(points) < 2:
        return Markup(head + f'<text x="{_PAD}" y="{_H // 2}">not enough samples yet</text></svg>')
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = _scale(xs)
    y0, y1 = _scale(ys, lo)

    def at(x: float, y: float) -> str:
        px = _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)
        py = _H - _PAD + 10 - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)
        return f"{px:.1f},{py:.1f}"

    path = " ".join(at(x, y) for x, y in points)
    axis = (
        f'<line x1="{_PAD}" y1="{_H - _PAD + 10}" x2="{_W - _PAD}" y2="{_H - _PAD + 10}" class="axis"/>'
        f'<text x="2" y="30" class="tick">{y1:.4g}{escape(unit)}</text>'
        f'<text x="2" y="{_H - _PAD + 10}" class="tick">{y0:.4g}{escape(unit)}</text>'
    )
    return Markup(f'{head}{axis}<polyline points="{path}" class="series"/></svg>')


def bar_pairs(rows: Sequence[tuple[str, float, float]], *, title: str, labels: tuple[str, str]) -> Markup:
    """Two bars per row (e.g. quoted vs charged per provider)."""
    height = 30 + 34 * max(1, len(rows))
    out = [f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(title)}">']
    out.append(
        f'<text x="4" y="14" class="chart-title">{escape(title)}: {escape(labels[0])} ▮ vs {escape(labels[1])} ▯</text>'
    )
    top = max([max(a, b) for _, a, b in rows] + [1e-9])
    for i, (name, a, b) in enumerate(rows):
        y = 26 + 34 * i
        wa = (_W - 220) * a / top
        wb = (_W - 220) * b / top
        out.append(f'<text x="4" y="{y + 12}" class="tick">{escape(name)}</text>')
        out.append(f'<rect x="120" y="{y}" width="{wa:.1f}" height="12" class="bar-a"/>')
        out.append(f'<rect x="120" y="{y + 14}" width="{wb:.1f}" height="12" class="bar-b"/>')
        out.append(f'<text x="{124 + max(wa, wb):.1f}" y="{y + 20}" class="tick">${a:.4f} / ${b:.4f}</text>')
    out.append("</svg>")
    return Markup("".join(out))
