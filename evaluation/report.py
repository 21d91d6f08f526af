"""Write evaluation results: JSON, CSV (tidy), a markdown table and a PNG plot (as the paper's Figure 3)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from evaluation.results import SystemResult

HEADLINE_K = 10


class ReportFiles(BaseModel):
    json_path: Path
    csv_path: Path
    markdown_path: Path
    plot_path: Path
    ranks_path: Path | None = None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def results_json(results: Sequence[SystemResult], meta: dict | None = None) -> str:
    payload = {"meta": meta or {}, "systems": [r.model_dump(mode="json") for r in results]}
    return json.dumps(payload, indent=2)


def results_csv_rows(results: Sequence[SystemResult]) -> list[dict[str, object]]:
    """Tidy rows ``system, metric, k, round, value``; scalar metrics have an empty round."""
    rows: list[dict[str, object]] = []
    for result in results:
        for k, values in sorted(result.hits.items()):
            rows += [
                {"system": result.system, "metric": "hits", "k": k, "round": r, "value": v}
                for r, v in zip(result.rounds, values, strict=True)
            ]
        for k, values in sorted(result.recall.items()):
            rows += [
                {"system": result.system, "metric": "recall", "k": k, "round": r, "value": v}
                for r, v in zip(result.rounds, values, strict=True)
            ]
        rows += [
            {"system": result.system, "metric": "atr", "k": "", "round": r, "value": v}
            for r, v in zip(result.rounds, result.atr, strict=True)
        ]
        rows.append({"system": result.system, "metric": "bri", "k": "", "round": "", "value": result.bri})
        if result.repeated_questions is not None:
            rows.append(
                {
                    "system": result.system,
                    "metric": "repeated_questions",
                    "k": "",
                    "round": "",
                    "value": result.repeated_questions,
                }
            )
        rows.append(
            {"system": result.system, "metric": "n_dialogs", "k": "", "round": "", "value": result.n_dialogs}
        )
    return rows


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(results: Sequence[SystemResult], k: int = HEADLINE_K) -> str:
    """One table, rounds as columns: Hits@k (%) and ATR per system, with BRI and repeats per system."""
    n_rounds = max(len(r.rounds) for r in results)
    header = ["system", "metric", *[str(i) for i in range(n_rounds)], "BRI ↓", "repeats/dialog", "dialogs"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for result in results:
        hits = result.hits.get(k)
        pad = [""] * (n_rounds - len(result.rounds))
        repeats = _fmt(result.repeated_questions, 2) if result.repeated_questions is not None else "–"
        if hits is not None:
            lines.append(
                "| "
                + " | ".join(
                    [
                        result.system,
                        f"Hits@{k} (%)",
                        *[_fmt(v) for v in hits],
                        *pad,
                        _fmt(result.bri, 3),
                        repeats,
                        str(result.n_dialogs),
                    ]
                )
                + " |"
            )
        lines.append(
            "| " + " | ".join([result.system, "ATR", *[_fmt(v) for v in result.atr], *pad, "", "", ""]) + " |"
        )
    return "\n".join(lines) + "\n"


LEGEND = (
    "Hits@10: % of dialogs whose target was in the top 10 at some round so far (ChatIR's cumulative Hits@K). "
    "ATR: average 1-based rank of the target. BRI: PlugIR's Best log Rank Integral (lower is better). "
    "repeats/dialog: questions repeating an earlier one of the same dialog."
)


def markdown_report(
    results: Sequence[SystemResult], meta: dict | None = None, title: str | None = None
) -> str:
    """``results.md``: a title, where the numbers come from, the table and what the columns mean."""
    meta = meta or {}
    lines = [f"# {title or meta.get('title', 'ChatIR evaluation')}", ""]
    facts = [
        (key, meta[key])
        for key in (
            "command",
            "model",
            "text_path",
            "corpus_size",
            "targets",
            "answerer",
            "rerank",
            "answers",
            "wall_s",
        )
        if meta.get(key) not in (None, "")
    ]
    lines += [f"- {key}: `{value}`" if key == "command" else f"- {key}: {value}" for key, value in facts]
    short = [(r.system, r.details.get("dialogs_shorter_than_rounds")) for r in results if r.details]
    lines += [
        f"- {system}: {count} dialogs have fewer rounds than the table; their last round carries over (as in ChatIR)"
        for system, count in short
        if count
    ]
    sections = [str(section) for section in meta.get("sections", [])]
    return "\n".join([*lines, "", markdown_table(results), LEGEND, "", *sections])


def plot(results: Sequence[SystemResult], path: Path, k: int = HEADLINE_K, title: str | None = None) -> None:
    """Hits@k and ATR versus round for every system, side by side (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=120)
    hits_axis, atr_axis = figure.subplots(1, 2)
    markers = "os^Dv<>ph*"
    for i, result in enumerate(results):
        style = {
            "marker": markers[i % len(markers)],
            "markersize": 4,
            "linewidth": 1.6,
            "label": result.system,
        }
        if k in result.hits:
            hits_axis.plot(result.rounds, result.hits[k], **style)
        atr_axis.plot(result.rounds, result.atr, **style)
    hits_axis.set(xlabel="dialog round", ylabel=f"Hits@{k} (%)", title=f"Hits@{k} (higher is better)")
    atr_axis.set(xlabel="dialog round", ylabel="average target rank", title="ATR (lower is better)")
    all_atr = np.array([v for r in results for v in r.atr if not math.isnan(v)])
    if len(all_atr) and all_atr.max() / max(all_atr.min(), 1e-9) > 50:
        atr_axis.set_yscale("log")
    for axis in (hits_axis, atr_axis):
        axis.grid(True, alpha=0.3)
        axis.set_xticks(range(max(len(r.rounds) for r in results)))
    hits_axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp)
    os.replace(tmp, path)


def write_report(
    results: Sequence[SystemResult],
    out_dir: Path,
    *,
    meta: dict | None = None,
    ranks: dict[str, np.ndarray] | None = None,
    title: str | None = None,
) -> ReportFiles:
    """Write ``results.json``, ``results.csv``, ``results.md``, ``results.png`` (and ``ranks.npz``) to out_dir."""
    if not results:
        raise ValueError("no results to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        json_path=out_dir / "results.json",
        csv_path=out_dir / "results.csv",
        markdown_path=out_dir / "results.md",
        plot_path=out_dir / "results.png",
    )
    _atomic_write_text(files.json_path, results_json(results, meta))

    tmp_csv = files.csv_path.with_name("results.csv.tmp")
    with tmp_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["system", "metric", "k", "round", "value"])
        writer.writeheader()
        writer.writerows(results_csv_rows(results))
    os.replace(tmp_csv, files.csv_path)

    _atomic_write_text(files.markdown_path, markdown_report(results, meta, title))
    plot(results, files.plot_path, title=title)
    if ranks:
        files.ranks_path = out_dir / "ranks.npz"
        np.savez_compressed(files.ranks_path, **{name: np.asarray(r) for name, r in ranks.items()})
    return files
