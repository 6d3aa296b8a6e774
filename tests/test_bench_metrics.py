"""Benchmark metrics: pure functions checked on hand-built contexts with exact values."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ctxmgr.bench import metrics as M
from ctxmgr.errors import ConfigError
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


def _replay_costs(prices: M.PriceTable, requests: list[tuple[int, int, bool, int]]) -> float:
    """Cost with caching of requests (tokens, common prefix, extends, added messages)."""
    read = written = total = 0
    previous: int | None = None
    for tokens, common, extends, added in requests:
        r, w = M.cache_tokens(tokens, common, previous, extends, added, prices)
        read, written, total = read + r, written + w, total + tokens
        previous = tokens
    return M.input_cost_usd(total, read, prices, written)


def test_price_tables_name_their_sources_and_the_default_is_unchanged() -> None:
    """One table per caching scheme, keyed by name, each with the provider page it cites."""
    assert M.DEFAULT_PRICES == M.PriceTable() == M.PRICE_TABLES["gpt-4o-mini"]
    assert set(M.PRICE_TABLES) >= {"gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-flash"}
    for name, table in M.PRICE_TABLES.items():
        assert table.name == name and "https://" in table.source
    assert M.get_prices("claude-haiku-3.5").min_cached_prefix == 2048
    with pytest.raises(ConfigError, match=r"gemini-2\.5-flash"):
        M.get_prices("gpt-5-nano")


def test_cost_openai_automatic_caching() -> None:
    """gpt-4o-mini / gpt-4o: prefix >= 1,024 in 128-token steps, half price, no write fee.

    2,000 tokens cold, then 2,500 sharing 1,500: 1,024 + 3 x 128 = 1,408 cached.
    gpt-4o-mini: 2,000 x 0.15 + 1,092 x 0.15 + 1,408 x 0.075 = 569.4 -> $0.0005694;
    gpt-4o: 2,000 x 2.5 + 1,092 x 2.5 + 1,408 x 1.25 = 9,490 -> $0.00949.
    """
    requests = [(2000, 0, False, 3), (2500, 1500, False, 4)]
    assert _replay_costs(M.get_prices("gpt-4o-mini"), requests) == pytest.approx(569.4e-6)
    assert _replay_costs(M.get_prices("gpt-4o"), requests) == pytest.approx(9490e-6)


def test_cost_anthropic_explicit_caching() -> None:
    """claude-sonnet-4: write 1.25x ($3.75/M), read 0.1x ($0.30/M), minimum 1,024 tokens.

    1,500 written; 1,800 extending it: 1,500 read + 300 written; 1,900 not extending: all
    written; 900 (under the minimum): base price. 5,625 + 450 + 1,125 + 7,125 + 2,700 =
    17,025 -> $0.017025.
    """
    sonnet = M.get_prices("claude-sonnet-4")
    requests = [
        (1500, 0, False, 2),
        (1800, 1500, True, 2),
        (1900, 1000, False, 3),
        (900, 0, False, 1),
    ]
    assert _replay_costs(sonnet, requests) == pytest.approx(17025e-6)
    assert M.cache_tokens(1800, 1500, 1500, True, 2, sonnet) == (1500, 300)
    assert M.cache_tokens(1800, 1500, 1500, True, 21, sonnet) == (0, 1800)  # past lookback
    assert M.cache_tokens(1800, 1000, 1000, True, 2, sonnet) == (0, 1800)  # 1,000 not cached
    # a common prefix without the whole previous request hits nothing (no breakpoint there)
    assert M.cache_tokens(1800, 1700, 1750, False, 2, sonnet) == (0, 1800)


def test_cost_anthropic_haiku_minimum_2048() -> None:
    """claude-haiku-3.5: prompts under 2,048 tokens are neither written nor read.

    2,000 at $0.80/M = 1,600; 2,100 extending it: nothing to read, written at $1.00/M =
    2,100; 2,300 extending that: 2,100 read at $0.08/M + 200 written = 168 + 200.
    Total 4,068 -> $0.004068.
    """
    haiku = M.get_prices("claude-haiku-3.5")
    requests = [(2000, 0, False, 1), (2100, 2000, True, 2), (2300, 2100, True, 2)]
    assert _replay_costs(haiku, requests) == pytest.approx(4068e-6)


def test_cost_gemini_implicit_caching() -> None:
    """gemini-2.5-flash: any common prefix >= 2,048 tokens read at $0.03/M, no rounding.

    3,000 cold (900); 3,000 sharing 2,500: 500 x 0.30 + 2,500 x 0.03 = 225; 3,000 sharing
    2,000 (under the minimum): 900. Total 2,025 -> $0.002025.
    """
    gemini = M.get_prices("gemini-2.5-flash")
    requests = [(3000, 0, False, 1), (3000, 2500, False, 2), (3000, 2000, False, 2)]
    assert _replay_costs(gemini, requests) == pytest.approx(2025e-6)


def test_swe_agent_replay_uses_the_sonnet_table() -> None:
    """The agent-tools replay prices with the claude-sonnet-4 table's numbers."""
    from ctxmgr.bench import agent_tools

    sonnet = M.get_prices("claude-sonnet-4")
    assert sonnet.input_per_mtok / 1e6 == agent_tools.PRICE_PER_TOKEN
    assert agent_tools.CACHE_READ * sonnet.input_per_mtok == pytest.approx(
        sonnet.cached_input_per_mtok
    )
    assert sonnet.cache_write_per_mtok is not None
    assert agent_tools.CACHE_WRITE * sonnet.input_per_mtok == pytest.approx(
        sonnet.cache_write_per_mtok
    )


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
