"""The HTML explanation report: global importance and the spread of attributions per column."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from framework.explain.attributions import Attributions
from framework.governance.plots import importance, png, pyplot


def _data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def beeswarm(found: Attributions, output: int, frame: pd.DataFrame, rows: int, top: int = 15):
    """Per column, each row's attribution as a dot, coloured by the column's value (low blue,
    high red; categories grey), jittered vertically: a beeswarm-like summary."""
    plt = pyplot()
    rng = np.random.default_rng(0)
    take = rng.choice(found.rows, size=min(rows, found.rows), replace=False)
    values = found.values[take, output, :]
    order = np.argsort(np.abs(values).mean(axis=0))[-top:]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(order) + 1.4))
    cmap = plt.get_cmap("coolwarm")
    for y, c in enumerate(order):
        column = found.columns[c]
        raw = frame[column].iloc[take]
        if pd.api.types.is_numeric_dtype(raw):
            x = raw.to_numpy(dtype=float)
            finite = x[np.isfinite(x)]
            lo, hi = (0.0, 1.0)
            if len(finite):
                lo, hi = float(np.percentile(finite, 5)), float(np.percentile(finite, 95))
            scaled = np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            colours = [cmap(v) if np.isfinite(v) else (0.6, 0.6, 0.6, 1) for v in scaled]
        else:
            colours = [(0.5, 0.5, 0.5, 1)] * len(take)
        jitter = rng.uniform(-0.3, 0.3, size=len(take))
        ax.scatter(values[:, c], y + jitter, s=6, c=colours, alpha=0.8, linewidths=0)
    ax.set_yticks(range(len(order)), [found.columns[c] for c in order])
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"attribution to {found.outputs[output]} ({found.output_space})")
    ax.set_title("Attributions per column (colour: the column's value, low blue to high red)")
    return fig


def write_report(
    path: Path, found: Attributions, frame: pd.DataFrame, title: str, rows: int
) -> Path:
    """The HTML report beside the Parquet file."""
    output = len(found.outputs) - 1  # the last class (the positive one for two classes)
    parts = [
        f"<h1>Explanations: {html.escape(title)}</h1>",
        f"<p>{found.rows} rows explained by <b>{html.escape(found.method)}</b> in the "
        f"{html.escape(found.output_space)} space; "
        + ("base value + attributions = output." if found.additive else "not additive.")
        + "</p>",
    ]
    imp = found.importance()
    parts.append(
        f'<img alt="global importance" '
        f'src="{_data_uri(importance(imp, "Global importance (all outputs)"))}">'
    )
    if found.rows:
        parts.append(
            f'<img alt="attributions per column" '
            f'src="{_data_uri(png(beeswarm(found, output, frame.reset_index(drop=True), rows)))}">'
        )
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.5f}</td></tr>"
        for k, v in sorted(imp.items(), key=lambda kv: -kv[1])
    )
    parts.append(f"<h2>Mean |attribution|</h2><table>{table}</table>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><style>body{font-family:sans-serif;max-width:960px;margin:auto}"
        "td{padding:2px 8px}</style></head><body>" + "".join(parts) + "</body></html>"
    )
    path.write_text(page)
    return path
