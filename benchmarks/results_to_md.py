"""Render a ``ctxmgr bench`` results.json as the markdown tables of docs/results.md.

Run: ``.venv/bin/python benchmarks/results_to_md.py bench-results/results.json > docs/results.md``
"""

from __future__ import annotations

import json
import sys
from typing import Any


def fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if not pct else f"{value:.1%}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(fmt(r.get(key)) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main(path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    meta, rows = data["meta"], data["rows"]
    print("# Benchmark results\n")
    print(
        f"`{meta['command']}` on {meta['date']}, {meta['elapsed_s']:.0f} s, "
        f"jobs={meta['jobs']}, counter {meta['counter']}. Budgets are effective limits in "
        "tokens (reserve 0). Metric definitions: docs/bench.md.\n"
    )
    common = [
        ("config", "config"),
        ("kind", "kind"),
        ("budget", "budget"),
        ("budget_violations", "budget viol."),
        ("tool_pair_violations", "pair viol."),
        ("errors", "errors"),
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        subset.sort(key=lambda r: (r["budget"], r["kind"] != "ctxmgr", r["config"]))
        print(f"## {dataset}\n")
        if dataset == "locomo":
            cols = [
                *common,
                ("evidence_recall_all", "evidence all"),
                ("evidence_turn_recall", "evidence turns"),
                ("answer_in_context", "answer in ctx"),
                ("latest_user_retention", "latest user"),
                ("prefix_stability", "prefix stable"),
                ("tokens_mean", "tok mean"),
                ("overhead_ms_median", "ms median"),
                ("overhead_ms_p95", "ms p95"),
            ]
        else:
            cols = [
                *common,
                ("system_retention", "system kept"),
                ("action_arg_recall", "action args"),
                ("prefix_stability", "prefix stable"),
                ("tokens_mean", "tok mean"),
                ("tokens_p95", "tok p95"),
                ("cost_usd", "cost $"),
                ("cost_cached_usd", "cost cached $"),
                ("summarizer_calls", "summaries"),
                ("overhead_ms_median", "ms median"),
                ("overhead_ms_p95", "ms p95"),
            ]
        print(table(subset, cols) + "\n")
    notes = {r["config"]: r["notes"] for r in rows if r.get("notes")}
    if notes:
        print("## Notes on the peers\n")
        for name, note in notes.items():
            print(f"- **{name}**: {note}")
    errors = [r for r in rows if r.get("errors")]
    if errors:
        print("\n## Errors\n")
        for r in errors:
            print(
                f"- {r['config']} @ {r['budget']} on {r['dataset']}: {r['errors']} transcript(s); "
                f"first: {r['first_error']}"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results/results.json")
