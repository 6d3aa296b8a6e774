"""``tool_pair_safe``: repair or reject broken tool pairs; clear old tool results before dropping.

Pairs themselves are never split by any strategy (segments are atomic, see
:mod:`ctxmgr.segments`); this strategy sets the repair policy, protects the current tool
loop, and shrinks before anything is dropped:

1. old tool results (outside the newest ``keep_recent_tool_results`` exchanges, not of
   an ``exclude_tools`` tool) are *cleared* to a placeholder naming the tool, its
   arguments, the tokens freed and the archive id to read it back with ``get_message``
   — Anthropic's "tool result clearing" context-editing practice, which keeps the
   call/result structure valid while freeing most of the tokens. With
   ``clear_at_least`` the clearing happens in one batch of at least that many tokens
   or not at all; with ``clear_tool_inputs`` the cleared calls' arguments go too;
2. a single tool result larger than ``max_tool_result_tokens`` is truncated, keeping its
   head and tail, even in the current step;
3. if pinned content alone (system prompt, task, current tool loop) still exceeds the
   effective limit, the tool results of the pinned tool exchanges are truncated just
   enough to fit (``truncate_to_fit``), each cut in proportion to its size and never below
   ``min_truncated_tokens``, since a truncated result beats a request that cannot be
   sent. A result truncated at one fit is truncated again from its original at a later
   one if the room shrank.

Pinned means verbatim: a message marked ``pinned=True`` is never cleared or truncated
unless ``truncate_pinned_tool_results`` is on (off by default; each use is reported in
``FitReport.cleared`` with a reason naming the option); pinned content that cannot fit
raises ContextOverflowError.

The originals are archived by the manager; nothing is lost.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["ToolPairSafe"]

CLEARED = "ctxmgr:cleared_tool_result"


class ToolPairSafeOptions(StrategyOptions):
    """Options of :class:`ToolPairSafe`.

    Attributes:
        policy: ``"repair"`` or ``"strict"`` for malformed histories (overrides the
            top-level ``history_policy``), or ``None`` to keep it.
        clear_tool_results: clear old tool results before dropping anything.
        keep_recent_tool_results: newest tool exchanges whose results are never cleared.
        live_tool_steps: newest tool exchanges after the latest user message that are
            pinned (the current tool loop).
        min_clear_tokens: only clear results larger than this.
        clear_at_least: clear at least this many tokens in one compaction, or clear
            nothing (each clearing changes the prompt prefix and costs a prompt-cache
            miss; Anthropic context editing's ``clear_at_least``,
            https://docs.claude.com/en/docs/build-with-claude/context-editing).
        exclude_tools: tool name globs whose results are never cleared.
        clear_tool_inputs: also replace the arguments of cleared calls by a short marker
            (Anthropic's ``clear_tool_inputs``); the originals are archived. A pinned call
            message keeps its arguments.
        clear_reasoning: at a compaction that must free room, drop the reasoning parts
            (thinking, redacted thinking, reasoning items) of messages before the latest
            user message; the current tool loop keeps its reasoning, which Anthropic
            requires with tool use (Anthropic's ``clear_thinking``). Originals archived;
            pinned messages keep theirs.
        max_tool_result_tokens: truncate any single tool result above this (None: never).
        truncate_to_fit: when pinned content (system prompt, current tool loop) alone
            exceeds the effective limit, truncate the pinned tool exchanges' results in
            proportion to their sizes (head and tail kept, original archived) instead of
            failing with ContextOverflowError.
        truncate_pinned_tool_results: also truncate tool results marked ``pinned=True``
            (by ``truncate_to_fit`` and ``max_tool_result_tokens``); off by default, so a
            pinned result is sent verbatim or the fit raises ContextOverflowError.
        min_truncated_tokens: never truncate a tool result below this.
    """

    policy: Literal["repair", "strict"] | None = None
    clear_tool_results: bool = True
    keep_recent_tool_results: int = Field(default=3, ge=0)
    live_tool_steps: int = Field(default=1, ge=0)
    min_clear_tokens: int = Field(default=60, ge=0)
    clear_at_least: int = Field(default=0, ge=0)
    exclude_tools: list[str] = Field(default_factory=list)
    clear_tool_inputs: bool = False
    clear_reasoning: bool = False
    max_tool_result_tokens: int | None = Field(default=None, gt=0)
    truncate_to_fit: bool = True
    truncate_pinned_tool_results: bool = False
    min_truncated_tokens: int = Field(default=64, gt=0)


def _placeholder(result: Message, call_desc: str, tokens: int) -> Message:
    original = str(result.metadata.get("original_id") or result.id)  # an offload preview's
    text = (
        f"[ctxmgr: cleared result of {call_desc}; {tokens} tokens freed. "
        f'Archived: get_message("{original}")]'
    )
    meta = dict(result.metadata)
    meta.update({"ctxmgr": "cleared_tool_result", "original_id": original})
    return Message.tool(
        text, result.tool_call_id or "", name=result.name, metadata=meta, pinned=result.pinned
    )


def _without_reasoning(message: Message) -> Message:
    if not message.reasoning or isinstance(message.content, str) or message.pinned:
        return message  # pinned means verbatim
    parts = tuple(p for p in message.content if not p.is_reasoning)
    meta = dict(message.metadata)
    original = str(message.metadata.get("original_id") or message.id)
    meta.update({"ctxmgr": "cleared_reasoning", "original_id": original})
    return message.evolve(content=parts or "", metadata=meta)


def _truncate(result: Message, keep_tokens: int, counter: Any) -> Message:
    """Keep the head and tail of a tool result so the message is at most ~``keep_tokens``.

    The cut point is estimated from the text's characters per token and tightened until
    the message fits (at most four passes).
    """
    text = result.text
    total = counter.count_message(result)
    if total <= keep_tokens:
        return result
    meta = dict(result.metadata)
    meta.update(
        {"ctxmgr": "truncated_tool_result", "original_id": meta.get("original_id", result.id)}
    )
    ratio = len(text) / max(1, counter.count_text(text))
    budget = keep_tokens - 40  # marker and message overhead
    out = result
    for _ in range(4):
        half = max(0, int(max(0, budget) * ratio / 2))
        marker = f"\n[ctxmgr: {total - keep_tokens} tokens truncated; original archived]\n"
        body = f"{text[:half]}{marker}{text[-half:] if half else ''}"
        out = Message.tool(
            body, result.tool_call_id or "", name=result.name, metadata=meta, pinned=result.pinned
        )
        excess = counter.count_message(out) - keep_tokens
        if excess <= 0:
            break
        budget -= excess + 8
    return out


class ToolPairSafe(Strategy):
    """Keeps tool calls and results valid and shrinks old results before anything is dropped."""

    name = "tool_pair_safe"
    summary = "repairs/rejects broken tool pairs; clears old tool results before dropping pairs"
    Options = ToolPairSafeOptions
    options: ToolPairSafeOptions

    @hookimpl
    def ctxmgr_pin(self, window: Window) -> Mapping[int, str] | None:
        """Pin the newest ``live_tool_steps`` tool exchanges after the latest user message."""
        pins: dict[int, str] = {}
        remaining = self.options.live_tool_steps
        for i in range(len(window.segments) - 1, -1, -1):
            if remaining <= 0:
                break
            seg = window.segments[i]
            if seg.role == "user":
                break
            if seg.is_tool_exchange:
                pins[i] = "current tool loop"
                remaining -= 1
        return pins

    @hookimpl
    def ctxmgr_shrink(self, window: Window, excess_tokens: int) -> None:
        """Clear old tool results oldest first, then truncate oversized ones."""
        opts = self.options
        need = excess_tokens
        if opts.clear_reasoning:
            need -= self._clear_reasoning(window)
        exchanges = [i for i, s in enumerate(window.segments) if s.is_tool_exchange]
        recent = set(exchanges[max(0, len(exchanges) - opts.keep_recent_tool_results) :])
        if opts.keep_recent_tool_results == 0:
            recent = set()
        if opts.clear_tool_results:
            batch: list[tuple[int, list[Message]]] = []
            freed = 0
            for i in exchanges:
                if need - freed <= 0 and freed >= opts.clear_at_least:
                    break
                if i in recent or i in window.pinned:
                    continue
                new = self._cleared(window, i)
                if new is not None:
                    batch.append((i, new))
                    freed += window.segments[i].tokens - window.measure(new)
            if freed >= opts.clear_at_least:  # one batch worth its cache miss, or nothing
                for i, new in batch:
                    need -= window.replace(i, new, "old tool result cleared", self.name)
        if opts.max_tool_result_tokens is not None:
            cap = opts.max_tool_result_tokens
            for i in exchanges:
                seg = window.segments[i]
                over = [
                    j
                    for j, m in enumerate(seg.messages)
                    if self._truncatable(m) and window.counter.count_message(m) > cap
                ]
                if over:
                    new = list(seg.messages)
                    for j in over:
                        new[j] = _truncate(new[j], cap, window.counter)
                    need -= window.replace(
                        i,
                        new,
                        self._reason(new, over, "truncated oversized tool result"),
                        self.name,
                    )
        if opts.truncate_to_fit:
            self._truncate_pinned(window)

    def _truncatable(self, msg: Message) -> bool:
        """A real tool result (or an earlier truncation of one) this strategy may truncate."""
        if msg.role != "tool" or (msg.pinned and not self.options.truncate_pinned_tool_results):
            return False
        return msg.metadata.get("ctxmgr") in (None, "truncated_tool_result")

    @staticmethod
    def _reason(messages: Sequence[Message], changed: Iterable[int], reason: str) -> str:
        if any(messages[j].pinned for j in changed):
            return reason + " (pinned=True message truncated: truncate_pinned_tool_results)"
        return reason

    @staticmethod
    def _original(window: Window, i: int, j: int, msg: Message) -> Message:
        """The tool result as given, when ``msg`` is an earlier fit's truncation of it."""
        if msg.metadata.get("ctxmgr") != "truncated_tool_result":
            return msg
        if window.positions and window.history:
            original = window.history[window.positions[i]].messages[j]
            if original.id == msg.metadata.get("original_id"):
                return original
        return msg

    def _truncate_pinned(self, window: Window) -> None:
        """Truncate the pinned tool exchanges' results, fairly, until pinned content fits.

        Water-filling: every eligible result keeps the same fraction of its size, except
        that none goes below ``min_truncated_tokens`` (the rest is taken from the larger
        ones). Results truncated at an earlier fit are re-cut from their originals.
        """
        limit = window.budget.effective_limit - window.reserved
        floor = self.options.min_truncated_tokens
        for _ in range(3):  # truncation lands within a few tokens of its target: re-balance
            over = sum(window.segments[i].tokens for i in window.pinned) - limit
            if over <= 0:
                return
            items = []  # (tokens now, tokens of the original, candidate index, message index)
            for i in sorted(window.pinned):
                seg = window.segments[i]
                if not seg.is_tool_exchange:
                    continue
                for j, msg in enumerate(seg.messages):
                    if self._truncatable(msg):
                        source = self._original(window, i, j, msg)
                        count = window.counter.count_message
                        items.append((count(msg), count(source), i, j))
            # shares are planned on the originals, so a result cut at an earlier fit and a
            # fresh one are treated alike (and an earlier cut can be cut again)
            room = sum(t for t, _, _, _ in items) - over
            originals = [o for _, o, _, _ in items]
            keeps = _fair_keep(originals, sum(originals) - room, floor)
            changes: dict[int, dict[int, Message]] = {}
            for (tokens, original, i, j), keep in zip(items, keeps):
                if keep >= original:
                    continue
                source = self._original(window, i, j, window.segments[i].messages[j])
                cut = _truncate(source, keep, window.counter)
                if window.counter.count_message(cut) < tokens:
                    changes.setdefault(i, {})[j] = cut
            if not changes:
                return
            for i, cuts in changes.items():
                messages = list(window.segments[i].messages)
                for j, cut in cuts.items():
                    messages[j] = cut
                window.replace(
                    i,
                    messages,
                    self._reason(messages, cuts, "truncated to fit the effective limit"),
                    self.name,
                )

    def _clear_reasoning(self, window: Window) -> int:
        """Drop reasoning parts before the latest user message; return the tokens freed."""
        users = [i for i, seg in enumerate(window.segments) if seg.role == "user"]
        freed = 0
        for i in range(users[-1] if users else 0):
            seg = window.segments[i]
            if any(m.reasoning and not m.pinned for m in seg.messages):
                new = [_without_reasoning(m) for m in seg.messages]
                freed += window.replace(i, new, "old reasoning cleared", self.name)
        return freed

    def _cleared(self, window: Window, index: int) -> list[Message] | None:
        """The cleared form of segment ``index``, or ``None`` when nothing is clearable."""
        opts = self.options
        seg = window.segments[index]
        calls = {c.id: c for c in seg.head.tool_calls}
        new: list[Message] = [seg.head]
        cleared_ids: set[str] = set()
        for msg in seg.messages[1:]:
            tokens = window.counter.count_message(msg)
            call = calls.get(msg.tool_call_id or "")
            tool = call.name if call else msg.name or "tool"
            if (
                msg.metadata.get("ctxmgr")
                not in (None, "truncated_tool_result", "offloaded_tool_result")
                or msg.pinned
                or tokens < opts.min_clear_tokens
                or any(fnmatch.fnmatchcase(tool, pat) for pat in opts.exclude_tools)
            ):
                new.append(msg)
                continue
            args = call.arguments if call and not opts.clear_tool_inputs else "..."
            if len(args) > 120:
                args = args[:117] + "..."
            new.append(_placeholder(msg, f"{tool}({args})", tokens))
            cleared_ids.add(msg.tool_call_id or "")
        if not cleared_ids:
            return None
        if opts.clear_tool_inputs and not seg.head.pinned:  # pinned means verbatim
            original = str(seg.head.metadata.get("original_id") or seg.head.id)
            marker = json.dumps({"ctxmgr": f"arguments cleared; get_message({original!r})"})
            head_calls = [
                replace(c, arguments=marker) if c.id in cleared_ids else c
                for c in seg.head.tool_calls
            ]
            meta = dict(seg.head.metadata)
            meta.update({"ctxmgr": "cleared_tool_inputs", "original_id": original})
            new[0] = seg.head.evolve(tool_calls=tuple(head_calls), metadata=meta)
        return new


def _fair_keep(sizes: Sequence[int], cut: int, floor: int) -> list[int]:
    """Token sizes to keep so that ``cut`` tokens are freed, shared in proportion to size.

    Each item keeps ``max(min(floor, size), ratio * size)`` with the largest ``ratio`` that
    frees at least ``cut`` tokens (found by bisection); items smaller than ``floor`` keep
    their size. If even the floors cannot free ``cut``, every item goes to its floor.
    """

    def keeps(ratio: float) -> list[int]:
        return [max(min(floor, s), int(ratio * s)) for s in sizes]

    if sum(sizes) - sum(keeps(0.0)) <= cut:
        return keeps(0.0)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if sum(sizes) - sum(keeps(mid)) >= cut:
            lo = mid
        else:
            hi = mid
    return keeps(lo)


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`ToolPairSafe`."""
    register(ToolPairSafe)
