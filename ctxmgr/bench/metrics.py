"""Pure metric functions for the benchmark: no LLM, no I/O, no global state.

Every function takes fitted contexts (lists of :class:`~ctxmgr.messages.Message`, oldest
first) or numbers already derived from them and returns a number. The replay
(:mod:`ctxmgr.bench.replay`) calls them once per fit; :mod:`ctxmgr.bench.results`
aggregates the per-fit values into one row per config x budget x dataset.

Vocabulary used in the docstrings:

* a *fit* is one call of ``FitSession.fit(history)``; its result is the *context*.
* a *turn fit* is the fit before a recorded assistant message (a model call of the
  transcript); a *probe fit* is the fit for a :class:`~ctxmgr.bench.transcript.Probe`.
* two messages are *the same message* when they are equal (``Message.__eq__``: same id
  and same content fingerprint).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ctxmgr.messages import Message

__all__ = [
    "DEFAULT_PRICES",
    "PRICE_TABLES",
    "MessageCounter",
    "PriceTable",
    "answer_in_context",
    "broken_tool_pairs",
    "cache_tokens",
    "cached_prefix_tokens",
    "common_prefix_tokens",
    "contains_message",
    "context_text",
    "evidence_kept",
    "evidence_recall",
    "extends_previous",
    "get_prices",
    "input_cost_usd",
    "is_budget_violation",
    "latest_user",
    "mean",
    "normalize_answer",
    "normalize_value",
    "percentile",
    "share",
    "token_stats",
    "values_found",
]


class MessageCounter(Protocol):
    """The part of ``ctxmgr.tokens.TokenCounter`` the metrics use."""

    def count_message(self, message: Message) -> int:
        """Tokens of one message (content, tool calls and per-message overhead)."""
        ...

    def count_messages(self, messages: Sequence[Message]) -> int:
        """Tokens of a whole request: the sum of :meth:`count_message` plus reply priming."""
        ...


# ---------------------------------------------------------------------------------------
# Budget and well-formedness
# ---------------------------------------------------------------------------------------
def is_budget_violation(context_tokens: int, budget: int) -> bool:
    """Whether a fit exceeds its budget.

    Args:
        context_tokens: ``counter.count_messages(context)``, in tokens (the benchmark's one
            counter, not the policy's own).
        budget: the effective limit the policy was given, in tokens.

    Returns:
        ``context_tokens > budget``.
    """
    return context_tokens > budget


def broken_tool_pairs(context: Sequence[Message]) -> int:
    """Count the broken tool call / tool result pairs of a context.

    A context is sent as is to a chat API, which rejects (OpenAI) or misreads both kinds
    of breakage. Counted, scanning oldest first:

    * an *orphan result*: a ``tool`` message whose ``tool_call_id`` is ``None`` or is not
      the id of a tool call of an earlier ``assistant`` message of the context;
    * a *dangling call*: a tool call of an ``assistant`` message with no ``tool`` message
      answering its id after it and before the next non-``tool`` message.

    A call and its result separated by another message therefore count once (the
    dangling call). A fit "has a tool-pair violation" when this is ``>= 1``.

    Args:
        context: the fitted context, oldest first.

    Returns:
        The number of orphan results plus dangling calls (0 for a well-formed context).
    """
    broken = 0
    seen_calls: set[str] = set()
    open_calls: set[str] = set()  # calls of the latest assistant still waiting for results
    for message in context:
        if message.role == "tool":
            call_id = message.tool_call_id
            if call_id is None or call_id not in seen_calls:
                broken += 1
            open_calls.discard(call_id or "")
            continue
        broken += len(open_calls)
        open_calls = set()
        if message.role == "assistant" and message.tool_calls:
            ids = {call.id for call in message.tool_calls}
            seen_calls |= ids
            open_calls = ids
    return broken + len(open_calls)


# ---------------------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------------------
def contains_message(context: Sequence[Message], message: Message) -> bool:
    """Whether ``context`` still holds ``message``: a message with its id, or with its text.

    Text equality (any role) is accepted because some policies rebuild messages (new ids)
    through a framework's own message type; an empty text never matches by text.
    """
    text = message.text
    for candidate in context:
        if candidate.id == message.id:
            return True
        if text and candidate.text == text:
            return True
    return False


def latest_user(history: Sequence[Message]) -> Message | None:
    """Return the last ``user`` message of ``history`` (oldest first), or ``None``."""
    for message in reversed(history):
        if message.role == "user":
            return message
    return None


# ---------------------------------------------------------------------------------------
# Evidence (LoCoMo)
# ---------------------------------------------------------------------------------------
def evidence_kept(
    context: Sequence[Message], evidence_ids: Iterable[str], originals: Mapping[str, str]
) -> tuple[int, int]:
    """Count the evidence turns a context keeps verbatim.

    An evidence turn is kept when the context has a message whose
    ``metadata["dia_id"]`` is the evidence id and whose text equals the original text of
    that turn (a summary that paraphrases it does not count). Evidence ids that name no
    turn of the transcript (LoCoMo has a few malformed ones) are ignored.

    Args:
        context: the fitted context.
        evidence_ids: the probe's ``evidence_ids`` (``"D1:3"``); duplicates count once.
        originals: ``dia_id -> original text`` for every turn of the transcript.

    Returns:
        ``(kept, considered)``: evidence turns kept, and evidence ids that name a turn.
    """
    wanted = {e for e in evidence_ids if e in originals}
    if not wanted:
        return 0, 0
    kept = set()
    for message in context:
        dia_id = message.metadata.get("dia_id")
        if isinstance(dia_id, str) and dia_id in wanted and message.text == originals[dia_id]:
            kept.add(dia_id)
    return len(kept), len(wanted)


def evidence_recall(per_probe: Iterable[tuple[int, int]]) -> tuple[float | None, float | None]:
    """Aggregate :func:`evidence_kept` results over answerable probes.

    Args:
        per_probe: ``(kept, considered)`` for each answerable qa probe; probes with
            ``considered == 0`` are skipped.

    Returns:
        ``(evidence_recall_all, evidence_turn_recall)``: the share of probes whose evidence
        turns are all kept, and the share of evidence turns kept (pooled over probes).
        Both ``None`` when no probe is answerable.
    """
    probes = all_kept = kept_turns = total_turns = 0
    for kept, considered in per_probe:
        if considered == 0:
            continue
        probes += 1
        all_kept += kept == considered
        kept_turns += kept
        total_turns += considered
    if probes == 0:
        return None, None
    return all_kept / probes, kept_turns / total_turns


# ---------------------------------------------------------------------------------------
# Text matching (answers, action arguments)
# ---------------------------------------------------------------------------------------
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalize text the SQuAD way: lowercase, drop punctuation and articles, squash spaces.

    This is ``normalize_answer`` of the official SQuAD v1.1/v2.0 evaluation script
    (https://rajpurkar.github.io/SQuAD-explorer/, ``evaluate-v2.0.py``), also used by
    LoCoMo's own QA scorer: ``lower`` -> remove every character of ``string.punctuation``
    -> remove the words ``a``, ``an``, ``the`` -> split on whitespace and join with single
    spaces.
    """
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


_PUNCT_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def normalize_value(text: str) -> str:
    """Normalize an action argument value or a context for :func:`values_found`.

    Like :func:`normalize_answer` except that punctuation becomes a space instead of
    being deleted, so compact JSON such as ``{"origin":"JFK"}`` (tool-call arguments)
    still splits into words: lowercase -> each ``string.punctuation`` character to a
    space -> drop ``a``/``an``/``the`` -> squash whitespace.
    """
    text = text.lower().translate(_PUNCT_TO_SPACE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def context_text(
    context: Sequence[Message],
    cache: dict[str, str] | None = None,
    normalize: Callable[[str], str] = normalize_answer,
) -> str:
    """Return the normalized text of a whole context.

    Each message contributes :attr:`Message.search_text` (its text plus the names and
    JSON arguments of its tool calls) passed through ``normalize``; the parts are joined
    with single spaces. Summaries and notes are messages of the context, so their text
    counts.

    Args:
        context: the fitted context.
        cache: optional ``fingerprint -> normalized text`` memo shared across calls with
            the same ``normalize`` (a pure speed-up; the result is the same).
        normalize: :func:`normalize_answer` (default) or :func:`normalize_value`.
    """
    parts = []
    for message in context:
        if cache is None:
            parts.append(normalize(message.search_text))
            continue
        norm = cache.get(message.fingerprint)
        if norm is None:
            norm = cache[message.fingerprint] = normalize(message.search_text)
        parts.append(norm)
    return " ".join(p for p in parts if p)


def _occurs(needle: str, haystack: str) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a whole-word sequence (both normalized)."""
    return f" {needle} " in f" {haystack} "


def answer_in_context(normalized_context: str, answer: str) -> bool | None:
    """Whether the gold answer occurs in the context text.

    Args:
        normalized_context: :func:`context_text` of the fitted context (with
            :func:`normalize_answer`).
        answer: the gold answer text.

    Returns:
        ``True`` when ``normalize_answer(answer)`` occurs in ``normalized_context`` as a
        whole-word sequence (a substring starting and ending at word boundaries, so
        ``"7"`` does not match ``"2017"``); ``None`` when the answer normalizes to the empty
        string (not scored).
    """
    needle = normalize_answer(answer)
    if not needle:
        return None
    return _occurs(needle, normalized_context)


def values_found(normalized_context: str, values: Iterable[str]) -> tuple[int, int]:
    """Count the ground-truth action argument values present in a context.

    A value is found when ``normalize_value(value)`` occurs in ``normalized_context``
    (:func:`context_text` with :func:`normalize_value`) as a whole-word sequence, i.e. a
    normalized substring on word boundaries: ``"0"`` is not found in ``"2024"`` (the
    loader selects values by the same whole-token rule). Values that normalize to the
    empty string are not scored.

    Returns:
        ``(found, scored)``.
    """
    found = scored = 0
    for value in values:
        needle = normalize_value(str(value))
        if not needle:
            continue
        scored += 1
        found += _occurs(needle, normalized_context)
    return found, scored


# ---------------------------------------------------------------------------------------
# Prefix stability and caching cost
# ---------------------------------------------------------------------------------------
def extends_previous(previous: Sequence[Message], current: Sequence[Message]) -> bool:
    """Whether ``previous`` is a prefix of ``current``, message by message (id + content).

    A context that only ever appends keeps the provider's prompt cache warm; one that
    rewrites or drops early messages invalidates it.
    """
    if len(previous) > len(current):
        return False
    return all(p == c for p, c in zip(previous, current, strict=False))


def common_prefix_tokens(
    previous: Sequence[Message], current: Sequence[Message], counter: MessageCounter
) -> int:
    """Tokens of the longest common prefix of two contexts, in whole messages.

    Messages are compared with ``==`` (id + content) from the start; the tokens of the
    equal leading messages are summed with ``counter.count_message``. The reply priming
    of ``count_messages`` is not part of a prefix.
    """
    tokens = 0
    for p, c in zip(previous, current, strict=False):
        if p != c:
            break
        tokens += counter.count_message(c)
    return tokens


@dataclass(frozen=True)
class PriceTable:
    """Input-token prices and prompt-cache rules used for the cost estimate.

    Presets (one per provider caching scheme) are in :data:`PRICE_TABLES`, each number
    with its source in ``source``; ``ctxmgr bench --prices NAME`` picks one. The defaults
    are the ``gpt-4o-mini`` preset (OpenAI automatic caching).

    Attributes:
        name: label printed in the report and the key in :data:`PRICE_TABLES`.
        input_per_mtok: USD per 1,000,000 uncached input tokens.
        cached_input_per_mtok: USD per 1,000,000 input tokens read from the cache.
        min_cached_prefix: tokens; a shorter prefix (or, for ``"breakpoint"``, a shorter
            prompt) is not cached.
        cache_increment: tokens; a cached prefix is rounded down to
            ``min_cached_prefix + k * cache_increment`` (1 = no rounding).
        cache_write_per_mtok: USD per 1,000,000 tokens written to the cache, or ``None``
            when writing costs nothing extra (the input price).
        prefix_rule: ``"common_prefix"`` (automatic/implicit caching: the longest prefix
            shared with the previous request is read) or ``"breakpoint"`` (explicit
            caching with one breakpoint at the end of every request: the previous
            request's whole prompt is read when this one extends it, within
            ``lookback_messages``; the rest of a cacheable prompt is written).
        lookback_messages: ``"breakpoint"`` only: at most this many messages may follow
            the previous request's prompt (the provider checks about 20 content blocks
            back from a breakpoint; counted here in messages), ``None`` for no limit.
        source: where the numbers come from (provider pages).
    """

    name: str = "gpt-4o-mini"
    input_per_mtok: float = 0.15
    cached_input_per_mtok: float = 0.075
    min_cached_prefix: int = 1024
    cache_increment: int = 128
    cache_write_per_mtok: float | None = None
    prefix_rule: Literal["common_prefix", "breakpoint"] = "common_prefix"
    lookback_messages: int | None = None
    source: str = (
        "https://openai.com/api/pricing/ ; https://platform.openai.com/docs/guides/prompt-caching"
    )


_ANTHROPIC = (
    "https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching (pricing: write "
    "1.25x, read 0.1x base; minimum cacheable prompt; ~20-block lookback) ; "
    "https://www.anthropic.com/pricing#api"
)
_GEMINI = (
    "https://ai.google.dev/gemini-api/docs/caching (implicit caching, minimum 2,048 "
    "tokens for 2.5 Flash/Pro, as of 2026-10) ; https://ai.google.dev/gemini-api/docs/pricing"
)

PRICE_TABLES: dict[str, PriceTable] = {
    table.name: table
    for table in (
        # OpenAI automatic caching: prefixes of >= 1,024 tokens, hits in 128-token
        # increments, cached input at half price for the gpt-4o(-mini) family, no write fee
        PriceTable(),
        PriceTable(name="gpt-4o", input_per_mtok=2.50, cached_input_per_mtok=1.25),
        # Anthropic explicit caching: write 1.25x base (5-minute TTL), read 0.1x base;
        # minimum cacheable prompt 1,024 tokens for Sonnet/Opus, 2,048 for Haiku 3.5
        PriceTable(
            name="claude-sonnet-4",
            input_per_mtok=3.00,
            cached_input_per_mtok=0.30,
            cache_write_per_mtok=3.75,
            min_cached_prefix=1024,
            cache_increment=1,
            prefix_rule="breakpoint",
            lookback_messages=20,
            source=_ANTHROPIC,
        ),
        PriceTable(
            name="claude-haiku-3.5",
            input_per_mtok=0.80,
            cached_input_per_mtok=0.08,
            cache_write_per_mtok=1.00,
            min_cached_prefix=2048,
            cache_increment=1,
            prefix_rule="breakpoint",
            lookback_messages=20,
            source=_ANTHROPIC,
        ),
        # Gemini implicit caching (2.5 and later): automatic prefix reuse, no write or
        # storage fee, cached input at 0.1x the input price, minimum 2,048 tokens
        PriceTable(
            name="gemini-2.5-flash",
            input_per_mtok=0.30,
            cached_input_per_mtok=0.03,
            min_cached_prefix=2048,
            cache_increment=1,
            source=_GEMINI,
        ),
    )
}
"""Price presets by name: OpenAI automatic, Anthropic explicit and Gemini implicit caching.

USD per million input tokens (text, standard tier, prompts under 200,000 tokens): the
list prices of the ``source`` pages when the table was written (the Gemini minimum from the
caching page revised 2026-10); providers change them, so check before relying on absolute
dollars. The ranking of configs by cost depends on the caching rules more than on the
prices.
"""

DEFAULT_PRICES = PRICE_TABLES["gpt-4o-mini"]


def get_prices(name: str) -> PriceTable:
    """Return the :data:`PRICE_TABLES` preset called ``name``.

    Raises:
        ConfigError: no such preset (the message lists the names).
    """
    from ctxmgr.errors import ConfigError

    table = PRICE_TABLES.get(name)
    if table is None:
        raise ConfigError(
            f"unknown price table {name!r}", key="--prices", allowed=tuple(PRICE_TABLES)
        )
    return table


def cached_prefix_tokens(common_prefix: int, prices: PriceTable = DEFAULT_PRICES) -> int:
    """Tokens billed at the cached price for a fit whose prefix matches the previous fit's.

    The ``"common_prefix"`` rule (OpenAI, Gemini). Model: the provider cached the previous
    request of the same session (no expiry, no eviction: calls of one transcript are
    assumed minutes apart at most), and a request reuses the longest common prefix with
    it, if that is at least ``prices.min_cached_prefix`` tokens, rounded down to the cache
    increment.

    Args:
        common_prefix: :func:`common_prefix_tokens` of the previous and current contexts.
        prices: cache rules.

    Returns:
        0 when ``common_prefix < min_cached_prefix``, else
        ``min_cached_prefix + floor((common_prefix - min_cached_prefix) / increment) *
        increment``.
    """
    if common_prefix < prices.min_cached_prefix:
        return 0
    step = max(1, prices.cache_increment)
    extra = (common_prefix - prices.min_cached_prefix) // step * step
    return prices.min_cached_prefix + extra


def cache_tokens(
    tokens: int,
    common_prefix: int,
    previous_tokens: int | None,
    extends: bool,
    added_messages: int,
    prices: PriceTable = DEFAULT_PRICES,
) -> tuple[int, int]:
    """``(read, written)``: input tokens of one request read from and written to the cache.

    The cache holds the previous request of the session only (see
    :func:`cached_prefix_tokens`). ``"common_prefix"``: ``read =
    cached_prefix_tokens(common_prefix)``, ``written = tokens - read`` (billed at the
    input price unless ``cache_write_per_mtok`` says otherwise). ``"breakpoint"``: the
    previous request wrote its whole prompt (if it was at least ``min_cached_prefix``
    tokens); this one reads it when it ``extends`` it by at most ``lookback_messages``
    messages, and writes the rest of its prompt when the prompt is cacheable.

    Args:
        tokens: this request's prompt tokens.
        common_prefix: tokens of the messages it shares, from the start, with the previous
            request.
        previous_tokens: the previous request's prompt tokens (``None``: no previous
            request in this session).
        extends: the previous request's messages are a prefix of this one's.
        added_messages: messages of this request after the previous request's.
        prices: the preset.
    """
    if prices.prefix_rule == "common_prefix":
        read = cached_prefix_tokens(common_prefix, prices) if previous_tokens is not None else 0
        return read, tokens - read
    read = 0
    if (
        previous_tokens is not None
        and extends
        and previous_tokens >= prices.min_cached_prefix
        and (prices.lookback_messages is None or added_messages <= prices.lookback_messages)
    ):
        read = previous_tokens
    written = tokens - read if tokens >= prices.min_cached_prefix else 0
    return read, written


def input_cost_usd(
    input_tokens: int,
    cached_tokens: int = 0,
    prices: PriceTable = DEFAULT_PRICES,
    written_tokens: int = 0,
) -> float:
    """Input cost in USD of requests totalling ``input_tokens``, ``cached_tokens`` read cached.

    ``((input_tokens - cached_tokens - written) * input_per_mtok + cached_tokens *
    cached_input_per_mtok + written * write_price) / 1e6`` where ``written`` is
    ``written_tokens`` when the preset has a ``cache_write_per_mtok`` (else those tokens
    are billed at the input price). Output tokens are not modelled (the replay sends no
    request).
    """
    write_price = prices.cache_write_per_mtok
    written = written_tokens if write_price is not None else 0
    uncached = input_tokens - cached_tokens - written
    cost = uncached * prices.input_per_mtok + cached_tokens * prices.cached_input_per_mtok
    if write_price is not None:
        cost += written * write_price
    return cost / 1e6


# ---------------------------------------------------------------------------------------
# Small statistics
# ---------------------------------------------------------------------------------------
def share(hits: int, total: int) -> float | None:
    """``hits / total``, or ``None`` (not applicable) when ``total == 0``."""
    return hits / total if total else None


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, or ``None`` for no values."""
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of values <= it.

    ``sorted(values)[ceil(q / 100 * n) - 1]`` (the minimum for ``q == 0``); ``None`` for
    no values. Always one of the observed values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def token_stats(tokens: Sequence[int]) -> tuple[float | None, float | None, float | None]:
    """``(mean, p95, max)`` of context sizes in tokens (``None`` each for no values).

    ``p95`` is the nearest-rank percentile (:func:`percentile`).
    """
    if not tokens:
        return None, None, None
    return mean(tokens), percentile(tokens, 95), max(tokens)
