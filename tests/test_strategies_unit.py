"""Unit tests of the six built-in strategies, driven through ContextManager with small budgets."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Sequence
from typing import Any

import pytest
from ctxmgr.strategies.pin_and_slide import PinAndSlide
from ctxmgr.strategies.scratchpad import NOTES_HEADER
from ctxmgr.strategies.summarize import SUMMARY_HEADER

from ctxmgr.budget import Budget
from ctxmgr.errors import CtxmgrError, InvalidHistoryError
from ctxmgr.manager import ContextManager, run_coroutine_sync
from ctxmgr.messages import Message, ToolCall
from ctxmgr.segments import segment_messages
from ctxmgr.state import SessionState
from ctxmgr.testing import RecordingSummarizer, agent_history, chat_history, check_tool_pairs
from ctxmgr.tokens import TiktokenCounter
from ctxmgr.window import Window


def _manager(strategies: list[dict[str, Any]], max_tokens: int, **kw: Any) -> ContextManager:
    """A manager with the given pipeline, no output reserve, and `max_tokens` window."""
    return ContextManager.from_config(
        {"strategies": strategies, "reserve_output_tokens": 0},
        max_context_tokens=max_tokens,
        **kw,
    )


def _by_tag(messages: Sequence[Message], tag: str) -> list[Message]:
    return [m for m in messages if m.metadata.get("ctxmgr") == tag]


def _dropped_ids(report: Any) -> list[str]:
    return [i for r in report.dropped for i in r.ids]


# -- pin_and_slide -----------------------------------------------------------------------------


def test_pin_and_slide_keeps_first_user_task() -> None:
    """With a small window the first user message (the task) stays, pinned as the task."""
    history = chat_history(30)
    task = history[1]
    fitted, report = _manager([{"name": "pin_and_slide"}], 800).fit(history)
    assert report.compacted
    assert fitted[:2] == [history[0], task]
    assert ((task.id,), "first user task") in [(r.ids, r.reason) for r in report.pinned]
    # old exchanges were evicted (the task's own answer may fill leftover room: exchanges
    # are kept whole, so no orphan question takes that room any more)
    assert history[3] not in fitted and history[4] not in fitted


def test_pin_and_slide_without_task_pin_evicts_the_task() -> None:
    """With pin_first_user = false the first user message is evicted like any old message."""
    history = chat_history(30)
    fitted, _ = _manager([{"name": "pin_and_slide", "pin_first_user": False}], 800).fit(history)
    assert history[1] not in fitted


def test_pin_and_slide_does_not_pin_a_huge_task() -> None:
    """A first user message above pin_first_user_max_tokens is not pinned."""
    history = chat_history(30)
    history[1] = Message.user("Task: " + "details " * 200)
    strategies = [{"name": "pin_and_slide", "pin_first_user_max_tokens": 100}]
    fitted, report = _manager(strategies, 1000).fit(history)
    assert history[1] not in fitted
    assert "first user task" not in [r.reason for r in report.pinned]


def test_pin_and_slide_evicts_oldest_first() -> None:
    """Apart from the pinned head, the kept messages are the newest suffix of the history."""
    history = chat_history(30)
    fitted, report = _manager([{"name": "pin_and_slide"}], 800).fit(history)
    # the pinned task's own answer may fill leftover room (its question is kept anyway)
    tail = [m for m in fitted[2:] if m is not history[2]]
    assert history[-len(tail) :] == tail
    assert report.tokens_after <= int(800 * 0.6) + 3  # at the target (plus reply priming)


def test_pin_and_slide_scores_recency() -> None:
    """ctxmgr_score returns i / (n - 1): 0 for the oldest candidate, 1 for the newest."""
    segments, _ = segment_messages(chat_history(2))
    window = Window(segments, Budget(1000), TiktokenCounter(), SessionState())
    assert PinAndSlide().ctxmgr_score(window=window) == [0.0, 0.25, 0.5, 0.75, 1.0]


# -- tool_pair_safe ----------------------------------------------------------------------------

TPS = [{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}]
FREED = re.compile(r"; (\d+) tokens freed\.")


def test_tool_pair_safe_clears_old_results_before_dropping() -> None:
    """Old tool results become placeholders naming the tool and the tokens; nothing is dropped."""
    history = agent_history(60, result_words=80, user_every=0)
    mgr = _manager(TPS, 6000)
    fitted, report = mgr.fit(history)
    assert report.compacted
    assert report.cleared
    assert report.dropped == []
    placeholders = _by_tag(fitted, "cleared_tool_result")
    assert placeholders
    calls = {c.id: c for m in history for c in m.tool_calls}
    for ph in placeholders:
        original = mgr.state.archive.get(ph.metadata["original_id"])
        assert original is not None
        assert original in history
        assert (ph.tool_call_id, ph.name) == (original.tool_call_id, original.name)
        assert f"cleared result of {calls[ph.tool_call_id].name}(" in ph.text  # type: ignore[index]
        freed = int(FREED.search(ph.text).group(1))  # type: ignore[union-attr]
        assert 0 < freed <= mgr.counter.count_message(original)
    assert check_tool_pairs(fitted) == []
    assert len(fitted) == len(history)


def test_tool_pair_safe_keeps_recent_results() -> None:
    """The newest keep_recent_tool_results exchanges keep their results."""
    history = agent_history(60, result_words=80, user_every=0)
    strategies = [
        {"name": "tool_pair_safe", "keep_recent_tool_results": 4},
        {"name": "pin_and_slide"},
    ]
    fitted, _ = _manager(strategies, 6000).fit(history)
    exchanges = [i for i, m in enumerate(fitted) if m.tool_calls]
    recent = exchanges[-4:]
    for start in recent:
        results = []
        for m in fitted[start + 1 :]:
            if m.role != "tool":
                break
            results.append(m)
        assert _by_tag(results, "cleared_tool_result") == []
        assert all(r in history for r in results)
    assert _by_tag(fitted[: recent[0]], "cleared_tool_result")


def test_tool_pair_safe_keeps_every_result_when_fewer_exchanges_than_keep_recent() -> None:
    """Fewer tool exchanges than keep_recent_tool_results: none is cleared (not just the last)."""
    history = agent_history(12, result_words=300, user_every=0)
    n_exchanges = sum(1 for m in history if m.tool_calls)
    assert n_exchanges >= 2
    strategies = [
        {"name": "tool_pair_safe", "keep_recent_tool_results": n_exchanges + 1},
        {"name": "pin_and_slide"},
    ]
    mgr = _manager(strategies, 1500)
    fitted, report = mgr.fit(history)
    assert report.compacted
    assert _by_tag(fitted, "cleared_tool_result") == []
    assert report.cleared == []


def test_tool_pair_safe_cleared_originals_are_archived_with_reason() -> None:
    """Each cleared original is archived with a 'cleared' reason and the strategy's name."""
    history = agent_history(60, result_words=80, user_every=0)
    mgr = _manager(TPS, 6000)
    fitted, _ = mgr.fit(history)
    entries = {e.message.id: e for e in mgr.state.archive}
    for ph in _by_tag(fitted, "cleared_tool_result"):
        entry = entries[ph.metadata["original_id"]]
        assert entry.reason.startswith("cleared")
        assert entry.strategy == "tool_pair_safe"


def test_tool_pair_safe_drops_whole_pairs_when_clearing_is_not_enough() -> None:
    """With a very small window whole exchanges are dropped; every pair stays valid."""
    history = agent_history(60, result_words=80, user_every=0)
    mgr = _manager(TPS, 2000)
    fitted, report = mgr.fit(history)
    assert report.dropped
    assert check_tool_pairs(fitted) == []
    assert report.tokens_after <= 2000
    for dropped_id in _dropped_ids(report):
        assert mgr.state.archive.get(dropped_id) is not None


def test_report_never_lists_a_segment_as_both_cleared_and_dropped() -> None:
    """A segment is either kept in shrunk form (cleared) or evicted (dropped), not both."""
    history = agent_history(60, result_words=80, user_every=0)
    _, report = _manager(TPS, 2000).fit(history)
    assert {r.ids for r in report.cleared} & {r.ids for r in report.dropped} == set()


def test_tool_pair_safe_truncates_oversized_result() -> None:
    """A result above max_tool_result_tokens is truncated (head and tail kept), even the newest."""
    lines = " ".join(f"line{i} value" for i in range(3000))
    history = [
        Message.system("You read logs."),
        Message.user("Task: read the log"),
        Message.assistant("", [ToolCall("c1", "read_log", '{"f": "a.log"}')]),
        Message.tool(lines, "c1", name="read_log"),
    ]
    strategies = [{"name": "tool_pair_safe", "max_tool_result_tokens": 200}]
    mgr = _manager(strategies, 2000)
    fitted, report = mgr.fit(history)
    result = fitted[-1]
    assert result.metadata["ctxmgr"] == "truncated_tool_result"
    assert (result.tool_call_id, result.name) == ("c1", "read_log")
    assert result.text.startswith("line0 value line1 value")
    assert result.text.endswith("line2999 value")
    assert re.search(r"\[ctxmgr: \d+ tokens truncated; original archived\]", result.text)
    assert mgr.counter.count_message(result) < 260
    assert mgr.state.archive.get(result.metadata["original_id"]) == history[3]
    assert [r.reason for r in report.cleared] == ["truncated oversized tool result"]
    assert check_tool_pairs(fitted) == []


@pytest.mark.parametrize("steps", [0, 2, 3])
def test_tool_pair_safe_pins_current_tool_loop(steps: int) -> None:
    """The newest live_tool_steps exchanges after the latest user message are pinned."""
    history = agent_history(60, result_words=80, user_every=0)
    assert history[-1].role == "tool"  # the newest segment is an exchange ("most recent")
    strategies = [{"name": "tool_pair_safe", "live_tool_steps": steps}, {"name": "pin_and_slide"}]
    _, report = _manager(strategies, 3000).fit(history)
    exchanges = [m.id for m in history if m.tool_calls]
    pinned = {r.ids[0]: r.reason for r in report.pinned}
    loop = [i for i, reason in pinned.items() if reason == "current tool loop"]
    assert sorted(exchanges[-steps:-1] if steps > 1 else []) == sorted(loop)
    assert pinned[exchanges[-1]] == "most recent"


def test_tool_pair_safe_policy_overrides_history_policy() -> None:
    """Policy = 'strict' on tool_pair_safe makes an orphan tool result raise."""
    mgr = _manager([{"name": "tool_pair_safe", "policy": "strict"}], 1000)
    assert mgr.history_policy == "strict"
    with pytest.raises(InvalidHistoryError) as info:
        mgr.fit([Message.user("hi"), Message.tool("stray", "call_x")])
    assert (info.value.index, info.value.problem) == (1, "orphan_tool_result")


def test_repair_policy_archives_orphans_and_reports() -> None:
    """Under 'repair' an orphan result is left out, archived and listed in the report."""
    orphan = Message.tool("stray", "call_x")
    mgr = _manager(TPS, 1000)
    fitted, report = mgr.fit([Message.user("hi"), orphan, Message.assistant("hello")])
    assert orphan not in fitted
    assert orphan in mgr.state.archive
    assert report.repairs == ["message 1: orphan tool result (archived)"]


# -- summarize ---------------------------------------------------------------------------------

SUMMARY_PIPELINE = [{"name": "pin_and_slide"}, {"name": "summarize"}]


def test_summarize_injects_summary_after_pinned_head() -> None:
    """After a compaction a system summary message follows the system prompt and the task."""
    history = chat_history(30)
    mgr = _manager(SUMMARY_PIPELINE, 1000)
    fitted, report = mgr.fit(history)
    summary = fitted[2]
    assert fitted[:2] == history[:2]
    assert (summary.role, dict(summary.metadata)) == ("system", {"ctxmgr": "summary"})
    assert summary.text == SUMMARY_HEADER + mgr.state.summary  # type: ignore[operator]
    assert [(r.reason, r.strategy) for r in report.injected] == [("running summary", "summarize")]
    assert report.summarized
    assert report.tokens_after <= 1000


def test_summarize_covers_the_evicted_messages() -> None:
    """summary_covers lists every evicted message id; report.summarized records them."""
    mgr = _manager(SUMMARY_PIPELINE, 1000)
    _, report = mgr.fit(chat_history(30))
    dropped = _dropped_ids(report)
    assert dropped
    assert set(dropped) <= set(mgr.state.summary_covers)
    assert set(dropped) == {i for r in report.summarized for i in r.ids}


def test_summarize_and_the_manager_share_one_coverage_set() -> None:
    """One set of covered ids per session (a 100,000-id set is ~4 MB), equal to the list."""
    mgr = _manager(SUMMARY_PIPELINE, 1000)
    mgr.fit(chat_history(30))
    mgr.fit(chat_history(45))
    covered = mgr._covered()
    assert covered is mgr.state.covered()
    assert covered == set(mgr.state.summary_covers)
    assert len(covered) == len(mgr.state.summary_covers)  # no id covered twice


def test_summarizer_receives_previous_summary_and_new_evictions() -> None:
    """Each call gets the previous summary and only the newly evicted messages."""
    rec = RecordingSummarizer()
    mgr = _manager(SUMMARY_PIPELINE, 1000, summarizer=rec)
    first_history = chat_history(30)
    _, first = mgr.fit(first_history)
    assert len(rec.calls) == 1
    previous, messages = rec.calls[0]
    assert previous is None
    assert [m.id for m in messages] == _dropped_ids(first)
    summary_after_first = mgr.state.summary
    assert summary_after_first

    longer = chat_history(45)  # same seed: extends the first history
    assert longer[: len(first_history)] == first_history
    _, second = mgr.fit(longer)
    assert second.compacted
    assert len(rec.calls) == 2
    previous, messages = rec.calls[1]
    assert previous == summary_after_first
    assert {m.id for m in messages}.isdisjoint({m.id for m in rec.calls[0][1]})
    assert [m.id for m in messages] == _dropped_ids(second)


def test_failing_summarizer_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    """A summarizer that raises is replaced by the extractive one; the summary still appears."""
    rec = RecordingSummarizer(fail=True)
    mgr = _manager(SUMMARY_PIPELINE, 1000, summarizer=rec)
    with caplog.at_level(logging.WARNING, logger="ctxmgr"):
        fitted, report = mgr.fit(chat_history(30))
    assert len(rec.calls) == 1
    assert mgr.state.summary
    assert mgr.state.extra["summarize"] == {"calls": 1, "failures": 1}
    assert report.summarized
    assert _by_tag(fitted, "summary")
    assert "summarizer failed" in caplog.text


def test_summary_longer_than_budget_is_cut_to_fit() -> None:
    """A summarizer returning too much text is cut to max_summary_tokens."""

    class Verbose:
        def summarize(self, previous: str | None, messages: Sequence[Message], **kw: Any) -> str:
            return "\n".join(f"- point {i}: " + "words " * 20 for i in range(200))

    mgr = _manager(
        [{"name": "pin_and_slide"}, {"name": "summarize", "max_summary_tokens": 80}],
        4000,
        summarizer=Verbose(),
    )
    mgr.fit(chat_history(100))
    assert mgr.counter.count_text(mgr.state.summary or "") <= 80


class _AsyncSummarizer:
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int]] = []

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        await asyncio.sleep(0)
        self.calls.append((previous, len(messages)))
        return f"ASYNC SUMMARY of {len(messages)} messages"


async def test_async_summarizer_through_afit() -> None:
    """Afit awaits an async summarizer; its text is the injected summary."""
    summ = _AsyncSummarizer()
    mgr = _manager(SUMMARY_PIPELINE, 1000, summarizer=summ)
    fitted, report = await mgr.afit(chat_history(30))
    n = len(_dropped_ids(report))
    assert [(None, n)] == summ.calls
    assert mgr.state.summary == f"ASYNC SUMMARY of {n} messages"
    assert _by_tag(fitted, "summary")[0].text.endswith(f"ASYNC SUMMARY of {n} messages")
    assert mgr.state.extra["summarize"]["failures"] == 0


def test_async_summarizer_in_sync_fit() -> None:
    """A sync fit outside an event loop runs an async-only summarizer to completion."""
    summ = _AsyncSummarizer()
    mgr = _manager(SUMMARY_PIPELINE, 1000, summarizer=summ)
    mgr.fit(chat_history(30))
    assert len(summ.calls) == 1
    assert (mgr.state.summary or "").startswith("ASYNC SUMMARY")


async def test_failing_async_summarizer_falls_back_in_afit() -> None:
    """An async summarizer that raises inside afit falls back to the extractive summary."""

    class Broken:
        async def asummarize(self, previous: str | None, messages: Any, **kw: Any) -> str:
            raise RuntimeError("down")

    mgr = _manager(SUMMARY_PIPELINE, 1000, summarizer=Broken())
    fitted, _ = await mgr.afit(chat_history(30))
    assert mgr.state.extra["summarize"]["failures"] == 1
    assert _by_tag(fitted, "summary")


async def test_run_coroutine_sync_closes_coroutine_inside_running_loop() -> None:
    """Summarize's sync path refuses to block inside a running loop and closes the coroutine."""
    coro = _AsyncSummarizer().asummarize(None, [], max_tokens=10)
    with pytest.raises(RuntimeError, match="running event loop"):
        run_coroutine_sync(coro)
    state = inspect.getcoroutinestate(coro)
    coro.close()  # never leak it, whatever the outcome
    assert state == inspect.CORO_CLOSED


# -- system_replay -----------------------------------------------------------------------------


def test_system_replay_appends_every_n_turns_keeping_prefix() -> None:
    """Every `every` turns a replay is appended; the previous context stays a prefix."""
    history = chat_history(10)
    mgr = _manager([{"name": "system_replay", "every": 3}], 100_000)
    previous: list[Message] = []
    replay_turns = []
    for turn in range(1, 10):
        fitted, report = mgr.fit(history[: 1 + 2 * turn])
        assert not report.compacted
        assert fitted[: len(previous)] == previous
        replays = [r for r in report.injected if r.reason == "system_replay"]
        if replays:
            replay_turns.append(turn)
            assert _by_tag(fitted, "system_replay")[-1] is fitted[-1]
        previous = fitted
    assert replay_turns == [3, 6, 9]
    replay = _by_tag(previous, "system_replay")
    assert len(replay) == 3
    assert replay[0].role == "system"
    assert replay[0].text == "Reminder of your instructions:\nYou are helpful."


def test_system_replay_short_form_and_prefix() -> None:
    """short_form and prefix options set the replayed text."""
    mgr = _manager(
        [{"name": "system_replay", "every": 1, "short_form": "Be brief.", "prefix": "NB: "}],
        100_000,
    )
    fitted, _ = mgr.fit(chat_history(1))
    assert fitted[-1].text == "NB: Be brief."


def test_system_replay_needs_a_system_prompt() -> None:
    """Without a leading system message nothing is replayed."""
    mgr = _manager([{"name": "system_replay", "every": 1}], 100_000)
    fitted, report = mgr.fit(chat_history(2)[1:])
    assert _by_tag(fitted, "system_replay") == []
    assert report.injected == []


def test_old_replays_are_dropped_at_compaction() -> None:
    """At the next compaction earlier replays leave the context."""
    history = chat_history(40)
    mgr = _manager([{"name": "pin_and_slide"}, {"name": "system_replay", "every": 2}], 1500)
    for turn in range(1, 6):
        fitted, report = mgr.fit(history[: 1 + 2 * turn])
    assert _by_tag(fitted, "system_replay")
    earlier = {m.id for m in _by_tag(fitted, "system_replay")}
    fitted, report = mgr.fit(history)
    assert report.compacted
    # earlier replays are gone; a replay due on this very turn may be appended after compacting
    kept = [m.id for m in _by_tag(fitted, "system_replay")]
    assert not earlier & set(kept)
    assert all(i == f"ctxmgr-replay-{report.turn}" for i in kept)


# -- scratchpad --------------------------------------------------------------------------------


def _scratch_manager(max_tokens: int = 1000, **options: Any) -> ContextManager:
    return _manager([{"name": "pin_and_slide"}, {"name": "scratchpad", **options}], max_tokens)


def test_scratchpad_api_write_update_delete_read() -> None:
    """write, update (replace and append), delete and read manage notes in the session state."""
    mgr = _scratch_manager()
    pad = mgr.scratchpad
    pad.write("user.prefs", "likes aisle seats", ["msg 3"])
    pad.update("user.prefs", ["vegetarian"], append=True)
    assert pad.read("user.prefs") == "- user.prefs: likes aisle seats; vegetarian (see: msg 3)"
    pad.update("user.prefs", "window seat", pointers=["msg 9"])
    assert pad.read("user.prefs") == "- user.prefs: window seat (see: msg 9)"
    pad.write("tmp", ["a", "b"])
    assert [n.key for n in pad.list()] == ["user.prefs", "tmp"]
    assert pad.delete("tmp") is True
    assert pad.delete("tmp") is False
    assert pad.read() == "- user.prefs: window seat (see: msg 9)"
    assert mgr.state.notes["user.prefs"].facts == ["window seat"]


def test_scratchpad_errors() -> None:
    """Missing keys and empty keys raise CtxmgrError; an empty pad reads '(no notes)'."""
    pad = _scratch_manager().scratchpad
    assert pad.read() == "(no notes)"
    with pytest.raises(CtxmgrError, match="no note named 'nope'"):
        pad.update("nope", "x")
    with pytest.raises(CtxmgrError):
        pad.read("nope")
    with pytest.raises(CtxmgrError):
        pad.write("  ", "x")


def test_scratchpad_is_none_without_the_strategy() -> None:
    """manager.scratchpad is None when the scratchpad strategy is not configured."""
    assert _manager([{"name": "pin_and_slide"}], 1000).scratchpad is None


def test_notes_block_injected_only_after_compaction() -> None:
    """Notes are not injected on the append-only path; after a compaction they follow the head."""
    history = chat_history(30)
    mgr = _scratch_manager()
    mgr.scratchpad.write("user.prefs", "likes aisle seats")
    fitted, report = mgr.fit(history[:5])
    assert not report.compacted
    assert _by_tag(fitted, "notes") == []
    fitted, report = mgr.fit(history)
    assert report.compacted
    notes = fitted[2]
    assert (notes.role, dict(notes.metadata)) == ("system", {"ctxmgr": "notes"})
    assert notes.text == NOTES_HEADER + "- user.prefs: likes aisle seats"
    assert "scratchpad notes" in [r.reason for r in report.injected]
    assert report.tokens_after <= 1000


def test_notes_block_drops_oldest_notes_over_budget() -> None:
    """Beyond max_note_tokens the oldest notes are left out of the block (kept in the state)."""
    mgr = _scratch_manager(max_note_tokens=30)
    for i in range(10):
        mgr.scratchpad.write(f"note{i}", f"fact number {i} about the booking")
    fitted, _ = mgr.fit(chat_history(30))
    block = _by_tag(fitted, "notes")[0].text
    assert "note9" in block
    assert "note0" not in block
    assert len(mgr.state.notes) == 10


def test_extraction_rules_turn_tool_results_into_notes() -> None:
    """A rule matching a tool name glob turns regex matches in its results into note facts."""
    mgr = _scratch_manager(
        100_000,
        rules=[
            {"tool": "get_*", "pattern": r"order (?P<order>[A-Z]\d+)", "key": "orders.{tool}"},
            {"tool": "search", "pattern": r"ERR-\d+", "max_facts": 1},
        ],
    )
    result = Message.tool("Found order A12 and order B7.", "c1", name="get_orders")
    history = [
        Message.system("s"),
        Message.user("find my orders"),
        Message.assistant("", [ToolCall("c1", "get_orders", "{}"), ToolCall("c2", "search", "{}")]),
        result,
        Message.tool("order Z9: ERR-1 then ERR-2", "c2", name="search"),
    ]
    mgr.fit(history)
    notes = mgr.state.notes
    assert list(notes) == ["orders.get_orders", "search"]
    assert notes["orders.get_orders"].facts == ["order=A12", "order=B7"]
    assert [f"tool result {result.id}"] == notes["orders.get_orders"].pointers
    assert notes["search"].facts == ["ERR-2"]
    assert notes["search"].turn == 1


def test_refresh_on_change_compacts_when_notes_change() -> None:
    """With refresh_on_change a note written between fits triggers a compaction showing it."""
    history = chat_history(5)
    mgr = _scratch_manager(100_000, refresh_on_change=True)
    _, report = mgr.fit(history[:3])
    assert not report.compacted
    mgr.scratchpad.write("k", "v")
    fitted, report = mgr.fit(history)
    assert (report.compacted, report.reason) == (True, "scratchpad notes changed")
    assert _by_tag(fitted, "notes")
    _, report = mgr.fit([*history, Message.user("again")])
    assert not report.compacted


# -- relevance ---------------------------------------------------------------------------------

FILLER_DAYS = 20


def _passport_history() -> list[Message]:
    history = [Message.system("You are helpful."), Message.user("Hi, I have some questions.")]
    history.append(Message.user("My passport number is XK-442 and my favourite colour is teal."))
    history.append(Message.assistant("Noted the passport number XK-442 and the colour teal."))
    for i in range(FILLER_DAYS):
        history.append(
            Message.user(f"We talked about the weather and sports on day {i}, nothing else.")
        )
        history.append(Message.assistant(f"Sure, day {i} chat acknowledged, weather is fine."))
    return history


def _has_passport(messages: Sequence[Message]) -> bool:
    return any("XK-442" in m.text for m in messages)


def test_relevance_keeps_matching_segment_over_newer_irrelevant_ones() -> None:
    """The old passport turn survives a question about it, while newer chit-chat is evicted."""
    history = [*_passport_history(), Message.user("What is my passport number?")]
    fitted, report = _manager([{"name": "relevance"}], 700).fit(history)
    assert report.compacted
    assert _has_passport(fitted)
    newer_dropped = [m for m in history[4:-1] if m not in fitted]
    assert len(newer_dropped) >= FILLER_DAYS // 2  # newer but irrelevant turns were evicted
    # control: a FIFO pipeline evicts the passport turn
    fifo = _manager([{"name": "pin_and_slide", "pin_first_user": False}], 700)
    assert not _has_passport(fifo.fit(history).messages)


def test_relevance_recalls_archived_segment_for_a_new_question() -> None:
    """An evicted segment matching a new question is recalled from the archive (opt-in)."""
    history = [*_passport_history(), Message.user("Tell me about the weather on day 19.")]
    mgr = _manager([{"name": "relevance", "rerank_on_new_query": True}], 700)
    fitted, _ = mgr.fit(history)
    assert not _has_passport(fitted)
    assert mgr.state.archive.search("passport XK-442")
    history += [Message.assistant("It was fine."), Message.user("What is my passport number?")]
    fitted, report = mgr.fit(history)
    assert report.compacted
    assert report.reason == "new query: re-rank by relevance"
    assert _has_passport(fitted)
    assert report.tokens_after <= 700


def test_relevance_query_argument_overrides_latest_user_message() -> None:
    """fit(query=...) ranks against the given text instead of the latest user message."""
    history = [*_passport_history(), Message.user("Tell me about the weather on day 19.")]
    fitted, _ = _manager([{"name": "relevance"}], 700).fit(history, query="passport number")
    assert _has_passport(fitted)


def test_relevance_without_rerank_does_not_recall() -> None:
    """With rerank_on_new_query = false a new question does not force a compaction."""
    history = [*_passport_history(), Message.user("Tell me about the weather on day 19.")]
    mgr = _manager([{"name": "relevance", "rerank_on_new_query": False}], 700)
    mgr.fit(history)
    history += [Message.assistant("It was fine."), Message.user("What is my passport number?")]
    fitted, report = mgr.fit(history)
    assert not report.compacted
    assert not _has_passport(fitted)


def test_live_tool_result_is_truncated_instead_of_overflowing() -> None:
    """A huge result in the current tool step is truncated to fit; the original is archived."""
    from ctxmgr import ContextManager, Message, ToolCall, get_counter

    counter = get_counter()
    big = " ".join(f"row{i} value{i}" for i in range(1500))
    history = [
        Message.system("policy " * 600),
        Message.user("find my booking"),
        Message.assistant("", [ToolCall("c1", "search", "{}")]),
        Message.tool(big, "c1", name="search"),
    ]
    mgr = ContextManager.from_config(
        "fifo", max_context_tokens=2000, reserve_output_tokens=0, counter=counter
    )
    out, report = mgr.fit(history)
    assert counter.count_messages(out) <= 2000
    result = out[-1]
    assert result.tool_call_id == "c1"
    assert result.metadata["ctxmgr"] == "truncated_tool_result"
    assert result.text.startswith("row0 value0")
    assert history[3] in mgr.state.archive
    assert [r.reason for r in report.cleared] == ["truncated to fit the effective limit"]
