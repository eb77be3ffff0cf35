"""The overview's latency chart: inline SVG drawn on the server from the Prometheus histogram.

No script and no style attribute (the page's CSP allows neither inline): bars are SVG shapes
with presentation attributes, labels are escaped text.
"""

from __future__ import annotations

from markupsafe import Markup, escape
from prometheus_client import CollectorRegistry

__all__ = ["latency_chart"]

BAR_HEIGHT = 18
LABEL_WIDTH = 260
BAR_WIDTH = 300


def _mean_latencies(registry: CollectorRegistry) -> list[tuple[str, int, float]]:
    """(``METHOD /route``, requests, mean seconds) of each route that answered at least once."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name != "memvault_request_duration_seconds":
            continue
        for sample in metric.samples:
            label = f"{sample.labels.get('method', '')} {sample.labels.get('route', '')}"
            if sample.name.endswith("_sum"):
                sums[label] = sample.value
            elif sample.name.endswith("_count"):
                counts[label] = sample.value
    found = [(label, int(n), sums.get(label, 0.0) / n) for label, n in counts.items() if n > 0]
    found.sort(key=lambda row: row[1], reverse=True)
    return found[:10]


def latency_chart(registry: CollectorRegistry) -> Markup | None:
    """Mean latency of the ten busiest routes since the server started, or None before any."""
    rows = _mean_latencies(registry)
    if not rows:
        return None
    longest = max(mean for _, _, mean in rows) or 1.0
    height = BAR_HEIGHT * len(rows) + 4
    width = LABEL_WIDTH + BAR_WIDTH + 120
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="chart-title">'
        '<title id="chart-title">Mean latency per route since the server started</title>'
    ]
    for index, (label, count, mean) in enumerate(rows):
        y = index * BAR_HEIGHT + 2
        bar = max(1, round(BAR_WIDTH * mean / longest))
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12" fill="#1a1a1a">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 2}" width="{bar}" height="{BAR_HEIGHT - 6}" '
            'fill="#1f5fa8"></rect>'
            f'<text x="{LABEL_WIDTH + bar + 6}" y="{y + 13}" font-size="12" fill="#1a1a1a">'
            f"{mean * 1000:.1f} ms ({count})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is a number or escaped
