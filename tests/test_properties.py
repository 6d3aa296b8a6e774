"""Property tests of the fit invariants over generated histories (issue #2 "Must hold").

For every preset and a range of budgets, on histories with parallel tool calls, huge
tool results, orphans, duplicates and dangling calls:

* the output is within the effective limit, or ContextOverflowError is raised;
* no tool result without its call, no call without its result;
* the system prompt, the pinned messages and the latest user message are present;
* the same input gives the same output;
* every input message is in the output or in the archive.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxmgr import (
    ContextManager,
    ContextOverflowError,
    Message,
    StrategyError,
    ToolCall,
    get_counter,
)
from ctxmgr.config import PRESETS
from ctxmgr.segments import segment_messages
from ctxmgr.testing import FaultInjector, check_tool_pairs, histories

RECALLED = "recalled for the current question"  # the recall block's report reason

COUNTER = get_counter()
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _manager(preset: str, budget: int) -> ContextManager:
    return ContextManager.from_config(
        preset, max_context_tokens=budget, reserve_output_tokens=budget // 10, counter=COUNTER
    )


def _key(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.id, m.fingerprint) for m in messages]


def _check(mgr: ContextManager, history: list[Message], out: list[Message]) -> None:
    limit = mgr.budget.effective_limit
    assert COUNTER.count_messages(out) <= limit
    assert check_tool_pairs(out) == []
    ids = {(m.id, m.fingerprint) for m in out}
    if history and history[0].role == "system":
        assert (history[0].id, history[0].fingerprint) in ids, "system prompt missing"
    elif len(history) > 1 and history[0].role == "tool" and history[1].role == "system":
        assert (history[1].id, history[1].fingerprint) in ids, "system prompt missing"
    for m in history:
        if m.pinned:
            assert (m.id, m.fingerprint) in ids, "pinned message missing"
    users = [m for m in history if m.role == "user"]
    if users:
        assert (users[-1].id, users[-1].fingerprint) in ids, "latest user message missing"
    for m in history:
        assert (m.id, m.fingerprint) in ids or m in mgr.state.archive, f"lost {m!r}"


@pytest.mark.parametrize("preset", PRESETS)
@given(history=histories(), budget=st.integers(min_value=200, max_value=6000))
@SETTINGS
def test_one_shot_fit_invariants(preset: str, history: list[Message], budget: int) -> None:
    """A single fit of any history keeps every invariant or raises ContextOverflowError."""
    mgr = _manager(preset, budget)
    try:
        out, report = mgr.fit(history)
    except ContextOverflowError as exc:
        assert exc.projected_tokens > exc.effective_limit
        assert exc.headroom < 0
        return
    _check(mgr, history, out)
    assert report.tokens_after == COUNTER.count_messages(out)
    again, _ = _manager(preset, budget).fit(history)
    assert _key(again) == _key(out), "same input, different output"


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


@pytest.mark.parametrize("preset", PRESETS)
@given(
    history=histories(max_steps=40),
    budget=st.integers(min_value=300, max_value=4000),
    cuts=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=8),
)
@SETTINGS
def test_incremental_fits_keep_invariants(
    preset: str, history: list[Message], budget: int, cuts: list[int]
) -> None:
    """Fitting growing prefixes keeps the invariants; append-only fits extend the last one.

    Overflow only when unavoidable: the incremental manager raises ContextOverflowError
    only where a fresh manager on the same prefix raises too, and then what must be sent
    is reported over the limit. The manager stays usable after an overflow.
    """
    mgr = _manager(preset, budget)
    points = sorted({min(c, len(history)) for c in cuts} | {len(history)})
    previous: list[Message] | None = None
    for n in points:
        prefix = history[:n]
        try:
            out, report = mgr.fit(prefix)
        except ContextOverflowError as exc:
            with pytest.raises(ContextOverflowError) as fresh:
                _manager(preset, budget).fit(prefix)
            assert exc.projected_tokens > exc.effective_limit
            assert fresh.value.projected_tokens > fresh.value.effective_limit
            previous = None
            continue
        _check(mgr, prefix, out)
        # the recall block (agent preset) sits before the latest user message, outside the
        # append-only prefix, and is replaced on every fit: compare without it
        recalled = {i for r in report.kept if r.reason == RECALLED for i in r.ids}
        without_block = [m for m in out if m.id not in recalled]
        if previous is not None and not report.compacted:
            stable = _stable(previous)
            assert _key(without_block[: len(stable)]) == _key(stable), (
                "append-only fit broke prefix"
            )
        previous = without_block


def _protected_tokens(mgr: ContextManager, history: list[Message]) -> int:
    """Upper bound of what ctxmgr may refuse to evict (whole segments), plus priming.

    The leading system prompt, segments holding a ``pinned=True`` message, the task (first
    user message), and everything from the latest user message on (the current turn, its
    tool steps, an open step with synthetic results), plus the question (nearest user
    segment before) of every protected assistant segment: exchanges stay whole (issue #7).
    An overflow is unavoidable only if this exceeds the effective limit.
    """
    segments, _ = segment_messages(history)
    count = mgr.counter.count_message
    users = [i for i, seg in enumerate(segments) if seg.role == "user"]
    keep = set(range(users[-1] if users else 0, len(segments)))
    if users:
        keep.add(users[0])
    if segments and segments[0].role == "system":
        keep.add(0)
    keep.update(i for i, seg in enumerate(segments) if any(m.pinned for m in seg.messages))
    keep |= {
        max(u for u in users if u < i)  # the question of a kept answer is kept
        for i in keep
        if segments[i].role == "assistant" and users and users[0] < i
    }
    total = sum(count(m) for i in keep for m in segments[i].messages)
    return total + mgr.counter.reply_priming


@pytest.mark.parametrize("preset", PRESETS)
@given(history=histories(), budget=st.integers(min_value=200, max_value=6000))
@SETTINGS
def test_overflow_only_when_unavoidable(preset: str, history: list[Message], budget: int) -> None:
    """Overflow only when unavoidable: protected content alone exceeds the limit.

    Never because of a summary, notes or a reminder ctxmgr chose to inject.
    """
    mgr = _manager(preset, budget)
    try:
        mgr.fit(history)
    except ContextOverflowError as exc:
        protected = _protected_tokens(mgr, history)
        assert protected > exc.effective_limit, (
            f"overflow although protected content is {protected} of {exc.effective_limit}"
        )


@pytest.mark.parametrize("preset", ["agent", "summary"])
@given(
    history=histories(max_steps=30),
    budget=st.integers(min_value=300, max_value=3000),
    cuts=st.lists(st.integers(min_value=1, max_value=120), min_size=2, max_size=6),
    faults=st.lists(st.sampled_from(FaultInjector.HOOKS), min_size=1, max_size=6),
)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_retry_after_injected_failure_equals_clean_run(
    preset: str, history: list[Message], budget: int, cuts: list[int], faults: list[str]
) -> None:
    """Incremental fits across injected hook failures and overflows.

    Every failed fit leaves the manager unchanged; its retry equals a manager that never
    failed.
    """
    fault = FaultInjector()
    mgr, twin = _manager(preset, budget), _manager(preset, budget)
    fault.install(mgr)
    points = sorted({min(c, len(history)) for c in cuts} | {len(history)})
    for i, n in enumerate(points):
        prefix = history[:n]
        before = json.dumps(mgr.state.to_dict(), sort_keys=True, default=str)
        fault.armed = faults[i % len(faults)]
        try:
            out, _ = mgr.fit(prefix)
        except (StrategyError, ContextOverflowError):
            assert json.dumps(mgr.state.to_dict(), sort_keys=True, default=str) == before
            fault.armed = None
            try:
                out, _ = mgr.fit(prefix)
            except ContextOverflowError:
                with pytest.raises(ContextOverflowError):
                    twin.fit(prefix)
                continue
        fault.armed = None
        expected, _ = twin.fit(prefix)
        assert _key(out) == _key(expected)
        _check(mgr, prefix, out)
    assert mgr.state.to_dict() == twin.state.to_dict()


@given(history=histories(malformed=False, huge_results=False, with_system=True))
@settings(max_examples=40, deadline=None)
def test_well_formed_histories_need_no_repair(history: list[Message]) -> None:
    """Well-formed input is never reported as repaired."""
    mgr = _manager("agent", 100_000)
    _, report = mgr.fit(history)
    assert report.repairs == []


def _pinned_steps_history() -> list[Message]:
    """Hypothesis's counterexample to an older protected bound (questions of pinned answers).

    Three tool steps with a pinned result each, behind runs of one-word user turns, and an
    open step at the end; at 200 tokens the relevance preset must keep the three pinned
    exchanges *with their questions* and cannot fit.
    """
    out = [Message.user("TASK: 0")]
    step = 0

    def tool_step(n: int, texts: list[str], content: str = "0") -> list[Message]:
        nonlocal step
        calls = tuple(ToolCall(f"c{step}_{i}", "search", "{}") for i in range(n))
        step += 1
        results = [
            Message.tool(text, call.id, name="search", pinned=i == 0)
            for i, (call, text) in enumerate(zip(calls, texts, strict=True))
        ]
        return [Message.assistant(content, calls), *results]

    out += [Message.user("0") for _ in range(5)]
    out += tool_step(3, ["0", "0", "0"], content="")
    out += [Message.user("0") for _ in range(3)]
    out += tool_step(2, ["0a", "0a0a0a"])
    out += [Message.user("0") for _ in range(14)]
    out += tool_step(2, ["0", "0a0"])
    out += [Message.user("0") for _ in range(4)]
    out.append(
        Message.assistant(
            "", (ToolCall("open_0", "search", "{}"), ToolCall("open_1", "search", "{}"))
        )
    )
    return out


def test_overflow_with_pinned_exchanges_counts_their_questions() -> None:
    history = _pinned_steps_history()
    mgr = _manager("relevance", 200)
    with pytest.raises(ContextOverflowError) as info:
        mgr.fit(history)
    assert _protected_tokens(mgr, history) > info.value.effective_limit
