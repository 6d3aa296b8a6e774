"""Benchmark metrics: pure functions checked on hand-built contexts with exact values."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ctxmgr.bench import metrics as M
from ctxmgr.messages import Message, ToolCall


class WordCounter:
    """Counts one token per whitespace word plus 3 per message, and 3 per request."""

    def count_message(self, message: Message) -> int:
        """3 + number of words of the message text."""
        return 3 + len(message.text.split())

    def count_messages(self, messages: Sequence[Message]) -> int:
        """Sum of message counts plus 3 reply-priming tokens."""
        return sum(self.count_message(m) for m in messages) + 3


def call(cid: str, name: str = "lookup") -> ToolCall:
    return ToolCall(cid, name, '{"q":"x"}')


SYSTEM = Message.system("You are helpful.", id="sys")
USER = Message.user("hello there", id="u1")
ASK = Message.assistant("", [call("c1")], id="a1")
RESULT = Message.tool("42", "c1", id="t1")
ANSWER = Message.assistant("It is 42.", id="a2")


# -- budget and tool pairs -----------------------------------------------------------------
def test_budget_violation_is_strictly_greater() -> None:
    """A context exactly at the budget is fine; one token over is a violation."""
    assert not M.is_budget_violation(2000, 2000)
    assert M.is_budget_violation(2001, 2000)


def test_well_formed_context_has_no_broken_pairs() -> None:
    """Call followed by its result, then other messages: zero broken pairs."""
    assert M.broken_tool_pairs([SYSTEM, USER, ASK, RESULT, ANSWER]) == 0


def test_orphan_tool_result_counts() -> None:
    """A tool result whose call was evicted is one broken pair."""
    assert M.broken_tool_pairs([SYSTEM, RESULT, ANSWER]) == 1


def test_dangling_call_counts() -> None:
    """An assistant call whose result was evicted is one broken pair, also at the end."""
    assert M.broken_tool_pairs([USER, ASK, ANSWER]) == 1
    assert M.broken_tool_pairs([USER, ASK]) == 1


def test_split_pair_counts_as_a_violation() -> None:
    """A call and its result separated by a user message: the call dangles (1 broken)."""
    assert M.broken_tool_pairs([ASK, USER, RESULT]) == 1


def test_parallel_calls_with_one_result_missing() -> None:
    """Two parallel calls, only one answered: one broken pair; a result without id: one."""
    ask2 = Message.assistant("", [call("c1"), call("c2")], id="a3")
    assert M.broken_tool_pairs([USER, ask2, RESULT, ANSWER]) == 1
    no_id = Message("tool", "x", id="t9")
    assert M.broken_tool_pairs([USER, no_id]) == 1


def test_result_before_its_call_is_orphan_and_call_dangles() -> None:
    """Reordered pair: the result is orphan and the later call has no result after it."""
    assert M.broken_tool_pairs([RESULT, ASK]) == 2


# -- retention -----------------------------------------------------------------------------
def test_contains_message_by_id_or_text() -> None:
    """Same id matches; a rebuilt message with the same text (new id) also matches."""
    rebuilt = Message.system("You are helpful.", id="other")
    assert M.contains_message([rebuilt, USER], SYSTEM)
    assert M.contains_message([SYSTEM.evolve(content="changed", id="sys")], SYSTEM)
    assert not M.contains_message([USER, ANSWER], SYSTEM)


def test_empty_text_never_matches_by_text() -> None:
    """Two different tool-call messages with empty text are not the same message."""
    other = Message.assistant("", [call("zz")], id="a9")
    assert not M.contains_message([other], ASK)


def test_latest_user() -> None:
    """The last user message of the history, or None without one."""
    later = Message.user("again", id="u2")
    assert M.latest_user([USER, ANSWER, later, ASK]) is later
    assert M.latest_user([SYSTEM, ANSWER]) is None


# -- evidence --------------------------------------------------------------------------------
def turn(dia: str, text: str) -> Message:
    return Message.user(text, id=f"c/{dia}", metadata={"dia_id": dia})


ORIGINALS = {"D1:1": "I moved to Paris", "D1:2": "I adopted a cat", "D2:1": "I got a job"}


def test_evidence_kept_verbatim_only() -> None:
    """A turn counts only with its dia_id AND unchanged text; unknown ids are ignored."""
    context = [
        turn("D1:1", "I moved to Paris"),
        turn("D1:2", "[summary] adopted a cat"),  # changed text: not kept
    ]
    assert M.evidence_kept(context, ["D1:1", "D1:2", "D9:9"], ORIGINALS) == (1, 2)
    assert M.evidence_kept(context, ["D9:9"], ORIGINALS) == (0, 0)


def test_evidence_recall_aggregates() -> None:
    """all-kept share over probes, turn share pooled over turns; skip unscored probes."""
    assert M.evidence_recall([(1, 2), (1, 1), (0, 0), (3, 3)]) == (2 / 3, 5 / 6)
    assert M.evidence_recall([(0, 0)]) == (None, None)


# -- text matching -----------------------------------------------------------------------------
def test_normalize_answer_is_squad_style() -> None:
    """Lowercase, punctuation removed, articles removed, whitespace squashed."""
    assert M.normalize_answer("  The Eiffel-Tower,  in   PARIS! ") == "eiffeltower in paris"
    assert M.normalize_answer("A cat and an owl") == "cat and owl"


def test_answer_in_context_whole_words() -> None:
    """Answers match on word boundaries over the whole context, summaries included."""
    summary = Message.user("Summary: she went on 7 May, 2023.", metadata={"ctxmgr": "summary"})
    text = M.context_text([USER, summary])
    assert M.answer_in_context(text, "7 May 2023") is True
    assert M.answer_in_context(M.context_text([Message.user("in 2017")]), "7") is False
    assert M.answer_in_context(text, "the") is None  # normalizes to nothing: not scored


def test_context_text_includes_tool_arguments_and_cache() -> None:
    """Tool-call names and arguments are part of the text; the cache gives the same result."""
    cache: dict[str, str] = {}
    first = M.context_text([ASK, RESULT], cache)
    assert first == "lookup qx 42"
    assert M.context_text([ASK, RESULT], cache) == first
    assert len(cache) == 2


def test_values_found_token_boundaries_and_compact_json() -> None:
    """Values match compact JSON arguments; '0' is not found inside '2024'; empties skipped."""
    ask = Message.assistant("", [ToolCall("c", "book", '{"origin":"JFK","date":"2024-05-20"}')])
    text = M.context_text([ask], normalize=M.normalize_value)
    assert M.values_found(text, ["JFK", "2024-05-20", "0", "SEA", "..."]) == (2, 4)


# -- prefix stability and cost ------------------------------------------------------------------
def test_extends_previous() -> None:
    """Appending keeps the prefix; dropping or changing an early message breaks it."""
    assert M.extends_previous([SYSTEM, USER], [SYSTEM, USER, ASK])
    assert M.extends_previous([], [SYSTEM])
    assert not M.extends_previous([SYSTEM, USER], [SYSTEM, ASK])
    assert not M.extends_previous([SYSTEM, USER, ASK], [SYSTEM, USER])
    changed = USER.evolve(content="hello world", id="u1")  # same id, new content
    assert not M.extends_previous([SYSTEM, USER], [SYSTEM, changed])


def test_common_prefix_tokens_whole_messages() -> None:
    """Tokens of the equal leading messages, without reply priming."""
    counter = WordCounter()
    # SYSTEM: 3 + 3 words = 6; USER: 3 + 2 = 5
    assert M.common_prefix_tokens([SYSTEM, USER, ASK], [SYSTEM, USER, ANSWER], counter) == 11
    assert M.common_prefix_tokens([USER], [SYSTEM], counter) == 0


@pytest.mark.parametrize(
    ("prefix", "cached"),
    [(0, 0), (1023, 0), (1024, 1024), (1151, 1024), (1152, 1152), (5000, 4992)],
)
def test_cached_prefix_tokens_openai_rules(prefix: int, cached: int) -> None:
    """Below 1024 nothing is cached; above, rounded down to 1024 + k * 128."""
    assert M.cached_prefix_tokens(prefix) == cached


def test_cached_prefix_without_rounding() -> None:
    """cache_increment=1 disables the 128-token rounding."""
    prices = M.PriceTable(cache_increment=1)
    assert M.cached_prefix_tokens(1151, prices) == 1151


def test_input_cost() -> None:
    """1M tokens at $0.15/M; half of them cached at $0.075/M costs $0.1125."""
    assert M.input_cost_usd(1_000_000) == pytest.approx(0.15)
    assert M.input_cost_usd(1_000_000, 500_000) == pytest.approx(0.1125)
    custom = M.PriceTable(input_per_mtok=2.5, cached_input_per_mtok=1.25)
    assert M.input_cost_usd(2_000_000, 0, custom) == pytest.approx(5.0)


# -- statistics ---------------------------------------------------------------------------------
def test_percentile_nearest_rank_and_token_stats() -> None:
    """p95 of 1..20 is 19, of 1..10 is 10; share/mean handle empty input with None."""
    assert M.percentile(list(range(1, 21)), 95) == 19
    assert M.percentile(list(range(10, 0, -1)), 95) == 10
    assert M.percentile([], 50) is None
    assert M.token_stats([100, 300, 200]) == (200.0, 300, 300)
    assert M.token_stats([]) == (None, None, None)
    assert M.share(1, 4) == 0.25
    assert M.share(0, 0) is None
