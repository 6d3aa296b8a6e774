"""PNG plots of a benchmark run (matplotlib, Agg backend: no display needed).

Three figures, written by :func:`plot_all`:

* ``evidence_recall_vs_budget.png``: ``evidence_recall_all`` (y, %) against the budget
  (x, tokens), one line per config, for the LoCoMo rows (or, without LoCoMo, every
  dataset with evidence probes).
* ``tokens_per_turn.png``: tokens of each turn fit's context (y) along one transcript
  (x: model call number), one line per config, one panel per budget with the budget as
  a dashed line.
* ``overhead_vs_history.png``: fit overhead (y, ms, log scale) against the history length
  (x, messages), one line per config: the median of the traced turn fits in each of
  about 20 equal-width history-length bins, at the middle budget of the run.

Only transcripts replayed with ``trace=True`` feed the last two (see
:class:`~ctxmgr.bench.replay.Trace`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from ctxmgr.bench.replay import TranscriptResult

__all__ = [
    "PLOT_FILES",
    "plot_all",
    "plot_evidence_recall",
    "plot_overhead",
    "plot_tokens_per_turn",
]

PLOT_FILES = ("evidence_recall_vs_budget.png", "tokens_per_turn.png", "overhead_vs_history.png")
"""File names written by :func:`plot_all`, in order."""

_DPI = 120


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _style(index: int) -> dict[str, Any]:
    # 10 tab10 colours x 2 line styles: up to 20 configs stay distinguishable
    return {"color": f"C{index % 10}", "linestyle": "-" if index < 10 else "--"}


def plot_evidence_recall(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Plot ``evidence_recall_all`` (%) against the budget, one line per config."""
    candidates = [r for r in rows if r.get("evidence_recall_all") is not None]
    locomo = [r for r in candidates if r["dataset"] == "locomo"]
    chosen = locomo or candidates
    fig, ax = plt.subplots(figsize=(10, 5))
    if not chosen:
        _empty(ax, "no qa probes with evidence turns in this run\n(evidence recall needs LoCoMo)")
    else:
        datasets = list(dict.fromkeys(r["dataset"] for r in chosen))
        series: dict[str, list[tuple[int, float]]] = {}
        for r in chosen:
            label = r["config"] if len(datasets) == 1 else f"{r['config']} ({r['dataset']})"
            series.setdefault(label, []).append((r["budget"], 100 * r["evidence_recall_all"]))
        for i, (label, points) in enumerate(series.items()):
            points.sort()
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="o", label=label, **_style(i)
            )
        budgets = sorted({r["budget"] for r in chosen})
        ax.set_xticks(budgets)
        ax.set_xlabel("budget (tokens)")
        ax.set_ylabel("probes with all evidence turns kept (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"Evidence recall vs budget ({', '.join(datasets)})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _traced(results: Sequence[TranscriptResult]) -> list[TranscriptResult]:
    return [r for r in results if r.trace is not None and r.error is None and r.trace.tokens]


def plot_tokens_per_turn(
    results: Sequence[TranscriptResult], path: Path, transcript_id: str | None = None
) -> Path:
    """Plot context tokens per model call along one transcript; one panel per budget.

    Args:
        results: replay results; those with a trace are used.
        path: PNG to write.
        transcript_id: the transcript to show; default: the first traced one (LoCoMo's
            first when present, as its long histories show compaction best).
    """
    traced = _traced(results)
    if transcript_id is None and traced:
        locomo = [r for r in traced if r.dataset == "locomo"]
        transcript_id = (locomo or traced)[0].transcript_id
    chosen = [r for r in traced if r.transcript_id == transcript_id]
    budgets = sorted({r.budget for r in chosen})
    fig, axes = plt.subplots(
        1, max(1, len(budgets)), figsize=(5.5 * max(1, len(budgets)), 5.5), squeeze=False
    )
    if not chosen:
        _empty(axes[0][0], "no traced transcript in this run")
    configs = list(dict.fromkeys(r.config for r in chosen))
    for ax, budget in zip(axes[0], budgets, strict=False):
        for r in chosen:
            if r.budget != budget or r.trace is None:
                continue
            i = configs.index(r.config)
            turns = range(1, len(r.trace.tokens) + 1)
            ax.plot(turns, r.trace.tokens, label=r.config, linewidth=1.2, **_style(i))
        ax.axhline(budget, color="black", linestyle=":", linewidth=1.5, label="budget")
        ax.set_title(f"budget {budget} tokens")
        ax.set_xlabel("model call (turn fit) #")
        ax.set_ylabel("context tokens")
        ax.grid(alpha=0.3)
    if chosen:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small")
        fig.suptitle(f"Tokens per turn: {transcript_id}")
        rows_of_legend = -(-len(labels) // 4)
        fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_overhead(
    results: Sequence[TranscriptResult], path: Path, budget: int | None = None, bins: int = 20
) -> Path:
    """Plot the median fit overhead (ms) against history length, one line per config.

    Args:
        results: replay results; those with a trace are used.
        path: PNG to write.
        budget: the budget to show; default the middle one of the traced results.
        bins: number of equal-width history-length bins.
    """
    traced = _traced(results)
    budgets = sorted({r.budget for r in traced})
    if budget is None and budgets:
        budget = budgets[len(budgets) // 2]
    chosen = [r for r in traced if r.budget == budget]
    fig, ax = plt.subplots(figsize=(10, 5))
    if not chosen:
        _empty(ax, "no traced transcript in this run")
    else:
        longest = max(n for r in chosen if r.trace for n in r.trace.history_len)
        width = max(1.0, longest / bins)
        configs = list(dict.fromkeys(r.config for r in chosen))
        for i, config in enumerate(configs):
            per_bin: dict[int, list[float]] = {}
            for r in chosen:
                if r.config != config or r.trace is None:
                    continue
                for n, ms in zip(r.trace.history_len, r.trace.overhead_ms, strict=False):
                    per_bin.setdefault(int(n // width), []).append(ms)
            keys = sorted(per_bin)
            xs = [(k + 0.5) * width for k in keys]
            ys = [max(statistics.median(per_bin[k]), 1e-3) for k in keys]
            ax.plot(xs, ys, marker=".", label=config, **_style(i))
        ax.set_yscale("log")
        ax.set_xlabel("history length (messages)")
        ax.set_ylabel("fit overhead (ms, median per bin)")
        ids = sorted({r.transcript_id for r in chosen})
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        ax.set_title(f"Fit overhead vs history length (budget {budget}; {shown})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_all(
    rows: Sequence[Mapping[str, Any]], results: Sequence[TranscriptResult], out: Path
) -> list[Path]:
    """Write the three PNGs of :data:`PLOT_FILES` into ``out`` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    evidence, tokens, overhead = (out / name for name in PLOT_FILES)
    return [
        plot_evidence_recall(rows, evidence),
        plot_tokens_per_turn(results, tokens),
        plot_overhead(results, overhead),
    ]
