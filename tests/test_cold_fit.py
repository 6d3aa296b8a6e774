"""Tests for cold fits from the tail: a fresh manager given a long history."""

from __future__ import annotations

import pytest

from ctxmgr import ContextManager, Message, get_counter
from ctxmgr.testing import agent_history, check_tool_pairs

HISTORY = agent_history(1500, seed=21)


def keys(messages: object) -> set[str]:
    return {f"{m.id}/{m.fingerprint}" for m in messages}  # type: ignore[attr-defined]


@pytest.mark.parametrize("preset", ["fifo", "summary", "agent"])
def test_cold_fit_tokenizes_only_the_tail_and_loses_nothing(preset: str) -> None:
    """Only the newest ~2x the limit is tokenized; the rest is archived unread; valid output."""
    counter = get_counter()
    counter.clear_cache()
    mgr = ContextManager.from_config(preset, max_context_tokens=8000, counter=counter)
    fitted, report = mgr.fit(HISTORY)
    assert counter.cache_info().misses < len(HISTORY) / 2
    assert report.tokens_before_estimated is True
    assert check_tool_pairs(fitted) == []
    assert counter.count_messages(fitted) == report.tokens_after <= report.effective_limit
    archived = keys(e.message for e in mgr.state.archive)
    assert keys(HISTORY) <= archived | keys(fitted)
    assert any("unread" in r.reason for r in report.dropped)


def test_cold_fit_with_cached_counts_is_exact_and_selects_the_same() -> None:
    """With every count cached, tokens_before is exact and the context is the same."""
    cold = get_counter()
    cold.clear_cache()
    first = ContextManager.from_config("fifo", max_context_tokens=8000, counter=cold)
    fitted_cold, report_cold = first.fit(HISTORY)
    warm = get_counter()
    for m in HISTORY:
        warm.count_message(m)
    second = ContextManager.from_config("fifo", max_context_tokens=8000, counter=warm)
    fitted_warm, report_warm = second.fit(HISTORY)
    assert fitted_cold == fitted_warm
    assert report_warm.tokens_before_estimated is False
    assert report_warm.tokens_before == warm.count_messages(HISTORY)
    estimate, exact = report_cold.tokens_before, report_warm.tokens_before
    assert 0.6 * exact < estimate < 1.6 * exact


def test_recalled_unread_segment_is_counted_exactly() -> None:
    """An old segment recalled by relevance enters the context with its exact count."""
    needle = Message.user("zebra quartz xylophone reservation for Oslo")
    history = [HISTORY[0], needle, *HISTORY[1:1200], Message.user("zebra quartz xylophone?")]
    counter = get_counter()
    counter.clear_cache()
    mgr = ContextManager.from_config("agent", max_context_tokens=8000, counter=counter)
    fitted, report = mgr.fit(history)
    assert needle in fitted
    assert counter.count_messages(fitted) == report.tokens_after <= report.effective_limit


def test_continuing_after_a_cold_fit_is_incremental() -> None:
    """After the cold fit, appends take the incremental path and stay exact in the context."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=8000, counter=get_counter())
    mgr.fit(HISTORY[:1400])
    for n in range(1401, 1500, 7):
        fitted, report = mgr.fit(HISTORY[:n])
        assert check_tool_pairs(fitted) == []
        assert get_counter().count_messages(fitted) == report.tokens_after
