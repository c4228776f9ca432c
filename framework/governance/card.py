"""Model cards in the Hugging Face format, with plots and an HTML rendering.

The card is built from what the registry holds for a version (its manifest, metrics,
validation report and ``evaluation.npz``), so ``task=card version=N`` renders the same card
again. The human fields come from the ``card`` config group; any left empty is listed as a
to-do, never invented.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from framework.config.card import CardConfig

HUMAN_FIELDS = {
    "intended_use": "Intended use",
    "out_of_scope": "Out-of-scope use",
    "limitations": "Limitations",
    "owners": "Owners",
    "license": "License",
    "contact": "Contact",
}
Block = tuple[str, Any]


@dataclass
class CardInputs:
    """Everything the card is made of, as stored with the version."""

    name: str
    version: int | None
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    validation: dict[str, Any]
    evaluation: dict[str, np.ndarray] | None
    card: CardConfig


def evaluation_arrays(
    y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None, groups: dict[str, Any]
) -> bytes:
    """``evaluation.npz``: the test split's truth, predictions, scores and sensitive groups."""
    arrays: dict[str, np.ndarray] = {
        "y_true": np.asarray(y_true).astype(str if scores is not None else float),
        "y_pred": np.asarray(y_pred).astype(str if scores is not None else float),
    }
    if scores is not None:
        arrays["scores"] = np.asarray(scores, dtype=np.float64)
    for column, values in groups.items():
        series = values.astype(object).where(values.notna(), "(missing)").astype(str)
        arrays[f"group/{column}"] = series.to_numpy().astype(str)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_evaluation(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _front_matter(inp: CardInputs) -> dict[str, Any]:
    m, card = inp.manifest, inp.card
    task = m.get("task", "classification")
    hf_task = f"tabular-{task}"
    data = m.get("data", {})
    tags = [hf_task, "onnx", "framework", m.get("model_type", "model"), *card.tags]
    test = (m.get("metrics") or {}).get("test") or {}
    front: dict[str, Any] = {}
    if card.license:
        front["license"] = card.license
    front.update(
        tags=list(dict.fromkeys(tags)),
        datasets=[data.get("name", "unknown")],
        metrics=list(test),
        library_name="onnx",
        pipeline_tag=hf_task,
        **{
            "model-index": [
                {
                    "name": inp.name,
                    "results": [
                        {
                            "task": {"type": hf_task, "name": hf_task.replace("-", " ").title()},
                            "dataset": {
                                "type": data.get("name", "unknown"),
                                "name": data.get("name", "unknown"),
                                "split": "test",
                            },
                            "metrics": [
                                {"type": k, "value": round(float(v), 6), "name": k}
                                for k, v in test.items()
                            ],
                        }
                    ],
                }
            ]
        },
    )
    return front


def _table(header: list[str], rows: list[list[Any]]) -> Block:
    return ("table", (header, rows))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def card_blocks(inp: CardInputs) -> tuple[list[Block], dict[str, bytes], list[str]]:
    """The card's content blocks, its plots (file name -> PNG) and the to-do list."""
    from framework.governance import plots

    m, card = inp.manifest, inp.card
    task = m.get("task", "classification")
    images: dict[str, bytes] = {}
    todo = [label for key, label in HUMAN_FIELDS.items() if not getattr(card, key)]
    title = f"{inp.name}" + (f" v{inp.version}" if inp.version is not None else "")
    blocks: list[Block] = [("h1", f"Model card: {title}")]
    blocks.append(
        (
            "p",
            f"A `{m.get('model_type')}` {task} model on the `{m.get('data', {}).get('name')}` "
            f"data, exported whole (cleaning, encoding and model) to one ONNX graph of "
            f"{m.get('onnx', {}).get('size_bytes', 0) / 1024:.1f} KiB. Created "
            f"{m.get('created_at')}.",
        )
    )
    if card.owners:
        blocks.append(("p", "Owners: " + ", ".join(card.owners)))
    if card.contact:
        blocks.append(("p", f"Contact: {card.contact}"))
    for key, heading in (
        ("intended_use", "Intended use"),
        ("out_of_scope", "Out-of-scope use"),
        ("limitations", "Limitations"),
    ):
        blocks.append(("h2", heading))
        text = getattr(card, key)
        blocks.append(("p", text if text else f"TO DO: not stated (card.{key})."))

    blocks.append(("h2", "Training data and its checks"))
    data, report = m.get("data", {}), inp.validation
    blocks.append(
        (
            "p",
            f"Data `{data.get('name')}`, fingerprint `{str(data.get('fingerprint', ''))[:16]}`; "
            f"splits {data.get('splits')}. The checks saw {report.get('rows_in')} rows and kept "
            f"{report.get('rows_out')}; {report.get('values_repaired', 0)} values repaired.",
        )
    )
    failures = report.get("failures") or []
    if failures:
        blocks.append(
            _table(
                ["column", "check", "rows", "action"],
                [[f["column"], f["kind"], f["count"], f["action"]] for f in failures[:20]],
            )
        )
    blocks += _guard_blocks(report.get("guards") or {})
    schema = m.get("schema", {})
    features = [n for n, s in schema.items() if s.get("role", "feature") == "feature"]
    blocks.append(
        _table(
            ["feature", "dtype", "description"],
            [[n, schema[n].get("dtype"), schema[n].get("description") or ""] for n in features],
        )
    )

    blocks.append(("h2", "Evaluation"))
    test = (m.get("metrics") or {}).get("test") or {}
    validation = (m.get("metrics") or {}).get("validation") or {}
    blocks.append(
        _table(
            ["metric", "test", "validation"],
            [[k, _fmt(v), _fmt(validation.get(k))] for k, v in test.items()],
        )
    )
    evaluation = inp.evaluation
    test_report = inp.metrics.get("test") or {}
    if task == "classification":
        classes = list(test_report.get("classes") or m.get("signature", {}).get("classes", []))
        if test_report.get("confusion_matrix"):
            images["card_confusion.png"] = plots.confusion(test_report["confusion_matrix"], classes)
        if evaluation is not None and "scores" in evaluation:
            roc, pr = plots.roc_pr(evaluation["y_true"], evaluation["scores"], classes)
            images["card_roc.png"], images["card_pr.png"] = roc, pr
            images["card_calibration.png"] = plots.calibration(
                evaluation["y_true"], evaluation["scores"], classes
            )
    elif evaluation is not None:
        images["card_fit.png"] = plots.regression_fit(
            evaluation["y_true"].astype(float), evaluation["y_pred"].astype(float)
        )
    for name in (
        "card_confusion.png",
        "card_roc.png",
        "card_pr.png",
        "card_calibration.png",
        "card_fit.png",
    ):
        if name in images:
            blocks.append(("img", name))

    subgroups = test_report.get("subgroups") or {}
    main = "f1_macro" if task == "classification" else "rmse"
    if subgroups:
        blocks.append(("h3", "Per subgroup"))
        for column, by_group in subgroups.items():
            names = sorted({k for g in by_group.values() for k in g if k != "rows"})
            shown = [k for k in (main, "accuracy", "mae", "roc_auc") if k in names]
            blocks.append(
                _table(
                    [column, "rows", *shown],
                    [
                        [g, int(v.get("rows", 0)), *(_fmt(v.get(k)) for k in shown)]
                        for g, v in by_group.items()
                    ],
                )
            )
        images["card_groups.png"] = plots.groups(subgroups, main)
        blocks.append(("img", "card_groups.png"))

    blocks.append(("h2", "Fairness"))
    fairness = (m.get("gates") or {}).get("fairness")
    if not fairness:
        blocks.append(
            (
                "p",
                "No sensitive column is declared (role: sensitive), so no group "
                "was compared. TO DO if the model affects people.",
            )
        )
        todo.append("Fairness: no sensitive column declared")
    else:
        for column in fairness["columns"]:
            figures = [
                f"{k.replace('_', ' ')} {column[k]:.3f}"
                for k in (
                    "demographic_parity_difference",
                    "demographic_parity_ratio",
                    "equalized_odds_difference",
                    "error_gap",
                )
                if k in column
            ]
            tests = ", ".join(
                f"{k.replace('_', ' ')} p={v:.3g}" for k, v in column.get("p_values", {}).items()
            )
            text = ", ".join(figures) or "too few rows per group to judge"
            if tests:
                text += f" (tests of equal rates across groups: {tests})"
            blocks.append(("p", f"`{column['column']}`: {text}."))
            rows = []
            for g, f in column["groups"].items():
                interval = f.get("interval_95", {})
                spread = "; ".join(f"{k} [{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in interval.items())
                key = "selection_rate" if "selection_rate" in f else "mae"
                rows.append(
                    [g, f["rows"], _fmt(f.get(key)), "yes" if f["gated"] else "no", spread or "-"]
                )
            blocks.append(_table(["group", "rows", key, "gated", "95% bootstrap interval"], rows))
        blocks.append(
            (
                "p",
                "Gate: passed (limits in gates.fairness; a gap breaches only when a "
                f"test of equal rates rejects at alpha={fairness['alpha']}).",
            )
        )

    blocks.append(("h2", "Global feature importance"))
    explain = m.get("explain") or {}
    importance = explain.get("importance")
    if importance:
        images["card_importance.png"] = plots.importance(
            importance, f"Mean |attribution| on the test split ({explain.get('method')})"
        )
        blocks.append(("img", "card_importance.png"))
        blocks.append(
            (
                "p",
                f"Explanations: `{explain.get('method')}`"
                + (" (exact)" if explain.get("exact") else " (model-agnostic)")
                + "; served at POST /v1/models/{name}/explain.",
            )
        )
    else:
        blocks.append(("p", "No explanation was computed for this version."))

    blocks += _robustness_blocks(m.get("robustness"), m.get("ood"))
    blocks.append(("h2", "Optimization"))
    optimization = m.get("optimization")
    if optimization:
        rows = [
            [
                v["name"],
                v["size_bytes"],
                f"{v['p50_us']:.1f}",
                f"{v['rows_per_s']:.0f}",
                _fmt(v["metrics"].get(optimization["quality_metric"])),
            ]
            for v in [optimization["parent"], *optimization["variants"]]
        ]
        blocks.append(
            _table(["variant", "bytes", "p50 us", "rows/s", optimization["quality_metric"]], rows)
        )
        blocks.append(("p", f"Served: `{optimization['chosen']}`."))
    else:
        onnx = m.get("onnx", {})
        latency = onnx.get("latency_us", {})
        blocks.append(
            (
                "p",
                f"Not optimized (optimize: none). Single-row latency p50 "
                f"{latency.get('p50', 0):.1f} us, p99 {latency.get('p99', 0):.1f} us.",
            )
        )
    champion = (m.get("gates") or {}).get("champion")
    if champion:
        verdict = "passed" if champion["passed"] else "held back: " + "; ".join(champion["reasons"])
        blocks.append(("p", f"Champion gate against v{champion['champion']}: {verdict}."))

    blocks.append(("h2", "Lineage"))
    packages = m.get("packages") or {}
    blocks.append(
        _table(
            ["item", "value"],
            [
                ["parent version", _fmt(m.get("parent_version"))],
                ["data fingerprint", str(data.get("fingerprint"))],
                ["code version", str(m.get("code_version"))],
                ["seed", _fmt((m.get("config") or {}).get("train", {}).get("seed"))],
                *[[f"package {k}", v] for k, v in sorted(packages.items())],
            ],
        )
    )
    blocks.append(("p", "Rebuild it with `python -m framework task=reproduce version=N`."))
    if todo:
        blocks.append(("h2", "To do"))
        blocks.append(("ul", todo))
    return blocks, images, todo


def _robustness_blocks(figures: dict[str, Any] | None, ood: dict[str, Any] | None) -> list[Block]:
    """Robustness under bounded perturbations and a black-box attack; the OOD detector."""
    blocks: list[Block] = [("h2", "Robustness and out-of-distribution input")]
    if not figures or "clean" not in figures:
        note = (figures or {}).get("note", "Not measured for this version (train.robustness).")
        blocks.append(("p", note))
    else:
        metric, eps = figures["metric"], figures["epsilon"]
        rows = [["clean test rows", _fmt(figures["clean"])]]
        rows += [
            [f"`{name}` moved up to {eps} std", _fmt(value)]
            for name, value in figures.get("most_sensitive", [])
        ]
        rows.append([f"every numeric feature moved up to {eps} std", _fmt(figures["all_features"])])
        blocks.append(
            (
                "p",
                f"{metric} on the test split under uniform perturbations of at "
                f"most {eps} standard deviations (the five most sensitive features):",
            )
        )
        blocks.append(_table(["input", metric], rows))
        attack = figures.get("attack") or {}
        if "queries" in attack:
            flagged = attack.get("flagged_by_ood_share")
            blocks.append(
                (
                    "p",
                    f"Black-box attack: {attack['method']} on {attack['rows']} test rows, "
                    f"{attack['queries']:,} model queries in {attack['seconds']} s. It turned "
                    f"{attack['turned_share']:.0%} of them (median distance "
                    f"{_fmt(attack['median_distance_std'])} std); accuracy under attack at "
                    f"{eps} std: {_fmt(attack['accuracy_under_attack'])}."
                    + (
                        f" The out-of-distribution detector flags {flagged:.0%} of the rows it "
                        "built."
                        if flagged is not None
                        else ""
                    ),
                )
            )
        elif attack.get("note"):
            blocks.append(("p", attack["note"]))
    if ood:
        blocks.append(
            (
                "p",
                f"Out-of-distribution detector (`detector.onnx`, `serve.ood`): {ood['method']} on "
                f"{len(ood['features'])} numeric features; threshold {ood['threshold']:.1f} "
                f"(the {ood['quantile']} quantile of the training distances times "
                f"{ood['margin']}). It flags {ood['train_flagged_share']:.1%} of training rows "
                f"and {ood.get('test_flagged_share', 0.0):.1%} of test rows.",
            )
        )
    return blocks


def _guard_blocks(guards: dict[str, Any]) -> list[Block]:
    """The poisoning and leakage guards: what each saw and what its policy did."""
    blocks: list[Block] = [("h3", "Poisoning and leakage guards")]
    if "note" in guards or not guards:
        blocks.append(("p", guards.get("note", "The guards did not run for this version.")))
        return blocks
    rows = []
    if "duplicates" in guards:
        d = guards["duplicates"]
        rows.append(
            [
                "exact duplicates",
                d["policy"],
                f"{d['rows']} rows ({d['share']:.1%}); "
                f"{d['conflicting_labels']} with conflicting labels; "
                f"dropped {d.get('dropped', 0)}",
            ]
        )
    if "near_duplicates" in guards:
        d = guards["near_duplicates"]
        rows.append(
            [
                "near duplicates",
                d["policy"],
                f"{d['rows']} rows within {d['tolerance']} "
                f"of another; dropped {d.get('dropped', 0)}",
            ]
        )
    if "leakage" in guards:
        d = guards["leakage"]
        parts = [
            f"{name}: {d[name]['exact']} exact, {d[name]['near']} near, dropped "
            f"{d[name].get('dropped', 0)}"
            for name in ("validation", "test")
            if name in d
        ]
        rows.append(["leakage across splits", d["policy"], "; ".join(parts)])
    if "label_errors" in guards:
        d = guards["label_errors"]
        seen = d.get("note") or (
            f"{d['suspected']} of {d['checked_rows']} labels suspected ({d['share']:.1%}), by "
            f"given label {d.get('by_given_label')}; dropped from training "
            f"{d.get('dropped_from_train', 0)}. Method: {d['method']}"
        )
        rows.append(["label errors", d["policy"], seen])
    if "label_shift" in guards:
        d = guards["label_shift"]
        seen = d.get("note") or (
            f"distance {d['distance']:.3f} against version {d['against_version']} (limit "
            f"{d['limit']}){' - SHIFTED' if d.get('shifted') else ''}; now {d['current']}, "
            f"then {d['previous']}"
        )
        rows.append(["label distribution shift", d["policy"], seen])
    blocks.append(_table(["guard", "policy", "what it saw"], rows))
    return blocks


def _markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + value, ""]
        elif kind == "p":
            out += [value, ""]
        elif kind == "ul":
            out += [f"- {item}" for item in value] + [""]
        elif kind == "img":
            out += [f"![{value}]({value})", ""]
        elif kind == "table":
            header, rows = value
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("")
    return "\n".join(out)


def _html(blocks: list[Block], title: str) -> str:
    import re

    def inline(text: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

    out: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{inline(value)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{inline(value)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in value) + "</ul>")
        elif kind == "img":
            out.append(f'<img src="{html.escape(value)}" alt="{html.escape(value)}">')
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{inline(str(h))}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(out)}</body></html>"
    )


def version_inputs(version: Any, override: CardConfig | None = None) -> CardInputs:
    """A registered version's card inputs; fields set in ``override`` win over the stored ones."""
    import json

    manifest = version.manifest
    stored = CardConfig.model_validate((manifest.get("config") or {}).get("card") or {})
    if override is not None:
        changed = {k: v for k, v in override.model_dump().items() if v}
        stored = stored.model_copy(update=changed)
    files = manifest.get("files", {})

    def read(name: str) -> bytes | None:
        return version.file(name).read_bytes() if name in files else None

    evaluation = read("evaluation.npz")
    return CardInputs(
        name=version.name,
        version=version.version,
        manifest=manifest,
        metrics=json.loads(read("metrics.json") or b"{}"),
        validation=json.loads(read("validation_report.json") or b"{}"),
        evaluation=read_evaluation(evaluation) if evaluation else None,
        card=stored,
    )


def render_card(inp: CardInputs) -> tuple[dict[str, bytes], list[str]]:
    """``model_card.md`` (front matter + Markdown), ``model_card.html`` and the PNG plots."""
    blocks, images, todo = card_blocks(inp)
    front = yaml.safe_dump(_front_matter(inp), sort_keys=False, allow_unicode=True)
    markdown = f"---\n{front}---\n\n{_markdown(blocks)}"
    files = {
        "model_card.md": markdown.encode(),
        "model_card.html": _html(blocks, f"Model card: {inp.name}").encode(),
        **images,
    }
    return files, todo
