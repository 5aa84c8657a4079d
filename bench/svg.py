"""Tiny SVG charts (matplotlib is not a dependency): grouped bars and lines with error bars."""

from __future__ import annotations

from html import escape
from typing import Dict, List, Optional, Sequence, Tuple

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def _frame(width: int, height: int, title: str) -> List[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>']


def bars(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "",
         width: int = 520, height: int = 300) -> str:
    out = _frame(width, height, title)
    left, right, top, bottom = 60, 20, 30, 60
    top_value = max(values) * 1.15 if values else 1
    bw = (width - left - right) / max(1, len(values))
    for i, (label, value) in enumerate(zip(labels, values)):
        h = (height - top - bottom) * value / top_value
        x = left + i * bw + bw * 0.15
        y = height - bottom - h
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
                   f'fill="{COLORS[i % 8]}"/>')
        out.append(f'<text x="{x + bw * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                   f'{value:.3g}{escape(unit)}</text>')
        out.append(f'<text x="{x + bw * 0.35:.1f}" y="{height - bottom + 14}" '
                   f'text-anchor="middle">{escape(label)}</text>')
    out.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>')
    out.append("</svg>")
    return "\n".join(out)


def lines(title: str, xs: Sequence[float], series: Dict[str, List[Tuple[float, float, float]]],
          x_label: str = "", y_label: str = "", y_range: Optional[Tuple[float, float]] = None, log_x: bool = True,
          width: int = 520, height: int = 320) -> str:
    """``series``: name -> [(x, mean, std)]; std drawn as error bars."""
    import math
    out = _frame(width, height, title)
    left, right, top, bottom = 50, 130, 30, 45
    fx = (lambda v: math.log2(v)) if log_x else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    lo, hi = y_range or (0.0, 1.0)
    def px(v):
        return left + (fx(v) - x0) / max(1e-9, x1 - x0) * (width - left - right)

    def py(v):
        return height - bottom - (v - lo) / max(1e-9, hi - lo) * (height - top - bottom)

    for t in range(6):
        v = lo + (hi - lo) * t / 5
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{width - right}" y2="{py(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for v in xs:
        out.append(f'<text x="{px(v):.1f}" y="{height - bottom + 14}" text-anchor="middle">{v:g}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    mid = (top + height - bottom) / 2
    out.append(f'<text x="12" y="{mid}" transform="rotate(-90 12 {mid})" text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % 8]
        pts = sorted(points)
        if len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(m):.1f}" for x, m, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, m, s in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(m):.1f}" r="3" fill="{color}"/>')
            if s:
                out.append(f'<line x1="{px(x):.1f}" y1="{py(max(lo, m - s)):.1f}" x2="{px(x):.1f}" '
                           f'y2="{py(min(hi, m + s)):.1f}" stroke="{color}"/>')
        ly = top + 14 * i + 6
        out.append(f'<rect x="{width - right + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{width - right + 24}" y="{ly + 1}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
