"""Small bar charts as inline SVG, drawn on the server (no JavaScript, no chart library).

Each chart is one ``<svg>`` with a bar per value and a ``<title>`` per bar (the browser shows
it on hover); every text that goes into the markup is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 300
HEIGHT = 64
GAP = 2


def bar_chart(
    values: Sequence[float | None], labels: Sequence[str], *, css_class: str, unit: str
) -> Markup:
    """A bar chart of ``values`` (None draws no bar), scaled to the largest, labelled on hover
    with ``label: value unit``."""
    count = max(1, len(values))
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    bar = WIDTH / count
    parts = [
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" preserveAspectRatio="none">',
        f'<line class="axis" x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}"/>',
    ]
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        if value is None:
            continue
        height = max(1.0, (HEIGHT - 4) * value / top) if value > 0 else 0.0
        shown = f"{value:g}" if isinstance(value, int) or value >= 1 else f"{value:.3g}"
        parts.append(
            f'<rect x="{index * bar + GAP / 2:.1f}" y="{HEIGHT - height:.1f}" '
            f'width="{max(1.0, bar - GAP):.1f}" height="{height:.1f}">'
            f"<title>{escape(label)}: {escape(shown)} {escape(unit)}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
