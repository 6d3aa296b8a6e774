"""Fits are transactional (issue #12).

A failure at any hook or a cancellation at any await leaves the manager as before, and
the retry equals an uninterrupted manager's fit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from ctxmgr import ContextManager, Message, StrategyError, get_counter
from ctxmgr.testing import FaultInjector, agent_history, check_tool_pairs

COUNTER = get_counter()
HOOKS = list(FaultInjector.HOOKS)


def _history() -> list[Message]:
    history = agent_history(160, seed=7, result_words=40)
    # a replay every 3 turns and a pinned message keep every hook busy
    history.insert(3, Message.user("Remember: the customer id is C-77.", pinned=True))
    return history


def _manager(fault: FaultInjector | None = None, summarizer: Any = None) -> ContextManager:
    mgr = ContextManager.from_config(
        {
            "preset": "agent",
            "max_context_tokens": 2500,
            "strategies": [
                {"name": "tool_pair_safe"},
                {"name": "pin_and_slide", "weight": 0.3},
                {"name": "relevance", "rerank_on_new_query": True},
                {"name": "summarize"},
                {"name": "scratchpad"},
                {"name": "system_replay", "every": 3},
            ],
        },
        counter=COUNTER,
        summarizer=summarizer,
    )
    if fault is not None:
        fault.install(mgr)
    return mgr


def _state(mgr: ContextManager) -> str:
    return json.dumps(mgr.state.to_dict(), sort_keys=True, default=str)


def _keys(messages: Sequence[Message]) -> list[tuple[str, str]]:
    return [(m.id, m.fingerprint) for m in messages]


def _promises(mgr: ContextManager, history: list[Message], out: list[Message]) -> None:
    assert COUNTER.count_messages(out) <= mgr.budget.effective_limit
    assert check_tool_pairs(out) == []
    sent = set(_keys(out))
    for m in history:
        assert (m.id, m.fingerprint) in sent or m in mgr.state.archive, f"lost {m!r}"
        if m.pinned:
            assert any(o is m for o in out)
    assert history[0] in out  # the system prompt


def _stable(out: list[Message]) -> list[Message]:
    """The context without a trailing open tool step (it is re-rendered at every fit)."""
    i = len(out)
    while i and out[i - 1].role == "tool":
        i -= 1
    if (
        i
        and out[i - 1].tool_calls
        and any(m.metadata.get("ctxmgr") == "synthetic_tool_result" for m in out[i:])
    ):
        return out[: i - 1]
    return out


CUTS = list(range(20, 161, 7))


@pytest.mark.parametrize("hook", HOOKS)
def test_failure_at_every_hook_then_retry(hook: str) -> None:
    """A hook failing at any fit leaves the manager unchanged; the retry equals a clean run."""
    history = _history()
    fault = FaultInjector()
    mgr, twin = _manager(fault), _manager(FaultInjector())
    previous: list[Message] | None = None
    for k in CUTS:
        fault.armed = hook
        try:
            out, report = mgr.fit(history[:k])
        except StrategyError as exc:
            assert hook in str(exc.__cause__) or hook in str(exc)
            assert _state(mgr) == _state(twin)  # the twin has not made this fit yet
            fault.armed = None
            out, report = mgr.fit(history[:k])
        fault.armed = None
        expected, expected_report = twin.fit(history[:k])
        assert _keys(out) == _keys(expected), f"retry differs at {k}"
        assert _state(mgr) == _state(twin)
        assert report.compacted == expected_report.compacted
        _promises(mgr, history[:k], out)
        if previous is not None and not report.compacted:
            stable = _stable(previous)
            assert _keys(out[: len(stable)]) == _keys(stable), "append-only fit broke prefix"
        previous = out
    assert hook in fault.fired, f"{hook} was never called in this scenario"


class SlowSummarizer:
    """An async summarizer with several await points (each ``sleep(0)`` yields once)."""

    def __init__(self, steps: int = 4):
        self.steps = steps
        self.started = 0

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        self.started += 1
        for _ in range(self.steps):
            await asyncio.sleep(0)
        lines = [previous] if previous else []
        lines += [f"- {m.role}: {m.text[:30]}" for m in messages if m.text]
        return "\n".join(lines)


def test_cancel_afit_at_every_await_point() -> None:
    """Cancelling a compacting afit after 0, 1, 2 ... loop steps always rolls back fully."""

    async def scenario() -> None:
        history = _history()
        k = 0
        completed = False
        while not completed:
            summarizer = SlowSummarizer()
            mgr, twin = _manager(summarizer=summarizer), _manager(summarizer=SlowSummarizer())
            for cut in CUTS[:-3]:
                await mgr.afit(history[:cut])
                await twin.afit(history[:cut])
            started = summarizer.started
            before = _state(mgr)
            task = asyncio.ensure_future(mgr.afit(history))
            for _ in range(k):
                await asyncio.sleep(0)
            if task.done():
                completed = True  # k passed the last await point: the fit finished
                out, _ = task.result()
            else:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert _state(mgr) == before, f"cancel after {k} steps changed the state"
                out, _ = await mgr.afit(history)  # the retry
            expected, _ = await twin.afit(history)
            assert summarizer.started > started, "the fit did not reach the summarizer"
            assert _keys(out) == _keys(expected), f"retry after cancel at step {k} differs"
            assert _state(mgr) == _state(twin)
            _promises(mgr, history, out)
            k += 1
        assert k > 3  # several await points were cancelled

    asyncio.run(scenario())


def test_provider_notes_and_tools_budget_survive_a_failed_fit() -> None:
    """A failed fit neither loses the provider's pending notes nor keeps its tools budget."""
    fault = FaultInjector()
    mgr = _manager(fault)
    history = [*_history()[:30], Message.user("and now?")]  # no open tool step: append runs
    mgr.fit(history[:20])
    budget = mgr.budget
    mgr.record_stop("length")
    fault.armed = "append"  # after the report took the notes
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    with pytest.raises(StrategyError):
        mgr.fit(history, tools=tools)
    assert mgr.budget is budget
    fault.armed = None
    _, report = mgr.fit(history)
    assert any("reply cut for length" in note for note in report.notes)
