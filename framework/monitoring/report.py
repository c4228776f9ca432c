"""The drift report as files: JSON for machines, one self-contained HTML page for people."""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

from framework.data.files import write_atomic
from framework.monitoring.drift import DriftReport, FeatureDrift


def _num(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _bars(feature: FeatureDrift, width: int = 420, height: int = 120) -> str:
    """Inline SVG: reference (grey) and current (blue or red) share per bin or category."""
    n = len(feature.bins)
    if n == 0:
        return "<p>not tested (no values)</p>"
    top = max([*feature.reference, *feature.current, 1e-9])
    slot = width / n
    bar = max(1.0, slot * 0.4)
    colour = "#c0392b" if feature.drifted else "#2e86c1"
    parts = [
        f'<svg width="{width}" height="{height + 18}" role="img" '
        f'aria-label="distribution of {html.escape(feature.name)}">'
    ]
    for i, (ref, cur) in enumerate(zip(feature.reference, feature.current, strict=True)):
        x = i * slot
        for offset, share, fill, who in (
            (0, ref, "#aab7b8", "reference"),
            (bar, cur, colour, "current"),
        ):
            h = height * share / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{fill}"><title>{html.escape(feature.bins[i])}: '
                f"{who} {share:.3f}</title></rect>"
            )
    parts.append(
        f'<text x="0" y="{height + 14}" font-size="10">{html.escape(feature.bins[0])}</text>'
    )
    parts.append(
        f'<text x="{width}" y="{height + 14}" font-size="10" text-anchor="end">'
        f"{html.escape(feature.bins[-1])}</text></svg>"
    )
    return "".join(parts)


def render_html(report: DriftReport, context: dict[str, Any]) -> str:
    verdict = "DRIFT" if report.drift else "no drift"
    colour = "#c0392b" if report.drift else "#1e8449"
    rows = []
    features = list(report.features)
    if report.prediction is not None:
        features.append(report.prediction)
    for f in features:
        if f.drifted:
            flag = "<b style='color:#c0392b'>drifted</b>"
        elif f.status == "untestable":
            flag = "<b style='color:#b9770e'>untestable</b>"
        else:
            flag = "ok"
        if f.reason:
            flag += f"<br><small>{html.escape(f.reason)}</small>"
        rows.append(
            "<tr>"
            f"<td>{html.escape(f.name)}</td><td>{f.kind}</td><td>{f.test}</td>"
            f"<td>{_num(f.statistic)}</td><td>{_num(f.p_value)}</td><td>{_num(f.p_adjusted)}</td>"
            f"<td>{_num(f.psi)}</td><td>{_num(f.reference_missing_rate, 3)} / "
            f"{_num(f.missing_rate, 3)}</td><td>{flag}</td></tr>"
        )
    plots = "".join(
        f"<div class='plot'><h3>{html.escape(f.name)}{' - drifted' if f.drifted else ''}</h3>"
        f"{_bars(f)}<p>PSI {_num(f.psi)}, {f.test} p (adjusted) {_num(f.p_adjusted)}</p></div>"
        for f in features
    )
    about = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in context.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
.plot {{ display: inline-block; margin: 1em; vertical-align: top; }}
</style></head><body>
<h1 style="color:{colour}">{verdict}: {len(report.drifted)} of {len(report.features)} features
drifted</h1>
<ul>{about}
<li>rows checked: {report.rows}; reference rows: {report.reference_rows}</li>
<li>a feature drifts when its p-value, corrected ({report.correction}), is under
{report.alpha} and its PSI is at least {report.min_psi}</li>
<li>drifted: {html.escape(", ".join(report.drifted) or "none")}</li></ul>
<table><tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p</th>
<th>p adjusted</th><th>PSI</th><th>missing (reference / current)</th><th>verdict</th></tr>
{"".join(rows)}</table>
<h2>Distributions (grey: reference, coloured: current)</h2>
{plots}
</body></html>
"""


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_report(
    report: DriftReport, folder: Path, stem: str, context: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.html`` into ``folder``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"created_at": time.time(), **context, **report.to_dict()}
    json_path = folder / f"{stem}.json"
    write_atomic(json_path, json.dumps(finite(document), indent=2, default=str))
    html_path = folder / f"{stem}.html"
    write_atomic(html_path, render_html(report, context))
    return json_path, html_path
