"""Relevance scorer settings chosen by cross-validation by dialogue on LoCoMo.

Run: ``.venv/bin/python benchmarks/tune_relevance.py [--folds 2] [--budget 4000] [--grid speaker]``
(reads ``$CTXMGR_DATA_DIR/locomo/locomo10.json`` or ``../shared/data``).

For every question of every LoCoMo dialogue (Maharana et al. 2024), the whole dialogue is
ranked by the ``relevance`` strategy's fused score (BM25 + WordLlama, smoothed over
neighbouring turns) and turns are taken best first until ``budget`` tokens (tiktoken
cl100k) are used; a question counts when all its evidence turns are taken (the bench's
``evidence_recall_all``). This isolates the scorer from the rest of a preset.

Each setting of the grid is scored per dialogue. K-fold cross-validation *by dialogue*:
the setting with the best recall on the training dialogues is scored on the held-out
ones; the report prints every setting's recall on all dialogues and, per fold, the chosen
setting and its held-out recall.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

import numpy as np
from ctxmgr.strategies.relevance import RelevanceEviction

from ctxmgr import get_counter
from ctxmgr.bench.datasets import dataset_path
from ctxmgr.bench.loaders import load_transcripts
from ctxmgr.segments import Segment

GRIDS: dict[str, dict[str, list[Any]]] = {
    # the fusion of BM25 and WordLlama (issue #8, round two)
    "fusion": {
        "fusion": ["zscore", "rrf"],
        "semantic_weight": [0.0, 0.3, 0.5, 0.7, 1.0],
        "neighbor_weight": [0.2, 0.4],
        "neighbor_span": [1, 2],
    },
    # the speaker prior, with the fusion weight around its chosen value
    "speaker": {
        "speaker_weight": [0.0, 0.3, 0.5, 0.7, 0.9],
        "semantic_weight": [0.3, 0.5, 0.7],
    },
    # what the embedder sees of a turn: its content, or the text BM25 indexes
    "semantic_text": {
        "semantic_text": ["indexed", "content"],
        "semantic_weight": [0.3, 0.5, 0.7],
    },
}
GRID: dict[str, list[Any]] = GRIDS["fusion"]


def _data() -> Path:
    """LoCoMo from ``$CTXMGR_DATA_DIR``, else ``../shared/data``, else the download cache."""
    os.environ.setdefault(
        "CTXMGR_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    return dataset_path("locomo")


def _settings() -> list[dict[str, Any]]:
    out = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        if setting.get("fusion") == "rrf" and setting["semantic_weight"] in (0.0, 1.0):
            continue  # identical to a z-score setting
        out.append(setting)
    return out


def recall_per_dialogue(
    setting: dict[str, Any], budget: int, whole: bool = False
) -> list[tuple[int, int]]:
    """(questions with all evidence kept, answerable questions) for each dialogue.

    ``whole``: keep exchanges whole as the manager's compaction does (issue #7): an
    assistant turn is taken with its question or not at all, and a question whose answer
    did not fit is dropped with it.
    """
    counter = get_counter()
    out = []
    for t in TRANSCRIPTS:
        segs = [Segment((m,), i, counter.count_message(m)) for i, m in enumerate(t.messages)]
        strategy = RelevanceEviction(RelevanceEviction.Options(**setting))
        hits = total = 0
        for probe in t.probes:
            wanted = {e for e in probe.evidence_ids if e in ORIGINALS[t.id]}
            if probe.kind != "qa" or probe.category == 5 or not wanted or not probe.question:
                continue
            window = types.SimpleNamespace(history=segs, query=probe.question)
            scores = strategy._history_scores(window)  # type: ignore[arg-type]
            # an assistant turn's question: the nearest user turn before it, as the index
            # keeps it for the recall block (-1: none)
            question = strategy._index.question.view() if whole else None
            room = budget - counter.count_text(probe.question) - 8
            taken: set[int] = set()
            orphaned: set[int] = set()
            for pos in np.argsort(-scores, kind="stable"):
                i = int(pos)
                if i in taken or i in orphaned:
                    continue
                q = None
                if question is not None and segs[i].role == "assistant" and question[i] >= 0:
                    q = int(question[i])
                if q in taken:
                    q = None
                cost = segs[i].tokens + (segs[q].tokens if q is not None else 0)
                if cost <= room:
                    room -= cost
                    taken.update([i] if q is None else [i, q])
                elif q is not None:
                    orphaned.add(q)
            kept = {str(segs[i].head.metadata.get("dia_id")) for i in taken}
            total += 1
            hits += wanted <= kept
        out.append((hits, total))
    return out


def main() -> None:
    global TRANSCRIPTS, ORIGINALS, GRID
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="fusion")
    parser.add_argument(
        "--whole-exchanges",
        action="store_true",
        help="take an assistant turn with its question or not at all, as the presets do",
    )
    args = parser.parse_args()
    GRID = GRIDS[args.grid]
    TRANSCRIPTS = load_transcripts(_data())
    ORIGINALS = {
        t.id: {str(m.metadata["dia_id"]): m.text for m in t.messages if "dia_id" in m.metadata}
        for t in TRANSCRIPTS
    }
    results = {}
    for setting in _settings():
        per = recall_per_dialogue(setting, args.budget, args.whole_exchanges)
        results[tuple(setting.items())] = per
        share = sum(h for h, _ in per) / sum(n for _, n in per)
        print(f"{share:.3f}  {setting}", flush=True)
    k = args.folds
    folds = [list(range(i, len(TRANSCRIPTS), k)) for i in range(k)]
    held = []
    for f, test in enumerate(folds):
        train = [i for i in range(len(TRANSCRIPTS)) if i not in test]

        def share(per: list[tuple[int, int]], idx: list[int]) -> float:
            return sum(per[i][0] for i in idx) / max(1, sum(per[i][1] for i in idx))

        best = max(results, key=lambda s: share(results[s], train))
        score = share(results[best], test)
        held.append(score)
        print(
            f"fold {f}: chosen {dict(best)} train {share(results[best], train):.3f} "
            f"held-out {score:.3f}"
        )
    print(f"mean held-out evidence_recall_all at {args.budget}: {statistics.mean(held):.3f}")


TRANSCRIPTS: list[Any] = []
ORIGINALS: dict[str, dict[str, str]] = {}

if __name__ == "__main__":
    sys.exit(main())
