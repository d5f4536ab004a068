"""Charts for the dashboard, drawn on the server as inline SVG: no chart library, no script, nothing to fetch."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

__all__ = ["sparkline"]


def sparkline(values: Sequence[float], width: int = 240, height: int = 40, label: str = "") -> Markup:
    """Bars, one per value (oldest first), scaled to the largest; the label is the SVG's accessible title."""
    n = max(len(values), 1)
    top = max(values, default=0) or 1
    bar = width / n
    rects = []
    for i, v in enumerate(values):
        h = 0 if not v else max(1.0, v / top * (height - 2))
        rects.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}"/>')
    title = Markup.escape(label)
    return Markup(f'<svg class="spark" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'aria-label="{title}"><title>{title}</title>{"".join(rects)}</svg>')
