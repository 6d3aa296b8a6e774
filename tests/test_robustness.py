"""Faults and fairness (issue #12): summarizer results, timeouts, fair truncation.

Also: kept messages are the objects of the current call.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from ctxmgr.strategies.tool_pair_safe import _fair_keep

from ctxmgr import ContextManager, Message, ToolCall, get_counter
from ctxmgr.testing import chat_history, check_tool_pairs

COUNTER = get_counter()
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]


def _result(call_id: str, tokens: int, seed: int) -> Message:
    rng = random.Random(seed)
    parts: list[str] = []
    msg = Message.tool("", call_id, name="read")
    while COUNTER.count_message(msg) < tokens:
        parts.extend(f"{rng.choice(WORDS)}{rng.randint(0, 99)}" for _ in range(20))
        msg = Message.tool(" ".join(parts), call_id, name="read")
    return msg


def test_parallel_results_are_truncated_in_proportion() -> None:
    """Three parallel ~1,500-token results in a 3,000-token window get near-equal shares."""
    calls = [ToolCall(f"c{i}", "read", "{}") for i in range(3)]
    results = [_result(c.id, 1500, i) for i, c in enumerate(calls)]
    history = [Message.system("sys"), Message.user("do it"), Message.assistant("", calls)]
    history += results
    mgr = ContextManager.from_config("fifo", max_context_tokens=3000)
    out, report = mgr.fit(history)
    assert COUNTER.count_messages(out) <= mgr.budget.effective_limit
    assert check_tool_pairs(out) == []
    sizes = [COUNTER.count_message(m) for m in out if m.role == "tool"]
    originals = [COUNTER.count_message(m) for m in results]
    ratios = [s / o for s, o in zip(sizes, originals)]
    assert len(sizes) == 3
    assert max(ratios) - min(ratios) < 0.05  # proportional shares, not largest-first
    assert min(sizes) >= 64
    assert all(r in mgr.state.archive for r in results)
    assert report.cleared[0].reason == "truncated to fit the effective limit"


def test_fair_keep_respects_the_floor() -> None:
    """Water-filling: small items keep their floor, the large ones give the rest."""
    keeps = _fair_keep([1000, 1000, 100], 1500, 64)
    assert sum([1000, 1000, 100]) - sum(keeps) >= 1500
    assert min(keeps) >= 64
    assert keeps[0] == keeps[1]
    assert _fair_keep([50, 2000], 1000, 64)[0] == 50  # never grows an item below the floor
    assert _fair_keep([100, 100], 10_000, 64) == [64, 64]  # cannot free enough: floors


class _Returns:
    """A sync and async summarizer returning a fixed value."""

    def __init__(self, value: Any, delay: float = 0.0):
        self.value = value
        self.delay = delay

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> Any:
        if self.delay:
            threading.Event().wait(self.delay)
        return self.value


class _AsyncReturns:
    def __init__(self, value: Any, delay: float = 0.0):
        self.value = value
        self.delay = delay

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> Any:
        await asyncio.sleep(self.delay)
        return self.value


def _summary_manager(summarizer: Any, **options: Any) -> ContextManager:
    return ContextManager.from_config(
        {
            "max_context_tokens": 400,
            "strategies": [
                {"name": "tool_pair_safe"},
                {"name": "pin_and_slide"},
                {"name": "summarize", **options},
            ],
        },
        summarizer=summarizer,
    )


def _check_fallback(mgr: ContextManager, history: list[Message], out: list[Message]) -> None:
    assert COUNTER.count_messages(out) <= mgr.budget.effective_limit
    for m in history:
        assert any(o is m for o in out) or m in mgr.state.archive
    assert mgr.state.extra["summarize"]["failures"] >= 1
    assert isinstance(mgr.state.summary, str) and mgr.state.summary


BAD_RESULTS = [42, b"bytes", ["a list"], {"a": "dict"}, None, "", "   ", 3.5, True]


@pytest.mark.parametrize("value", BAD_RESULTS, ids=repr)
def test_bad_summary_falls_back_in_fit(value: Any) -> None:
    """A summarizer returning anything but a non-empty string falls back (fit)."""
    history = chat_history(30, seed=1)
    mgr = _summary_manager(_Returns(value))
    out, report = mgr.fit(history)
    _check_fallback(mgr, history, out)
    assert all("extractive fallback" in r.reason for r in report.summarized)


@pytest.mark.parametrize("value", BAD_RESULTS, ids=repr)
def test_bad_summary_falls_back_in_afit(value: Any) -> None:
    """The same under afit with an async summarizer."""
    history = chat_history(30, seed=1)
    mgr = _summary_manager(_AsyncReturns(value))
    out, report = asyncio.run(mgr.afit(history))
    _check_fallback(mgr, history, out)
    assert report.summarized


def test_sync_summarizer_timeout_falls_back() -> None:
    """summarize.timeout_s: a summarizer sleeping past the timeout is replaced (fit)."""
    history = chat_history(30, seed=2)
    mgr = _summary_manager(_Returns("- late", delay=2.0), timeout_s=0.05)
    out, report = mgr.fit(history)
    _check_fallback(mgr, history, out)
    assert "timed out after 0.05 s" in report.summarized[0].reason


def test_async_summarizer_timeout_falls_back() -> None:
    """summarize.timeout_s under afit: asyncio.wait_for cancels the slow summarizer."""
    history = chat_history(30, seed=2)
    mgr = _summary_manager(_AsyncReturns("- late", delay=5.0), timeout_s=0.05)
    out, report = asyncio.run(mgr.afit(history))
    _check_fallback(mgr, history, out)
    assert "timed out" in report.summarized[0].reason


def test_async_summarizer_timeout_in_sync_fit() -> None:
    """An async-only summarizer called from fit honours the timeout too."""
    history = chat_history(30, seed=2)
    mgr = _summary_manager(_AsyncReturns("- late", delay=5.0), timeout_s=0.05)
    out, _ = mgr.fit(history)
    _check_fallback(mgr, history, out)


def test_summarizer_within_timeout_is_used() -> None:
    """A summarizer answering in time is used as is."""
    history = chat_history(30, seed=2)
    mgr = _summary_manager(_Returns("- all about flights"), timeout_s=5)
    mgr.fit(history)
    assert mgr.state.summary == "- all about flights"
    assert mgr.state.extra["summarize"]["failures"] == 0


@pytest.mark.parametrize("text", ["x" * 2_000_000, "word " * 400_000, "ab1" * 700_000])
def test_huge_one_line_summary_is_cut_to_budget(text: str) -> None:
    """A 2-million-character summary is cut to the summary budget (linear cut first)."""
    history = chat_history(30, seed=3)
    mgr = _summary_manager(_Returns(text))
    out, _ = mgr.fit(history)
    assert COUNTER.count_messages(out) <= mgr.budget.effective_limit
    assert mgr.state.summary is not None
    assert COUNTER.count_text(mgr.state.summary) <= 512


def test_kept_messages_are_the_objects_of_this_call() -> None:
    """Equal messages rebuilt by the caller are returned, not the ones passed before."""
    history = chat_history(10, seed=4)
    mgr = ContextManager.from_config("agent", max_context_tokens=100_000)
    mgr.fit(history)
    rebuilt = [Message(m.role, m.content, id=m.id, metadata={"rebuilt": True}) for m in history] + [
        Message.user("new question")
    ]
    out, report = mgr.fit(rebuilt)
    assert report.reason == "append-only"
    assert all(a is b for a, b in zip(out, rebuilt))
    assert len(out) == len(rebuilt)
