"""Small inline-SVG charts for the report page: no scripts, no network, render anywhere."""

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#9333ea",
    "#ea580c",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
)


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a if hi == lo else a + (v - lo) * (b - a) / (hi - lo)


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    markers: Sequence[tuple[float, str]] = (),
    hline: tuple[float, str] | None = None,
    width: int = 720,
    height: int = 240,
    y_label: str = "",
    bands: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
) -> str:
    """Lines over time (x: unix seconds), with vertical event markers and one reference line.
    `bands`: for a series, (x, low, high) points shaded in its colour (an uncertainty band)."""
    bands = bands or {}
    points = [p for s in series.values() for p in s]
    points += [(x, v) for b in bands.values() for x, lo, hi in b for v in (lo, hi)]
    xs = [x for x, _ in points] + [x for x, _ in markers]
    ys = [y for _, y in points] + ([hline[0]] if hline else [])
    left, right, top, bottom = 48, width - 140, 28, height - 28
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="16" class="title">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{left}" y="{height // 2}" class="empty">no data yet</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.1 or 1.0
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>')
    for frac in (0.0, 0.5, 1.0):
        v = y0 + frac * (y1 - y0)
        y = _scale(v, y0, y1, bottom, top)
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v:.3g}</text>'
        )
    if y_label:
        parts.append(f'<text x="{left}" y="{height - 6}" class="tick">{escape(y_label)}</text>')
    if hline:
        y = _scale(hline[0], y0, y1, bottom, top)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="ref"/>'
            f'<text x="{right + 4}" y="{y + 4:.1f}" class="tick">'
            f"{escape(hline[1])}</text>"
        )
    for x, label in markers:
        px = _scale(x, x0, x1, left, right)
        parts.append(
            f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" '
            f'class="marker"><title>{escape(label)}</title></line>'
            f'<text x="{px + 2:.1f}" y="{top + 10}" class="mark">'
            f"{escape(label[:12])}</text>"
        )
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        band = sorted(bands.get(name, ()))
        if band:
            upper = [(x, hi) for x, _, hi in band]
            lower = [(x, lo) for x, lo, _ in reversed(band)]
            outline = " ".join(
                f"{_scale(x, x0, x1, left, right):.1f},{_scale(y, y0, y1, bottom, top):.1f}"
                for x, y in [*upper, *lower]
            )
            parts.append(
                f'<polygon points="{outline}" fill="{color}" fill-opacity="0.15" stroke="none" '
                f'class="band"><title>{escape(name)}: ±2 standard errors</title></polygon>'
            )
        if not pts:
            continue
        path = " ".join(
            f"{_scale(x, x0, x1, left, right):.1f},{_scale(y, y0, y1, bottom, top):.1f}"
            for x, y in sorted(pts)
        )
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" '
            f'stroke-width="2" class="series"><title>{escape(name)}</title></polyline>'
        )
        if len(pts) == 1:
            x, y = pts[0]
            parts.append(
                f'<circle cx="{_scale(x, x0, x1, left, right):.1f}" '
                f'cy="{_scale(y, y0, y1, bottom, top):.1f}" r="3" fill="{color}"/>'
            )
        ly = top + 14 * i + 12
        parts.append(
            f'<rect x="{right + 8}" y="{ly - 8}" width="10" height="10" '
            f'fill="{color}"/><text x="{right + 22}" y="{ly + 1}" class="tick">'
            f"{escape(name[:16])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_pairs(
    title: str,
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    width: int = 340,
    height: int = 180,
) -> str:
    """Reference and current shares side by side for each bin or category."""
    n = max(len(labels), 1)
    left, right, top, bottom = 36, width - 8, 24, height - 30
    top_v = max([*reference, *current, 0.01])
    slot = (right - left) / n
    parts = [
        f'<svg class="chart dist" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="4" y="14" class="title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 4}" class="tick" text-anchor="end">{top_v:.2f}</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * slot
        for j, (vals, cls) in enumerate(((reference, "refbar"), (current, "curbar"))):
            v = vals[i] if i < len(vals) else 0.0
            h = (bottom - top) * v / top_v
            parts.append(
                f'<rect x="{x + j * slot / 2 + 1:.1f}" y="{bottom - h:.1f}" '
                f'width="{max(slot / 2 - 2, 1):.1f}" height="{h:.1f}" class="{cls}">'
                f"<title>{escape(label)}: {v:.3f}</title></rect>"
            )
        if n <= 12:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{bottom + 12}" class="tick" '
                f'text-anchor="middle">{escape(label[:8])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
