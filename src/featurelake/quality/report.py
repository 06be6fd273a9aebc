"""A self-contained quality report of a group: HTML (inline CSS and SVG charts) plus JSON.

No plotting library is needed: charts are small inline SVGs. The JSON file carries the same
numbers for monitoring systems. The tables and charts (`summary_table`, `distribution_chart`,
`bar_chart`, `drift_table`, `check_table`) are also what the server's catalog pages show.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelake.quality.checks import check_history
from featurelake.quality.drift import DriftReport, drift_history
from featurelake.quality.freshness import last_materialized
from featurelake.quality.stats import FeatureStatistics, GroupStatistics, statistics_history
from featurelake.quality.tables import resolve
from featurelake.registry import Registry
from featurelake.schema.model import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BLUE = "#2f6fb0"
GREY = "#c9d3de"
RED = "#c0392b"
GREEN = "#2e8b57"
ORANGE = "#d98c1f"

CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2733;
background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:15px;margin:0 0 6px}
.sub{color:#57606a;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px 14px;min-width:150px}
.card .v{font-size:20px;font-weight:600}.card .k{color:#57606a;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #d8dee4;width:100%}
th,td{padding:5px 9px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f0f3f6;font-weight:600}td:first-child,th:first-child{text-align:left}
.ok{color:#2e8b57;font-weight:600}.bad{color:#c0392b;font-weight:600}.warn{color:#d98c1f;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.panel{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px 12px}
.muted{color:#57606a;font-size:12px}
svg text{font:11px -apple-system,Segoe UI,Helvetica,Arial,sans-serif;fill:#1d2733}
"""


def write_report(
    source: Registry | Any,
    group: str | FeatureGroupSchema,
    out_dir: str | Path,
    *,
    spark: SparkSession | None = None,
    compute: bool = True,
    now: datetime | None = None,
) -> Path:
    """Write `<out_dir>/<group>_v<version>_quality.html` and `.json`; return the HTML path.

    `source` is a `Registry` or anything with a `.registry` (a store). With `compute=True`,
    statistics of the newest Delta version are computed (and stored) when none are stored.
    """
    registry: Registry = source if isinstance(source, Registry) else source.registry
    schema = resolve(registry, group)
    history = statistics_history(registry, schema.name, schema.version)
    if compute:
        from featurelake.quality.monitor import statistics
        from featurelake.quality.tables import latest_version

        session = spark or getattr(source, "spark", None) or registry.spark
        location = registry.gold_location(schema.name, schema.version)
        newest = latest_version(session, location)
        if newest not in history:
            history[newest] = statistics(registry, schema, delta_version=newest, spark=session)
    drifts = drift_history(registry, schema.name, schema.version)
    checks = check_history(registry, schema.name, schema.version)
    materialized = last_materialized(registry, schema)
    data = report_data(schema, history, drifts, checks, now=now, last_materialized=materialized)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{schema.name}_v{schema.version}_quality"
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    page = out / f"{stem}.html"
    page.write_text(render_html(schema, history, drifts, data))
    return page


def report_data(
    schema: FeatureGroupSchema,
    history: dict[int | None, GroupStatistics],
    drifts: Sequence[DriftReport],
    checks: Sequence[dict[str, Any]],
    *,
    now: datetime | None = None,
    last_materialized: datetime | None = None,
) -> dict[str, Any]:
    """The JSON form: latest statistics, freshness, null rates and drift per version, checks.

    Freshness: the age of the newest event and of the last materialization (`last_materialized`,
    naive UTC) against the group's declared `freshness`.
    """
    latest = list(history.values())[-1] if history else None
    age = _age_seconds(latest.last_event if latest else None, now)
    run_age = _age_seconds(last_materialized.isoformat() if last_materialized else None, now)
    limit = schema.freshness.total_seconds() if schema.freshness else None
    return {
        "group": schema.name,
        "version": schema.version,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "latest": latest.to_dict() if latest else None,
        "freshness": {
            "last_event": latest.last_event if latest else None,
            "age_seconds": age,
            "max_age_seconds": limit,
            "fresh": None if limit is None or age is None else age <= limit,
            "last_materialized": last_materialized.isoformat() if last_materialized else None,
            "materialization_age_seconds": run_age,
            "materialization_fresh": (
                None if limit is None or run_age is None else run_age <= limit
            ),
        },
        "null_rate_by_version": {
            str(v): {n: f.null_rate for n, f in s.features.items()} for v, s in history.items()
        },
        "row_count_by_version": {str(v): s.row_count for v, s in history.items()},
        "drift": [
            {
                "reference": d.reference,
                "reference_delta_version": d.reference_delta_version,
                "current_delta_version": d.current_delta_version,
                "psi": {n: f.psi for n, f in d.features.items()},
                "ks": {n: f.ks for n, f in d.features.items()},
                "drifted": d.drifted,
            }
            for d in drifts
        ],
        "last_check": checks[-1] if checks else None,
    }


# -- HTML ----------------------------------------------------------------------------------------


def render_html(
    schema: FeatureGroupSchema,
    history: dict[int | None, GroupStatistics],
    drifts: Sequence[DriftReport],
    data: dict[str, Any],
) -> str:
    e = html.escape
    latest = list(history.values())[-1] if history else None
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Quality of {e(schema.name)} v{schema.version}</title><style>{CSS}</style>",
        "</head><body>",
        f"<h1>Feature quality: {e(schema.name)} <span class='muted'>v{schema.version}</span></h1>",
        f"<div class='sub'>{e(schema.description or '')} Entity keys: "
        f"{e(', '.join(schema.entity_keys))} · generated {e(str(data['generated_at'])[:19])} UTC"
        "</div>",
    ]
    fresh = data["freshness"]
    check = data["last_check"]
    last_drift = drifts[-1] if drifts else None
    cards = [
        ("Rows", f"{latest.row_count:,}" if latest else "—", ""),
        ("Delta version", str(latest.delta_version) if latest else "—", ""),
        ("Newest event", (fresh["last_event"] or "—")[:19].replace("T", " "), ""),
        ("Age of newest event", duration(fresh["age_seconds"]), _fresh_class(fresh["fresh"])),
        (
            "Last materialization",
            duration(fresh["materialization_age_seconds"]) + " ago"
            if fresh["materialization_age_seconds"] is not None
            else "—",
            _fresh_class(fresh["materialization_fresh"]),
        ),
        (
            "Last check",
            "—" if check is None else ("passed" if check["passed"] else "failed"),
            "" if check is None else ("ok" if check["passed"] else "bad"),
        ),
        (
            "Drifted features",
            "—" if last_drift is None else str(len(last_drift.drifted)),
            "" if last_drift is None else ("bad" if last_drift.drifted else "ok"),
        ),
    ]
    parts.append("<div class='cards'>")
    for key, value, css in cards:
        parts.append(
            f"<div class='card'><div class='k'>{e(key)}</div>"
            f"<div class='v {css}'>{e(value)}</div></div>"
        )
    parts.append("</div>")
    if fresh["max_age_seconds"]:
        parts.append(f"<p class='muted'>Freshness limit: {duration(fresh['max_age_seconds'])}.</p>")
    if latest is None:
        parts.append("<p>No statistics stored yet.</p></body></html>")
        return "".join(parts)
    parts.append("<h2>Features</h2>")
    parts.append(summary_table(latest))
    parts.append("<h2>Distributions</h2><div class='grid'>")
    for feature in latest.features.values():
        parts.append(
            f"<div class='panel'><h3>{e(feature.name)}</h3>{distribution_chart(feature)}</div>"
        )
    parts.append("</div>")
    parts.append("<h2>Null rate over Delta versions</h2><div class='grid'>")
    for name in latest.features:
        points = [
            (str(v), s.features[name].null_rate) for v, s in history.items() if name in s.features
        ]
        parts.append(
            f"<div class='panel'><h3>{e(name)}</h3>"
            f"{bar_chart(points, fmt='{:.1%}', color=ORANGE, x_label='Delta version')}</div>"
        )
    parts.append("</div>")
    parts.append("<h2>Drift over versions</h2>")
    if not drifts:
        parts.append("<p class='muted'>No drift computed yet (quality.drift(...)).</p>")
    else:
        parts.append(
            f"<p class='muted'>PSI threshold {drifts[-1].psi_threshold:g}, KS threshold "
            f"{drifts[-1].ks_threshold:g}; the dashed line is the PSI threshold, red bars are "
            "over it.</p>"
            "<div class='grid'>"
        )
        names = list(dict.fromkeys(n for d in drifts for n in d.features))
        for name in names:
            points = [
                (f"v{d.current_delta_version}", d.features[name].psi or 0.0)
                for d in drifts
                if name in d.features
            ]
            parts.append(
                f"<div class='panel'><h3>{e(name)} — PSI</h3>"
                f"{bar_chart(points, fmt='{:.3f}', threshold=drifts[-1].psi_threshold)}</div>"
            )
        parts.append("</div>")
        parts.append(drift_table(drifts[-1]))
    parts.append("<h2>Latest check</h2>")
    parts.append(check_table(check))
    parts.append("</body></html>")
    return "".join(parts)


def summary_table(stats: GroupStatistics) -> str:
    """The statistics of every feature as an HTML table."""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "feature",
            "kind",
            "count",
            "nulls",
            "null rate",
            "distinct≈",
            "mean",
            "std",
            "min",
            "p50",
            "max",
        )
    )
    rows = []
    for f in stats.features.values():
        cells = [
            html.escape(f.name),
            f.kind,
            f"{f.count:,}",
            f"{f.null_count:,}",
            f"{_null_bar(f.null_rate)} {f.null_rate:.1%}",
            f"{f.distinct_approx:,}",
            number(f.mean),
            number(f.std),
            number(f.min),
            number(f.quantiles.get("p50")),
            number(f.max),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _null_bar(rate: float) -> str:
    width = 60
    filled = max(0.0, min(1.0, rate)) * width
    color = RED if rate > 0.2 else ORANGE if rate > 0.05 else GREEN
    return (
        f"<svg width='{width}' height='8' style='vertical-align:middle'>"
        f"<rect width='{width}' height='8' fill='{GREY}'/>"
        f"<rect width='{filled:.1f}' height='8' fill='{color}'/></svg>"
    )


def distribution_chart(feature: FeatureStatistics) -> str:
    """An inline SVG of a feature's distribution: quantiles, or its top values."""
    if feature.kind == "numerical" and feature.quantiles:
        return _quantile_chart(feature)
    if feature.top_values:
        points = [(str(v), float(n)) for v, n in feature.top_values]
        return _hbar_chart(points, total=max(feature.count, 1))
    return "<p class='muted'>No distribution for this type.</p>"


def _quantile_chart(feature: FeatureStatistics) -> str:
    """A box-style strip: min, p1..p99, max on one axis, with the p25-p75 box and median."""
    q = feature.quantiles
    low, high = q["p1"], q["p99"]
    width, height, pad = 340, 96, 16
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return pad + (value - low) / span * (width - 2 * pad)

    y = 40
    out = [f"<svg width='{width}' height='{height}' role='img'>"]
    out.append(f"<line x1='{x(low):.1f}' x2='{x(high):.1f}' y1='{y}' y2='{y}' stroke='{GREY}'/>")
    out.append(
        f"<line x1='{x(q['p5']):.1f}' x2='{x(q['p95']):.1f}' y1='{y}' y2='{y}' "
        f"stroke='{BLUE}' stroke-width='2'/>"
    )
    out.append(
        f"<rect x='{x(q['p25']):.1f}' y='{y - 12}' width='{max(x(q['p75']) - x(q['p25']), 1):.1f}'"
        f" height='24' fill='{BLUE}' fill-opacity='0.25' stroke='{BLUE}'/>"
    )
    out.append(
        f"<line x1='{x(q['p50']):.1f}' x2='{x(q['p50']):.1f}' y1='{y - 12}' y2='{y + 12}' "
        f"stroke='{BLUE}' stroke-width='3'/>"
    )
    for key in ("p1", "p99"):
        out.append(f"<circle cx='{x(q[key]):.1f}' cy='{y}' r='3' fill='{BLUE}'/>")
    out.append(f"<text x='{pad}' y='{y + 32}'>p1 {number(low)} (min {number(feature.min)})</text>")
    out.append(
        f"<text x='{width - pad}' y='{y + 32}' text-anchor='end'>p99 {number(high)} "
        f"(max {number(feature.max)})</text>"
    )
    out.append(
        f"<text x='{x(q['p50']):.1f}' y='{y - 18}' text-anchor='middle'>"
        f"p50 {number(q['p50'])}</text>"
    )
    out.append(
        f"<text x='{width / 2}' y='{height - 2}' text-anchor='middle' fill='#57606a'>"
        f"axis p1 to p99 · box p25-p75 · line p5-p95 · mean {number(feature.mean)}</text></svg>"
    )
    return "".join(out)


def _hbar_chart(points: Sequence[tuple[str, float]], *, total: float) -> str:
    width, row, label_w = 340, 18, 90
    height = row * len(points) + 4
    bar_w = width - label_w - 70
    top = max((v for _, v in points), default=1.0) or 1.0
    out = [f"<svg width='{width}' height='{height}' role='img'>"]
    for i, (label, value) in enumerate(points):
        y = i * row + 2
        w = value / top * bar_w
        out.append(
            f"<text x='{label_w - 6}' y='{y + 12}' text-anchor='end'>"
            f"{html.escape(label[:14])}</text>"
            f"<rect x='{label_w}' y='{y + 2}' width='{w:.1f}' height='{row - 5}' fill='{BLUE}'/>"
            f"<text x='{label_w + w + 4:.1f}' y='{y + 12}'>{value / total:.1%}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    points: Sequence[tuple[str, float]],
    *,
    fmt: str,
    color: str = BLUE,
    threshold: float | None = None,
    x_label: str = "",
) -> str:
    """An inline SVG bar chart of (label, value) points; bars over `threshold` are red."""
    if not points:
        return "<p class='muted'>No data.</p>"
    if threshold is None and not any(v for _, v in points):
        return f"<p class='muted'>{fmt.format(0)} in every version shown.</p>"
    width, height, pad_l, pad_b, pad_t = 340, 130, 44, 28, 14
    top = max([v for _, v in points] + [threshold or 0.0]) or 1.0
    plot_h = height - pad_b - pad_t
    slot = (width - pad_l - 8) / len(points)
    bar = min(36.0, slot * 0.7)
    out = [f"<svg width='{width}' height='{height}' role='img'>"]
    out.append(
        f"<line x1='{pad_l}' x2='{width - 4}' y1='{pad_t + plot_h}' y2='{pad_t + plot_h}' "
        f"stroke='{GREY}'/>"
        f"<text x='{pad_l - 4}' y='{pad_t + 4}' text-anchor='end'>{fmt.format(top)}</text>"
        f"<text x='{pad_l - 4}' y='{pad_t + plot_h}' text-anchor='end'>{fmt.format(0)}</text>"
    )
    for i, (label, value) in enumerate(points):
        h = value / top * plot_h
        x = pad_l + i * slot + (slot - bar) / 2
        fill = RED if threshold is not None and value > threshold else color
        out.append(
            f"<rect x='{x:.1f}' y='{pad_t + plot_h - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
            f"fill='{fill}'><title>{html.escape(label)}: {fmt.format(value)}</title></rect>"
        )
        if len(points) <= 12:
            out.append(
                f"<text x='{x + bar / 2:.1f}' y='{height - 12}' text-anchor='middle'>"
                f"{html.escape(label)}</text>"
            )
    if threshold is not None:
        ty = pad_t + plot_h - threshold / top * plot_h
        out.append(
            f"<line x1='{pad_l}' x2='{width - 4}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='{RED}' "
            f"stroke-dasharray='4 3'/>"
        )
    if x_label:
        out.append(
            f"<text x='{(width + pad_l) / 2}' y='{height - 1}' text-anchor='middle' "
            f"fill='#57606a'>{html.escape(x_label)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def drift_table(report: DriftReport) -> str:
    """PSI, KS and status per feature of one drift report, as an HTML table."""
    rows = []
    for f in report.features.values():
        status = "<span class='bad'>drifted</span>" if f.drifted else "<span class='ok'>ok</span>"
        rows.append(
            f"<tr><td>{html.escape(f.feature)}</td><td>{f.kind}</td><td>{number(f.psi)}</td>"
            f"<td>{number(f.ks)}</td><td>{status}</td></tr>"
        )
    return (
        f"<p class='muted'>Latest: Delta version {report.current_delta_version} against "
        f"{html.escape(report.reference)}.</p><table><tr><th>feature</th><th>kind</th>"
        f"<th>PSI</th><th>KS</th><th>status</th></tr>{''.join(rows)}</table>"
    )


def check_table(check: dict[str, Any] | None) -> str:
    """The rule results of one stored check report, as an HTML table."""
    if check is None:
        return "<p class='muted'>No checks recorded (declare 'checks' in the group YAML).</p>"
    rows = []
    for r in check["results"]:
        status = "<span class='ok'>pass</span>" if r["passed"] else "<span class='bad'>fail</span>"
        rows.append(
            f"<tr><td>{html.escape(r['rule'])}</td><td>{html.escape(r['type'])}</td>"
            f"<td>{status}</td><td>{r['failing_rows']:,} / {r['total_rows']:,}</td>"
            f"<td style='text-align:left'>{html.escape(r['message'])}</td></tr>"
        )
    action = check.get("action") or "on demand"
    return (
        f"<p class='muted'>Checked {html.escape(str(check.get('checked_at', ''))[:19])} "
        f"({html.escape(action)}); quarantined rows: {check.get('quarantined_rows', 0)}.</p>"
        "<table><tr><th>rule</th><th>type</th><th>result</th><th>failing rows</th>"
        f"<th style='text-align:left'>detail</th></tr>{''.join(rows)}</table>"
    )


def number(value: Any) -> str:
    """A value as short, escaped text (`—` for None and NaN)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if value != value:  # NaN
        return "—"
    if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"


def duration(seconds: float | None) -> str:
    """Seconds as `42s`, `3.5m`, `2.0h` or `1.5d` (`—` for None)."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _fresh_class(fresh: bool | None) -> str:
    return "" if fresh is None else ("ok" if fresh else "bad")


def _age_seconds(last_event: str | None, now: datetime | None) -> float | None:
    if not last_event:
        return None
    event = datetime.fromisoformat(last_event)
    if event.tzinfo is None:
        event = event.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return (reference - event).total_seconds()
