"""On a real tau-bench trajectory the running summary carries the ids a later call needs.

tau-bench airline task 2, trial 1 (``gpt-4o-airline.json``): the final booking pays with
``credit_card_9525117``, which appears only in two early tool results
(``get_user_details``, ``get_reservation_details``). At an 8,000-token window the agent
preset evicts both; before the extractive summary listed tool-result ids first, their
summary lines were cut to 12 words and the payment id was lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxmgr import ContextManager
from ctxmgr.bench.loaders import load_transcripts


@pytest.mark.data
def test_agent_keeps_the_payment_id_through_compaction(data_dir: Path) -> None:
    """Fit turn by turn at 8,000 tokens; the last action's values are all in the context."""
    path = data_dir / "tau-bench" / "gpt-4o-airline.json"
    run = next(t for t in load_transcripts(path) if t.id == "tau-bench/2-1")
    probe = [p for p in run.probes if p.kind == "action"][-1]
    assert "credit_card_9525117" in probe.values
    history = run.messages[: probe.position]
    manager = ContextManager.from_config("agent", max_context_tokens=8000, reserve_output_tokens=0)
    compactions = 0
    for k in range(1, len(history) + 1):  # each point where the model would be called
        if history[k - 1].role in ("user", "tool") and (
            k == len(history) or history[k].role == "assistant"
        ):
            out, report = manager.fit(history[:k])
            compactions += bool(report.compacted)
    assert compactions >= 2
    sent = " ".join(m.text + " ".join(c.arguments for c in m.tool_calls) for m in out)
    evicted = {m.id for m in history} - {m.id for m in out}
    assert {history[5].id, history[23].id} <= evicted  # both sources went: only the summary
    summary = next(m.text for m in out if m.metadata.get("ctxmgr") == "summary")
    assert "credit_card_9525117" in summary
    assert all(v in sent for v in probe.values), probe.values
