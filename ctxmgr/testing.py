"""Helpers for testing code that uses ctxmgr: transcript builders, checkers, fakes.

Everything here is deterministic (seeded) and offline.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from ctxmgr.messages import Message, ToolCall

__all__ = [
    "RecordingSummarizer",
    "agent_history",
    "check_tool_pairs",
    "chat_history",
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
