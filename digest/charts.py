"""Dashboard charts: SVG drawn on the server by pygal, shown as images with a text table
beside each (the table is the accessible form; the chart's alt text says what it shows).

No JavaScript: pygal's tooltip script is left out, and the SVG is embedded as a ``data:``
image, so the page's Content-Security-Policy (no inline script or style) is kept.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

import pygal
from pygal.style import Style

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)

#: Colours with at least 4.5:1 contrast on white, told apart by more than hue.
PALETTE = ("#0b57d0", "#b42318", "#57606a", "#1a7f37", "#8250df", "#9a6700")

_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2328",
    foreground_strong="#1f2328",
    foreground_subtle="#57606a",
    colors=PALETTE,
    font_family="-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    title_font_size=16,
    value_font_size=12,
)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    stacked: bool = True,
) -> str:
    """A (stacked) bar chart as SVG text: one bar per label, one colour per series."""
    kind = pygal.StackedBar if stacked else pygal.Bar
    chart = kind(
        style=_STYLE,
        width=720,
        height=360,
        js=(),  # no script: nothing runs, the page's CSP holds
        disable_xml_declaration=True,
        show_legend=len(series) > 1,
        legend_at_bottom=True,
        legend_at_bottom_columns=max(1, len(series)),
        x_label_rotation=45 if len(labels) > 12 else 0,
        show_minor_x_labels=len(labels) <= 12,
        x_labels_major_every=max(1, len(labels) // 10),
        truncate_label=-1,
        print_values=False,
        include_x_axis=True,
        min_scale=1,
        max_scale=6,
        margin=16,
    )
    chart.title = title
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, [int(v) for v in values])
    # pygal still writes its config as an inline script; an image never runs it: drop it
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def data_uri(svg: str) -> str:
    """The SVG as a ``data:`` URL for an ``<img>``."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
