"""Fold per-transcript replay results into report rows; write JSON/CSV; print a table.

One row per config x budget x dataset, aggregated over the dataset's transcripts. The
keys and their definitions are :data:`ROW_KEYS` (documented in ``docs/bench.md``). A
metric that does not apply (no answerable probe, no system message, ...) is ``None``
(``null`` in JSON, empty in CSV).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ctxmgr.bench import metrics as M
from ctxmgr.bench.replay import TranscriptResult

__all__ = ["ROW_KEYS", "aggregate", "print_table", "write_results"]

ROW_KEYS: tuple[str, ...] = (
    "config",
    "kind",
    "dataset",
    "budget",
    "transcripts",
    "fits",
    "turn_fits",
    "probe_fits",
    "budget_violations",
    "tool_pair_violations",
    "broken_tool_pairs",
    "system_retention",
    "latest_user_retention",
    "evidence_probes",
    "evidence_recall_all",
    "evidence_turn_recall",
    "answer_probes",
    "answer_in_context",
    "action_values",
    "action_arg_recall",
    "prefix_stability",
    "prefix_reuse",
    "tokens_mean",
    "fill_ratio",
    "tokens_p95",
    "tokens_max",
    "cost_usd",
    "cost_cached_usd",
    "overhead_ms_median",
    "overhead_ms_p95",
    "summarizer_calls",
    "errors",
    "first_error",
    "evidence_by_category",
    "notes",
)
"""Every key of a row, in CSV column order."""


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _row(
    key: tuple[str, str, str, int],
    units: Sequence[TranscriptResult],
    prices: M.PriceTable,
    notes: str,
) -> dict[str, Any]:
    config, kind, dataset, budget = key
    ok = [u for u in units if u.error is None]
    failed = [u for u in units if u.error is not None]

    def total(attr: str) -> int:
        return sum(getattr(u, attr) for u in ok)

    def scored(attr: str) -> int:  # probe scores: errored transcripts count with zeros
        return sum(getattr(u, attr) for u in units)

    tokens = [t for u in ok for t in u.turn_tokens]
    overhead = [ms for u in ok for ms in u.overhead_ms]
    evidence = [e for u in units for e in u.evidence]
    categories: dict[str, list[tuple[int, int]]] = {}
    for u in units:
        for cat, pairs in u.evidence_by_category.items():
            categories.setdefault(cat, []).extend(pairs)
    ev_all, ev_turn = M.evidence_recall(evidence)
    mean_t, p95_t, max_t = M.token_stats(tokens)
    input_tokens = sum(tokens)
    cached = total("cached_tokens")
    row: dict[str, Any] = {
        "config": config,
        "kind": kind,
        "dataset": dataset,
        "budget": budget,
        "transcripts": len(ok),
        "fits": total("fits"),
        "turn_fits": total("turn_fits"),
        "probe_fits": total("probe_fits"),
        "budget_violations": total("budget_violations"),
        "tool_pair_violations": total("tool_pair_violation_fits"),
        "broken_tool_pairs": total("broken_tool_pairs"),
        "system_retention": _round(M.share(total("system_kept"), total("system_fits")), 4),
        "latest_user_retention": _round(
            M.share(total("latest_user_kept"), total("latest_user_fits")), 4
        ),
        "evidence_probes": len(evidence),
        "evidence_recall_all": _round(ev_all, 4),
        "evidence_turn_recall": _round(ev_turn, 4),
        "answer_probes": scored("answer_total"),
        "answer_in_context": _round(M.share(scored("answer_hits"), scored("answer_total")), 4),
        "action_values": scored("action_total"),
        "action_arg_recall": _round(M.share(scored("action_found"), scored("action_total")), 4),
        "prefix_stability": _round(M.share(total("prefix_extends"), total("prefix_pairs")), 4),
        "prefix_reuse": _round(
            M.share(total("prefix_common_tokens"), total("prefix_previous_tokens")), 4
        ),
        "tokens_mean": _round(mean_t, 1),
        "fill_ratio": _round(mean_t / budget, 4) if mean_t is not None and budget else None,
        "tokens_p95": p95_t,
        "tokens_max": max_t,
        "cost_usd": _round(M.input_cost_usd(input_tokens, 0, prices), 6) if ok else None,
        "cost_cached_usd": _round(
            M.input_cost_usd(input_tokens, cached, prices, total("cache_write_tokens")), 6
        )
        if ok
        else None,
        "overhead_ms_median": _round(statistics.median(overhead), 3) if overhead else None,
        "overhead_ms_p95": _round(M.percentile(overhead, 95), 3),
        "summarizer_calls": total("summarizer_calls"),
        "errors": len(failed),
        "first_error": failed[0].error if failed else None,
        "evidence_by_category": {
            cat: {
                "probes": len(pairs),
                "evidence_recall_all": _round(M.evidence_recall(pairs)[0], 4),
                "evidence_turn_recall": _round(M.evidence_recall(pairs)[1], 4),
            }
            for cat, pairs in sorted(categories.items())
        }
        or None,
        "notes": notes,
    }
    if not ok:
        for name in ("fits", "turn_fits", "probe_fits", "budget_violations"):
            row[name] = 0
        for name in ("tool_pair_violations", "broken_tool_pairs", "summarizer_calls"):
            row[name] = None
    return row


def aggregate(
    results: Iterable[TranscriptResult],
    prices: M.PriceTable = M.DEFAULT_PRICES,
    extra_notes: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Fold per-transcript results into rows, one per config x budget x dataset.

    Shares are pooled over the dataset's fits (or probes, or values), not averaged per
    transcript. Units whose fitter raised are counted in ``errors``, left out of the
    per-fit metrics (tokens, overhead, prefix) and kept in the probe metrics with every
    probe scored 0 (evidence, answers, action values), so rows stay comparable. Rows
    come ordered by dataset (first appearance), budget (ascending), then
    config (first appearance).

    Args:
        results: per-transcript results of :class:`~ctxmgr.bench.replay.Replay`.
        prices: price table for ``cost_usd`` / ``cost_cached_usd``.
        extra_notes: ``dataset -> note`` appended to the ``notes`` of that dataset's rows
            (e.g. how the run was sampled).

    Returns:
        Rows as dicts with exactly :data:`ROW_KEYS`.
    """
    groups: dict[tuple[str, str, str, int], list[TranscriptResult]] = {}
    notes: dict[str, str] = {}
    for res in results:
        groups.setdefault((res.config, res.kind, res.dataset, res.budget), []).append(res)
        notes.setdefault(res.config, res.notes)
    configs = list(dict.fromkeys(k[0] for k in groups))
    datasets = list(dict.fromkeys(k[2] for k in groups))
    ordered = sorted(groups, key=lambda k: (datasets.index(k[2]), k[3], configs.index(k[0])))
    rows = []
    for key in ordered:
        parts = [notes.get(key[0], ""), (extra_notes or {}).get(key[2], "")]
        rows.append(_row(key, groups[key], prices, " ".join(p for p in parts if p)))
    return rows


def write_results(
    rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out: Path
) -> tuple[Path, Path]:
    """Write ``results.json`` (``{"meta": meta, "rows": rows}``) and ``results.csv``.

    Args:
        rows: rows from :func:`aggregate`.
        meta: run description (command, versions, counter, date...).
        out: output directory (created).

    Returns:
        ``(json_path, csv_path)``.
    """
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    csv_path = out / "results.csv"
    payload = {"meta": dict(meta), "rows": [dict(r) for r in rows]}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", "utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        flat = [k for k in ROW_KEYS if k != "evidence_by_category"]  # nested: JSON only
        writer = csv.DictWriter(fh, fieldnames=flat, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in ROW_KEYS})
    return json_path, csv_path


# (column title, row key, format) for the terminal tables: one table of what a policy keeps
# and loses, one of what it costs. A column whose values are all None in a dataset's rows
# is left out of that dataset's table.
_QUALITY: tuple[tuple[str, str, str], ...] = (
    ("config", "config", "s"),
    ("budget", "budget", "d"),
    ("over\nbudget", "budget_violations", "d"),
    ("tool\npairs", "tool_pair_violations", "d"),
    ("system\nkept", "system_retention", "%"),
    ("user\nkept", "latest_user_retention", "%"),
    ("evid.\nall", "evidence_recall_all", "%"),
    ("evid.\nturns", "evidence_turn_recall", "%"),
    ("answer\nin ctx", "answer_in_context", "%"),
    ("action\nargs", "action_arg_recall", "%"),
    ("errors", "errors", "d"),
)
_COST: tuple[tuple[str, str, str], ...] = (
    ("config", "config", "s"),
    ("budget", "budget", "d"),
    ("prefix\nstable", "prefix_stability", "%"),
    ("tokens\nmean", "tokens_mean", ".0f"),
    ("tokens\np95", "tokens_p95", "d"),
    ("tokens\nmax", "tokens_max", "d"),
    ("input\n$", "cost_usd", ".4f"),
    ("cached\n$", "cost_cached_usd", ".4f"),
    ("fit ms\nmedian", "overhead_ms_median", ".2f"),
    ("fit ms\np95", "overhead_ms_p95", ".2f"),
    ("summ.\ncalls", "summarizer_calls", "d"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "s":
        return str(value)
    if fmt == "%":
        return f"{100 * value:.1f}%"
    if fmt == "d":
        return f"{int(value)}"
    return format(value, fmt)


def print_table(rows: Sequence[Mapping[str, Any]], console: Any = None) -> None:
    """Print two rich tables per dataset: what each config keeps and loses, and its costs.

    Columns whose values are all ``None`` for that dataset are hidden; every key is in the
    JSON/CSV files.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for dataset in datasets:
        subset = [r for r in rows if r["dataset"] == dataset]
        n = max((r["transcripts"] + r["errors"] for r in subset), default=0)
        for title, spec in (("kept and lost", _QUALITY), ("cost", _COST)):
            columns = [c for c in spec if any(r.get(c[1]) is not None for r in subset)]
            table = Table(title=f"{dataset} ({n} transcripts): {title}")
            for header, _, fmt in columns:
                table.add_column(
                    header, justify="left" if fmt == "s" else "right", no_wrap=fmt == "s"
                )
            for row in subset:
                table.add_row(*(_cell(row.get(key), fmt) for _, key, fmt in columns))
            console.print(table)
