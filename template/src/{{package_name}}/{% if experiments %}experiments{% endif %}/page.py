"""The results as one self-contained HTML page: no scripts, no front-end build.

Each metric gets a table (arms, then lifts with their intervals and p-values) and a plot
of each treatment arm's lift interval against zero, drawn as inline SVG. The page's own
Content-Security-Policy allows its one style block by hash and nothing else.
"""

from html import escape

from ..core.content_security import source_hash
from .results import Lift, MetricResult, Results
from .schemas import ExperimentRead

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { padding: .25rem .75rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.alarm { background: #fde2e1; border: 1px solid #e0605a; padding: .5rem 1rem; }
.muted { color: #666; }
"""
CONTENT_SECURITY_POLICY = f"default-src 'none'; style-src {source_hash(STYLE.encode())}"
PLOT_WIDTH = 560
ROW_HEIGHT = 28


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f} %"


def _interval(bounds: tuple[float, float] | None, percent: bool) -> str:
    if bounds is None:
        return "-"
    low, high = bounds
    if percent:
        return f"[{low * 100:+.2f} %, {high * 100:+.2f} %]"
    return f"[{low:.4g}, {high:.4g}]"


def _plot(lifts: list[Lift]) -> str:
    """Each lift's interval as a bar around its estimate, with zero marked."""
    relative = all(lift.relative_ci is not None for lift in lifts)
    spans = [
        (lift.arm, lift.relative_lift, lift.relative_ci)
        if relative
        else (lift.arm, lift.absolute_lift, lift.absolute_ci)
        for lift in lifts
    ]
    bounds = [value for _, _, ci in spans if ci is not None for value in ci] + [0.0]
    low, high = min(bounds), max(bounds)
    pad = (high - low) * 0.1 or 1.0
    low, high = low - pad, high + pad
    left, right = 90, PLOT_WIDTH - 20

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    height = ROW_HEIGHT * len(spans) + 30
    parts = [
        f'<svg width="{PLOT_WIDTH}" height="{height}" role="img" '
        f'aria-label="lift intervals ({"relative" if relative else "absolute"})">',
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{height - 20}" stroke="#999" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 5}" font-size="11" text-anchor="middle">0</text>',
    ]
    for row, (arm, estimate, ci) in enumerate(spans):
        y = ROW_HEIGHT * row + ROW_HEIGHT / 2
        parts.append(f'<text x="0" y="{y + 4:.1f}" font-size="12">{escape(arm)}</text>')
        if ci is None or estimate is None:
            continue
        colour = "#2a7d2a" if ci[0] > 0 else "#b3261e" if ci[1] < 0 else "#555"
        parts.append(
            f'<line x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<circle cx="{x(estimate):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _metric_section(metric: MetricResult) -> str:
    rows = "".join(
        f"<tr><td>{escape(arm.arm)}</td><td>{arm.n}</td><td>{_number(arm.mean)}</td></tr>"
        for arm in metric.arms
    )
    label = "rate" if metric.kind == "conversion" else "mean"
    lifts = "".join(
        "<tr>"
        f"<td>{escape(lift.arm)} vs {escape(lift.control)}</td>"
        f"<td>{_number(lift.absolute_lift)} {_interval(lift.absolute_ci, percent=False)}</td>"
        f"<td>{_percent(lift.relative_lift)} {_interval(lift.relative_ci, percent=True)}</td>"
        f"<td>{_number(lift.p_value, 3)}</td>"
        f"<td>{_number(lift.adjusted_p_value, 3)}{' ✔' if lift.significant else ''}</td>"
        f"<td>{_number(lift.minimum_detectable_effect)}</td>"
        f"<td>{_number(lift.power, 2)}</td>"
        "</tr>"
        for lift in metric.lifts
    )
    return (
        f"<h2>{escape(metric.metric)} <span class=muted>({metric.kind}, {metric.role})</span></h2>"
        f"<table><tr><th>arm</th><th>n</th><th>{label}</th></tr>{rows}</table>"
        "<table><tr><th>comparison</th><th>absolute lift [CI]</th><th>relative lift [CI]</th>"
        "<th>p</th><th>p (Holm)</th><th>MDE</th><th>power</th></tr>"
        f"{lifts}</table>{_plot(metric.lifts) if metric.lifts else ''}"
    )


def results_page(experiment: ExperimentRead, results: Results) -> str:
    arms = "".join(
        f"<tr><td>{escape(arm.arm)}</td><td>{arm.weight:g}</td><td>{arm.exposures}</td></tr>"
        for arm in results.arms
    )
    alarm = (
        '<p class="alarm">Sample ratio mismatch (p = '
        f"{results.sample_ratio_p_value:.2g}): the exposures do not match the weights. "
        "Do not trust these results; see the AppExperimentSampleRatioMismatch runbook.</p>"
        if results.sample_ratio_mismatch
        else ""
    )
    mode = "sequential (always valid)" if results.sequential else "fixed horizon"
    intervals = f"{(1 - results.alpha) * 100:g} %"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(experiment.key)}: results</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(experiment.key)}</h1><p>{escape(experiment.hypothesis)}</p>"
        f"<p class=muted>{escape(results.status)}; {mode} inference, {intervals} intervals"
        f"{', CUPED' if results.cuped else ''}; computed {results.computed_at:%Y-%m-%d %H:%M} "
        "UTC</p>"
        f"{alarm}<table><tr><th>arm</th><th>weight</th><th>exposed</th></tr>{arms}</table>"
        f"<p class=muted>Sample ratio p = {results.sample_ratio_p_value:.3g}</p>"
        + "".join(_metric_section(metric) for metric in results.metrics)
        + "</body></html>"
    )
