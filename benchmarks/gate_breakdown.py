"""LoCoMo evidence recall split by the recall gate's decision at each question.

Run: ``.venv/bin/python benchmarks/gate_breakdown.py [--config agent] [--budget 4000]``
(reads ``$CTXMGR_DATA_DIR/locomo/locomo10.json`` or ``../shared/data``; about 30 s at
4,000 tokens).

Each dialogue is replayed as ``ctxmgr bench`` replays it (a fit before every reply); each
question (categories 1-4, with evidence) is then fitted on a fork of the session, as the
bench's probes are, and classified by the ``relevance`` strategy's gate decision for it
(``state.extra["relevance"]["gate"]``): *new block* (one of the question's best matches
was outside the context) or *held* (the earlier block stayed). Per class: probes,
``evidence_recall_all`` (all evidence turns kept verbatim) and mean context tokens.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")
# LoCoMo from $CTXMGR_DATA_DIR, else ../shared/data, else the download cache (dataset_path)
os.environ.setdefault(
    "CTXMGR_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)

from ctxmgr import Message, get_counter
from ctxmgr.bench import metrics
from ctxmgr.bench.ctxmgr_fitter import CtxmgrFitter
from ctxmgr.bench.datasets import dataset_path
from ctxmgr.bench.loaders import load_transcripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="agent", help="preset name or config file")
    parser.add_argument("--budget", type=int, default=4000, help="effective limit, tokens")
    args = parser.parse_args()
    counter = get_counter()
    fitter = CtxmgrFitter.from_source(args.config)
    # class -> [probes, probes with all evidence kept, context tokens]
    classes: dict[str, list[int]] = {}
    for run in load_transcripts(dataset_path("locomo")):
        originals = {m.metadata["dia_id"]: m.text for m in run.messages if m.metadata.get("dia_id")}
        session = fitter.start(run, args.budget, counter)
        for i in range(1, len(run.messages)):
            if run.messages[i].role == "assistant":
                session.fit(run.messages[:i])
        for probe in run.probes:
            if probe.kind != "qa" or probe.question is None or probe.category == 5:
                continue
            fork = session.fork()
            context = fork.fit([*run.messages, Message.user(probe.question)])
            kept, considered = metrics.evidence_kept(context, probe.evidence_ids, originals)
            if not considered:
                continue
            gate = fork.manager.state.extra.get("relevance", {}).get("gate")
            name = "no gate" if gate is None else ("new block" if gate[1] else "held")
            row = classes.setdefault(name, [0, 0, 0])
            row[0] += 1
            row[1] += kept == considered
            row[2] += sum(counter.count_message(m) for m in context)
    total = sum(r[0] for r in classes.values())
    print(f"{args.config} at {args.budget:,} tokens, {total} LoCoMo questions")
    for name, (probes, complete, tokens) in sorted(classes.items()):
        print(
            f"  {name:9}: {probes:5} probes, evidence_recall_all {complete / probes:.3f}, "
            f"mean context {tokens / probes:,.0f} tokens"
        )


if __name__ == "__main__":
    main()
