"""Regression tests: the outside fuzzer's minimal reproductions (issue #12).

Each ``tests/fixtures/fuzz/*.json`` is a reproduction as the fuzzer wrote it (a preset, a
budget, an OpenAI history and the prefix lengths it fitted turn by turn on one manager).
Every test replays one and asserts the promise it broke; all replays also check the
promises every fit must keep (budget, tool pairs, nothing lost, pins).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from ctxmgr import (
    ContextManager,
    ContextOverflowError,
    InvalidHistoryError,
    Message,
    StrategyError,
    ToolCall,
    messages_from_openai,
)
from ctxmgr.testing import check_tool_pairs

FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"


def _load(name: str) -> tuple[dict[str, Any], list[Message]]:
    doc = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return doc, messages_from_openai(doc["history"])


def _manager(doc: dict[str, Any], **kw: Any) -> ContextManager:
    opts: dict[str, Any] = {"max_context_tokens": doc["max_context_tokens"]}
    if doc.get("reserve_output_tokens") is not None:
        opts["reserve_output_tokens"] = doc["reserve_output_tokens"]
    opts.update(kw)
    return ContextManager.from_config(doc["preset"], **opts)


def _check(mgr: ContextManager, history: list[Message], out: list[Message]) -> None:
    assert mgr.counter.count_messages(out) <= mgr.budget.effective_limit
    assert check_tool_pairs(out) == []
    kept = {(m.id, m.fingerprint) for m in out}
    for m in history:
        assert (m.id, m.fingerprint) in kept or m in mgr.state.archive, f"lost {m!r}"
        if m.pinned:
            assert any(o is m for o in out), f"pinned message not sent verbatim: {m!r}"


def _replay(name: str) -> tuple[ContextManager, list[Message], list[list[Message]]]:
    doc, msgs = _load(name)
    mgr = _manager(doc)
    outs = []
    for k in doc["fit_after_messages"]:
        out, _ = mgr.fit(msgs[:k])
        _check(mgr, msgs[:k], out)
        outs.append(out)
    return mgr, msgs, outs


def test_summary_longer_than_its_room_is_dropped_not_overflowing() -> None:
    """P1: a shortened summary that still does not fit is removed; the fit succeeds."""
    _, _, outs = _replay("P1_overflow_caused_by_shortened_summary.json")
    assert not any(m.metadata.get("ctxmgr") == "summary" for m in outs[-1])


def test_truncated_tool_result_is_truncated_again_when_room_shrinks() -> None:
    """P1: a result truncated at one fit is re-cut from its original at the next one."""
    _, msgs, outs = _replay("P1_overflow_truncated_result_never_retruncated.json")
    doc, _ = _load("P1_overflow_truncated_result_never_retruncated.json")
    fresh, _ = _manager(doc).fit(msgs)
    truncated = [m for m in outs[-1] if m.metadata.get("ctxmgr") == "truncated_tool_result"]
    assert [m.metadata["original_id"] for m in truncated] == [msgs[1].id]
    assert [(m.id, m.fingerprint) for m in outs[-1]] == [(m.id, m.fingerprint) for m in fresh]


def test_pinned_tool_result_is_never_truncated_or_evicted() -> None:
    """P3: a ``pinned=True`` tool result stays verbatim at every fit (truncation is opt-in)."""
    _, msgs, outs = _replay("P3_pinned_tool_result_evicted_after_truncation.json")
    pinned = [m for m in msgs if m.pinned]
    assert pinned and all(any(o is p for o in outs[-1]) for p in pinned)


def test_pinned_tool_result_truncated_only_when_opted_in_and_reported() -> None:
    """P3: ``truncate_pinned_tool_results`` allows the cut, reported; without it, overflow."""
    big = " ".join(f"row{i} value {i * 7}" for i in range(400))
    msgs = [
        Message.system("You are an agent."),
        Message.user("Read the table."),
        Message.assistant("", [ToolCall("c1", "read", "{}")]),
        Message.tool(big, "c1", name="read", pinned=True),
    ]
    config = {
        "max_context_tokens": 700,
        "strategies": [
            {"name": "tool_pair_safe", "truncate_pinned_tool_results": True},
            {"name": "pin_and_slide"},
        ],
    }
    mgr = ContextManager.from_config(config)
    out, report = mgr.fit(msgs)
    assert mgr.counter.count_messages(out) <= mgr.budget.effective_limit
    assert any("truncate_pinned_tool_results" in r.reason for r in report.cleared)
    assert msgs[3] in mgr.state.archive
    assert out[3].pinned and out[3].metadata["original_id"] == msgs[3].id
    strict = ContextManager.from_config("fifo", max_context_tokens=700)
    with pytest.raises(ContextOverflowError):
        strict.fit(msgs)


def test_duplicate_call_id_keeps_the_original_in_the_archive() -> None:
    """P4: the call dropped for a duplicate id is not lost: the original message is archived."""
    mgr, msgs, outs = _replay("P4_duplicate_call_id_dropped_not_archived.json")
    assert msgs[0] in mgr.state.archive
    entry = next(e for e in mgr.state.archive if e.message is msgs[0])
    assert entry.reason == "duplicate_tool_call_id"
    assert [c.id for c in outs[0][0].tool_calls] == ["call_cXy6", "call_l7SH", "call_vA6R"]


def test_agent_preset_does_not_rerank_below_the_trigger() -> None:
    """P5: a new question below the trigger appends; only the relevance preset re-ranks."""
    _, msgs, outs = _replay("P5_agent_rerank_breaks_prefix_below_trigger.json")
    assert outs[1][: len(outs[0])] == outs[0]
    doc, _ = _load("P5_agent_rerank_breaks_prefix_below_trigger.json")
    relevance = _manager(doc | {"preset": "relevance"})
    relevance.fit(msgs[:2])
    _, report = relevance.fit(msgs[:3])
    assert report.reason == "append-only"  # nothing archived yet: nothing to re-rank


def _stable_prefix(out: list[Message]) -> list[Message]:
    """The context without a trailing open tool step (re-rendered at every fit)."""
    for i in range(len(out) - 1, -1, -1):
        if out[i].role != "tool":
            if out[i].tool_calls and any(
                m.metadata.get("ctxmgr") == "synthetic_tool_result" for m in out[i:]
            ):
                return out[:i]
            break
    return out


def test_system_replay_waits_until_the_tool_step_closes() -> None:
    """P5: the replay is never inserted before an open tool step; the prefix only grows."""
    mgr, msgs, outs = _replay("P5_replay_inserted_before_open_tool_step.json")
    for before, after in itertools.pairwise(outs):
        stable = _stable_prefix(before)
        assert after[: len(stable)] == stable
    history = [*msgs, Message.user("next"), Message.assistant("ok")]
    replays = 0
    for k in range(len(msgs) + 1, len(history) + 1):
        out, _ = mgr.fit(history[:k])
        replays += sum(m.metadata.get("ctxmgr") == "system_replay" for m in out)
    assert replays >= 1  # deferred, not lost


class _FlakySummarizer:
    """Returns a non-string on its first call, a summary afterwards."""

    def __init__(self) -> None:
        self.calls = 0

    def summarize(self, previous: str | None, messages: Any, *, max_tokens: int) -> Any:
        self.calls += 1
        return 42 if self.calls == 1 else "- earlier chat"


def test_non_string_summary_falls_back_and_loses_nothing() -> None:
    """P3/P4: a summarizer returning 42 falls back to the extractive summary (reported)."""
    doc, msgs = _load("P3_P4_retry_after_failed_fit.json")
    mgr = _manager(doc, summarizer=_FlakySummarizer())
    mgr.fit(msgs[:3])
    out, report = mgr.fit(msgs)
    _check(mgr, msgs, out)
    assert any(o is msgs[-1] for o in out)
    assert report.summarized
    assert all(
        "extractive fallback: summarizer returned int" in r.reason for r in report.summarized
    )


class _Boom:
    def summarize(self, previous: str | None, messages: Any, *, max_tokens: int) -> str:
        raise KeyboardInterrupt  # not an Exception: escapes the fallback, fails the fit


def test_retry_after_failed_fit_equals_uninterrupted_fit() -> None:
    """P3/P4: a fit that raised leaves the manager as before; the retry equals a clean run."""
    doc, msgs = _load("P3_P4_retry_after_failed_fit.json")
    mgr = _manager(doc)
    clean = _manager(doc)
    mgr.fit(msgs[:3])
    clean.fit(msgs[:3])
    before = json.dumps(mgr.state.to_dict(), sort_keys=True)
    for strategy in mgr.strategies:
        if strategy.name == "summarize":
            good = strategy._summarizer  # type: ignore[attr-defined]
            strategy._summarizer = _Boom()  # type: ignore[attr-defined]
    with pytest.raises(KeyboardInterrupt):
        mgr.fit(msgs)
    assert json.dumps(mgr.state.to_dict(), sort_keys=True) == before
    for strategy in mgr.strategies:
        if strategy.name == "summarize":
            strategy._summarizer = good  # type: ignore[attr-defined]
    out, report = mgr.fit(msgs)
    expected, expected_report = clean.fit(msgs)
    assert out == expected
    assert report.turn == expected_report.turn
    assert mgr.state.to_dict() == clean.state.to_dict()


def test_cancelled_afit_rolls_back() -> None:
    """P3/P4: cancelling afit while the summarizer runs leaves the manager unchanged."""
    doc, msgs = _load("P3_P4_retry_after_failed_fit.json")

    class Slow:
        async def asummarize(self, previous: str | None, messages: Any, *, max_tokens: int) -> str:
            await asyncio.sleep(10)
            return "- never"

    async def run() -> None:
        mgr = _manager(doc, summarizer=Slow())
        clean = _manager(doc)
        await mgr.afit(msgs[:3])
        clean.fit(msgs[:3])
        task = asyncio.ensure_future(mgr.afit(msgs))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert mgr.state.to_dict() == clean.state.to_dict()
        for strategy in mgr.strategies:
            if strategy.name == "summarize":
                strategy._summarizer = strategy._fallback  # type: ignore[attr-defined]
        out, _ = await mgr.afit(msgs)
        expected, _ = clean.fit(msgs)
        assert out == expected
        assert mgr.state.to_dict() == clean.state.to_dict()

    asyncio.run(run())


def test_strict_policy_retry_raises_again() -> None:
    """A strict manager raises InvalidHistoryError on every retry of an invalid history."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000, history_policy="strict")
    msgs = messages_from_openai(
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u1"},
            {"role": "tool", "tool_call_id": "zz", "content": "orphan"},
            {"role": "user", "content": "u2 latest"},
        ]
    )
    first, _ = mgr.fit(msgs[:2])
    for _ in range(2):
        with pytest.raises(InvalidHistoryError, match="message 2"):
            mgr.fit(msgs)
    again, report = mgr.fit(msgs[:2])
    assert again == first
    assert report.turn == 2


def test_strategy_error_then_retry() -> None:
    """A StrategyError mid-compaction (non-string from a hook) is rolled back too."""
    doc, msgs = _load("P3_P4_retry_after_failed_fit.json")
    mgr = _manager(doc)
    clean = _manager(doc)
    mgr.fit(msgs[:3])
    clean.fit(msgs[:3])
    original = mgr._pm.hook.ctxmgr_inject

    def broken(**kw: Any) -> Any:
        raise RuntimeError("inject is down")

    mgr._pm.hook.ctxmgr_inject = broken  # type: ignore[method-assign]
    with pytest.raises(StrategyError):
        mgr.fit(msgs)
    mgr._pm.hook.ctxmgr_inject = original  # type: ignore[method-assign]
    assert mgr.fit(msgs)[0] == clean.fit(msgs)[0]
    assert mgr.state.to_dict() == clean.state.to_dict()
