"""Helpers for testing code that uses ctxmgr: transcript builders, checkers, fakes.

Everything here is deterministic (seeded) and offline.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ctxmgr.messages import ContentPart, Message, ToolCall

__all__ = [
    "RecordingSummarizer",
    "agent_history",
    "check_tool_pairs",
    "chat_history",
    "histories",
]

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


def histories(
    *,
    max_steps: int = 30,
    malformed: bool = True,
    huge_results: bool = True,
    with_system: bool | None = None,
    reasoning: bool = False,
) -> Any:
    """A Hypothesis strategy generating message histories (oldest first).

    Histories mix user and assistant text, assistant messages with 1-3 parallel tool
    calls and their results, huge tool results, pinned messages and, when
    ``malformed``, orphan tool results, duplicate results, dangling calls and a tool
    message first. Requires ``hypothesis`` (the ``dev`` extra).

    Args:
        max_steps: maximum number of generation steps (each adds 1-4 messages).
        malformed: include broken tool pairs.
        huge_results: include tool results of several thousand tokens.
        with_system: force a leading system prompt (True), none (False), or either.
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
    if malformed:
        step_kinds += ["orphan", "dangling", "duplicate"]

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
            elif kind in ("tools", "huge", "dangling", "duplicate"):
                k = draw(st.integers(min_value=1, max_value=3))
                calls = [
                    ToolCall(f"c{step}_{j}", draw(st.sampled_from(["search", "read"])), "{}")
                    for j in range(k)
                ]
                out.append(assistant(draw, draw(text) if step % 3 == 0 else "", calls))
                answered = calls[:-1] if kind == "dangling" else calls
                for call in answered:
                    body = draw(text)
                    if kind == "huge":
                        body = (body + " ") * 200
                    out.append(Message.tool(body, call.id, name=call.name))
                if kind == "duplicate":
                    out.append(Message.tool("again " + draw(text), calls[0].id))
            elif kind == "orphan":
                out.append(Message.tool("orphan " + draw(text), f"nope{step}"))
        if out[-1].role != "user" and draw(st.booleans()):
            out.append(Message.user("LAST: " + draw(text)))
        return out

    return build()
