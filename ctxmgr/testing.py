"""Helpers for testing code that uses ctxmgr: transcript builders, checkers, fakes.

Everything here is deterministic (seeded) and offline.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import ContentPart, Message, ToolCall

__all__ = [
    "FaultInjector",
    "RecordingSummarizer",
    "agent_history",
    "bm25_agent_config",
    "check_tool_pairs",
    "chat_history",
    "histories",
]


def bm25_agent_config(**overrides: Any) -> dict[str, Any]:
    """The ``agent`` preset as a config dict, with BM25-only relevance (no WordLlama).

    For tests of adapters and stores: the embeddings cost about a second per fit on a
    loaded 2-core machine, and what such tests check does not depend on the scorer.

    Args:
        overrides: top-level config keys (``max_context_tokens=3000``...).

    Returns:
        A dict for :meth:`ctxmgr.ContextManager.from_config` (a new one on each call).
    """
    from ctxmgr.config import load_config

    config = load_config("agent", **overrides).model_dump(exclude_none=True)
    for entry in config["strategies"]:
        if entry["name"] == "relevance":
            entry["semantic"] = False
    return config


_WORDS = [
    "flight",
    "booking",
    "reservation",
    "passenger",
    "baggage",
    "refund",
    "invoice",
    "cabin",
    "economy",
    "business",
    "airport",
    "delay",
    "seat",
    "upgrade",
    "payment",
    "certificate",
    "card",
    "policy",
    "customer",
    "agent",
    "database",
    "record",
    "query",
    "result",
    "error",
    "retry",
    "file",
    "line",
    "function",
    "module",
    "test",
    "patch",
    "commit",
    "branch",
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def chat_history(n_turns: int, *, seed: int = 0, system: str = "You are helpful.") -> list[Message]:
    """A plain chat: a system prompt then ``n_turns`` user/assistant pairs (oldest first)."""
    rng = random.Random(seed)
    out = [Message.system(system)]
    for t in range(n_turns):
        out.append(Message.user(f"Question {t}: {_sentence(rng, 12)}"))
        out.append(Message.assistant(f"Answer {t}: {_sentence(rng, 20)}"))
    return out


def agent_history(
    n_messages: int,
    *,
    seed: int = 0,
    parallel: int = 2,
    result_words: int = 60,
    user_every: int = 25,
    system: str = "You are a careful agent. Use tools; never guess ids.",
) -> list[Message]:
    """A tool-using agent history of about ``n_messages`` messages (oldest first).

    A system prompt and a task, then steps of: an assistant message with 1 to
    ``parallel`` tool calls followed by their results (``result_words`` words each, one in
    ten ten times larger), an assistant text every few steps, and a new user message
    every ``user_every`` messages. Always well formed.
    """
    rng = random.Random(seed)
    out = [Message.system(system), Message.user("Task: " + _sentence(rng, 25))]
    step = 0
    while len(out) < n_messages:
        step += 1
        k = rng.randint(1, parallel)
        calls = tuple(
            ToolCall(
                f"call_{step}_{j}",
                rng.choice(("search", "read_file", "run_tests")),
                json.dumps({"q": _sentence(rng, 4), "n": rng.randint(1, 99)}),
            )
            for j in range(k)
        )
        out.append(Message.assistant("", calls))
        for call in calls:
            words = result_words * (10 if rng.random() < 0.1 else 1)
            out.append(Message.tool(_sentence(rng, words), call.id, name=call.name))
        if step % 4 == 0:
            out.append(Message.assistant(_sentence(rng, 15)))
        if user_every and len(out) % user_every < k + 2:
            out.append(Message.user(_sentence(rng, 10)))
    return out


def check_tool_pairs(messages: Sequence[Message]) -> list[str]:
    """Return the tool-pair problems of a context as provider APIs see them (empty: valid).

    Every tool result must answer a call of the nearest preceding assistant tool-call
    message, and every call must be answered before the next non-tool message.
    """
    problems = []
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        if m.role == "tool":
            if m.tool_call_id not in open_ids:
                problems.append(f"message {i}: tool result {m.tool_call_id!r} without its call")
            else:
                open_ids.discard(m.tool_call_id)
            continue
        if open_ids:
            problems.append(f"message {i}: calls {sorted(open_ids)} without results")
            open_ids = set()
        if m.role == "assistant" and m.tool_calls:
            open_ids = {c.id for c in m.tool_calls}
    if open_ids:
        problems.append(f"end: calls {sorted(open_ids)} without results")
    return problems


class RecordingSummarizer:
    """A summarizer that records its calls; optionally fails, to test the fallback.

    Args:
        fail: raise ``RuntimeError`` on every call.
    """

    def __init__(self, *, fail: bool = False):
        self.fail = fail
        self.calls: list[tuple[str | None, list[Message]]] = []

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Record the call and return ``previous`` plus one line per message."""
        self.calls.append((previous, list(messages)))
        if self.fail:
            raise RuntimeError("summarizer is down")
        lines = [previous] if previous else []
        lines += [f"- {m.role}: {m.text[:40]}" for m in messages if m.text]
        return "\n".join(lines)


class FaultInjector:
    """A plugin for every per-fit hook that raises ``RuntimeError`` in the armed one.

    Install it in a manager (:meth:`install`), set :attr:`armed` to a hook name from
    :attr:`HOOKS` and the next call of that hook fails; a fit is then expected to raise
    :class:`~ctxmgr.errors.StrategyError` and leave the manager unchanged. Unarmed, it
    does nothing (returns ``None`` everywhere, weight 0).

    Attributes:
        armed: the hook to fail (without the ``ctxmgr_`` prefix), or ``None``.
        fired: hooks that did fail.
    """

    HOOKS = (
        "observe",
        "wants_compaction",
        "append",
        "recall",
        "pin",
        "reserve",
        "shrink",
        "score",
        "compact",
        "inject",
    )
    name = "fault"
    weight = 0.0

    def __init__(self) -> None:
        self.armed: str | None = None
        self.fired: set[str] = set()

    def install(self, manager: Any) -> None:
        """Register into ``manager``'s plugin manager (after its strategies)."""
        manager._pm.register(self, name="fault")

    def _maybe(self, hook: str) -> None:
        if self.armed == hook:
            self.fired.add(hook)
            raise RuntimeError(f"injected failure in {hook}")

    @hookimpl
    def ctxmgr_observe(self, window: Any, new_segments: Any) -> None:
        """Fail when armed."""
        self._maybe("observe")

    @hookimpl
    def ctxmgr_wants_compaction(self, window: Any, new_segments: Any) -> None:
        """Fail when armed."""
        self._maybe("wants_compaction")

    @hookimpl
    def ctxmgr_append(self, window: Any) -> None:
        """Fail when armed."""
        self._maybe("append")

    @hookimpl
    def ctxmgr_recall(self, window: Any, history: Any, candidates: Any) -> None:
        """Fail when armed."""
        self._maybe("recall")

    @hookimpl
    def ctxmgr_pin(self, window: Any) -> None:
        """Fail when armed."""
        self._maybe("pin")

    @hookimpl
    def ctxmgr_reserve(self, window: Any) -> None:
        """Fail when armed."""
        self._maybe("reserve")

    @hookimpl
    def ctxmgr_shrink(self, window: Any, excess_tokens: int) -> None:
        """Fail when armed."""
        self._maybe("shrink")

    @hookimpl
    def ctxmgr_score(self, window: Any) -> None:
        """Fail when armed."""
        self._maybe("score")

    @hookimpl
    def ctxmgr_compact(self, window: Any, evicted: Any, use_async: bool) -> None:
        """Fail when armed."""
        self._maybe("compact")

    @hookimpl
    def ctxmgr_inject(self, window: Any) -> None:
        """Fail when armed."""
        self._maybe("inject")


def histories(
    *,
    max_steps: int = 30,
    malformed: bool = True,
    huge_results: bool = True,
    with_system: bool | None = None,
    pinned_results: bool = True,
    reasoning: bool = False,
) -> Any:
    """A Hypothesis strategy generating message histories (oldest first).

    Histories mix user and assistant text, assistant messages with 1-3 parallel tool
    calls and their results, huge tool results, pinned messages and, when
    ``malformed``, orphan tool results, duplicate results, duplicate call ids inside one
    assistant message, dangling calls (also at the very end: a tool step still open)
    and a tool message first. Requires ``hypothesis`` (the ``dev`` extra).

    Args:
        max_steps: maximum number of generation steps (each adds 1-4 messages).
        malformed: include broken tool pairs.
        huge_results: include tool results of several thousand tokens.
        with_system: force a leading system prompt (True), none (False), or either.
        pinned_results: include ``pinned=True`` tool results, some of them huge (larger
            than small context windows: such a history must raise ContextOverflowError).
        reasoning: give assistant messages reasoning parts (Anthropic ``thinking`` with a
            signature, ``redacted_thinking``, LangChain/OpenAI ``reasoning``) before their
            text.
    """
    from hypothesis import strategies as st

    text = st.text(
        alphabet=st.sampled_from("abcdefghij klmnop qrstuv wxyz 0123456789 .,"),
        min_size=1,
        max_size=120,
    )
    step_kinds = ["user", "assistant", "tools", "tools", "pinned"]
    if huge_results:
        step_kinds.append("huge")
    if pinned_results:
        step_kinds.append("pinned_result")
    if malformed:
        step_kinds += ["orphan", "dangling", "duplicate", "dup_ids"]

    reasoning_parts = st.sampled_from(
        [
            lambda t: ContentPart("thinking", data={"thinking": t, "signature": "c2ln" * 8}),
            lambda t: ContentPart("redacted_thinking", data={"data": "ZW5j" * 12}),
            lambda t: ContentPart("reasoning", data={"reasoning": t, "id": "rs_1"}),
        ]
    )

    def assistant(draw: Any, body: str, calls: Sequence[ToolCall] = ()) -> Message:
        if not reasoning or not draw(st.booleans()):
            return Message.assistant(body, calls)
        parts = [draw(reasoning_parts)(draw(text))]
        if body:
            parts.append(ContentPart("text", body))
        return Message("assistant", tuple(parts), tool_calls=tuple(calls))

    @st.composite
    def build(draw: Any) -> list[Message]:
        out: list[Message] = []
        system = draw(st.booleans()) if with_system is None else with_system
        if malformed and not system and draw(st.booleans()):
            out.append(Message.tool("stray result", "call_stray"))
        if system:
            out.append(Message.system("SYSTEM: " + draw(text)))
        out.append(Message.user("TASK: " + draw(text)))
        n_steps = draw(st.integers(min_value=0, max_value=max_steps))
        for step in range(n_steps):
            kind = draw(st.sampled_from(step_kinds))
            if kind == "user":
                out.append(Message.user(draw(text)))
            elif kind == "assistant":
                out.append(assistant(draw, draw(text)))
            elif kind == "pinned":
                out.append(Message.user("PINNED " + draw(text), pinned=True))
            elif kind in ("tools", "huge", "dangling", "duplicate", "dup_ids", "pinned_result"):
                k = draw(st.integers(min_value=1, max_value=3))
                calls = [
                    ToolCall(f"c{step}_{j}", draw(st.sampled_from(["search", "read"])), "{}")
                    for j in range(k)
                ]
                if kind == "dup_ids":  # the same call id twice in one assistant message
                    calls.append(ToolCall(calls[0].id, "again", '{"dup": true}'))
                out.append(assistant(draw, draw(text) if step % 3 == 0 else "", calls))
                answered = calls[:-1] if kind == "dangling" else calls[:k]
                for j, call in enumerate(answered):
                    body = draw(text)
                    pinned = kind == "pinned_result" and j == 0
                    if kind == "huge" or (pinned and draw(st.booleans())):
                        body = (body + " ") * 200
                    out.append(Message.tool(body, call.id, name=call.name, pinned=pinned))
                if kind == "duplicate":
                    out.append(Message.tool("again " + draw(text), calls[0].id))
            elif kind == "orphan":
                out.append(Message.tool("orphan " + draw(text), f"nope{step}"))
        tail = draw(st.sampled_from(["user", "none", "open"] if malformed else ["user", "none"]))
        if tail == "user" and out[-1].role != "user":
            out.append(Message.user("LAST: " + draw(text)))
        elif tail == "open":  # a tool step still waiting for (some of) its results
            calls = [ToolCall(f"open_{j}", "search", "{}") for j in range(2)]
            out.append(Message.assistant("", calls))
            if draw(st.booleans()):
                out.append(Message.tool("first result " + draw(text), calls[0].id))
        return out

    return build()
