"""Reasoning content (issue #10): held without loss by every converter, counted, clearable.

Anthropic ``thinking`` / ``redacted_thinking`` blocks carry signatures the provider checks
when they are sent back, so a converter that changes one byte breaks the next request.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ctxmgr import (
    ContentPart,
    ContextManager,
    Message,
    ToolCall,
    get_counter,
    messages_from_openai,
    messages_to_openai,
)
from ctxmgr.state import message_from_dict, message_to_dict
from ctxmgr.testing import check_tool_pairs

COUNTER = get_counter()
THINKING = {
    "type": "thinking",
    "thinking": "The user wants X; check the file.",
    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h==",
}
REDACTED = {
    "type": "redacted_thinking",
    "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
}
REASONING = {
    "type": "reasoning",
    "reasoning": "Plan: read then patch.",
    "id": "rs_68f0",
    "extras": {"signature": "s1"},
}
RESPONSES_ITEM = {
    "type": "reasoning",
    "id": "rs_0a1b",
    "summary": [{"type": "summary_text", "text": "Compared both fixes; the second is safer."}],
    "encrypted_content": "gAAAAABo" + "x" * 120,
}
BLOCKS: list[dict[str, Any]] = [
    THINKING,
    REDACTED,
    REASONING,
    RESPONSES_ITEM,
    {"type": "text", "text": "Reading it."},
]


def test_openai_dicts_round_trip_byte_for_byte() -> None:
    """Reasoning parts and ``reasoning_content`` survive OpenAI dicts and session state."""
    items = [
        {"role": "user", "content": "fix it"},
        {
            "role": "assistant",
            "content": BLOCKS,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "ok", "tool_call_id": "c1"},
        {"role": "assistant", "content": "done", "reasoning_content": "it was easy"},
    ]
    messages = messages_from_openai(items)
    assert json.dumps(messages_to_openai(messages)) == json.dumps(items)
    kinds = [p.type for p in messages[1].reasoning]
    assert kinds == ["thinking", "redacted_thinking", "reasoning", "reasoning"]
    restored = [message_from_dict(json.loads(json.dumps(message_to_dict(m)))) for m in messages]
    assert json.dumps(messages_to_openai(restored)) == json.dumps(items)
    assert [m.fingerprint for m in restored] == [m.fingerprint for m in messages]


def test_langchain_round_trip_byte_for_byte() -> None:
    """AIMessage content blocks (Anthropic and v1 reasoning) and reasoning_content survive."""
    pytest.importorskip("langchain_core")
    from ctxmgr.adapters.langchain import from_message, to_message
    from langchain_core.messages import AIMessage

    original = AIMessage(
        content=BLOCKS,
        tool_calls=[{"name": "read", "args": {"path": "a.py"}, "id": "c1"}],
        additional_kwargs={"reasoning_content": "deep thoughts"},
    )
    neutral = to_message(original)
    assert len(neutral.reasoning) == 4
    back = from_message(neutral)
    assert json.dumps(back.content) == json.dumps(BLOCKS)
    assert back.additional_kwargs == original.additional_kwargs
    assert back.tool_calls == original.tool_calls


def test_llamaindex_round_trip_byte_for_byte() -> None:
    """ThinkingBlock (content, signature in additional_information) survives."""
    pytest.importorskip("llama_index.core")
    from ctxmgr.adapters.llamaindex import from_message, to_message
    from llama_index.core.base.llms.types import ChatMessage, TextBlock, ThinkingBlock

    original = ChatMessage(
        role="assistant",
        blocks=[
            ThinkingBlock(content="think hard", additional_information={"signature": "sig=="}),
            TextBlock(text="answer"),
        ],
    )
    neutral = to_message(original)
    assert [p.type for p in neutral.reasoning] == ["thinking"]
    back = from_message(neutral)
    assert back.model_dump_json() == original.model_dump_json()


def test_autogen_round_trip_byte_for_byte() -> None:
    """AssistantMessage.thought (the model's reasoning) survives."""
    pytest.importorskip("autogen_core")
    from autogen_core import FunctionCall
    from autogen_core.models import AssistantMessage
    from ctxmgr.adapters.autogen import from_messages, to_messages

    original = AssistantMessage(
        content=[FunctionCall(id="c1", arguments="{}", name="read")],
        thought="I should read the file first.",
        source="agent",
    )
    (back,) = from_messages(to_messages([original]), source="agent")[:1]
    assert back.model_dump_json() == original.model_dump_json()


def test_reasoning_is_counted() -> None:
    """Readable reasoning is tokenized; signatures and encrypted data are estimated."""
    plain = Message.assistant("Reading it.")
    with_thinking = Message(
        "assistant",
        tuple(messages_from_openai([{"role": "assistant", "content": BLOCKS}])[0].content),
    )
    extra = COUNTER.count_message(with_thinking) - COUNTER.count_message(plain)
    readable = sum(
        COUNTER.count_text(t)
        for t in (
            THINKING["thinking"],
            REASONING["reasoning"],
            RESPONSES_ITEM["summary"][0]["text"],
        )
    )
    opaque = (
        len(THINKING["signature"])
        + len(REDACTED["data"])
        + len(RESPONSES_ITEM["encrypted_content"])
    ) // 4
    assert extra >= readable + opaque - 4


def test_clear_reasoning_keeps_the_current_tool_loop() -> None:
    """clear_reasoning drops reasoning before the latest user message, archived; not after."""

    def thinking(t: str) -> ContentPart:
        return ContentPart("thinking", data={"thinking": t, "signature": "sig" * 20})

    mgr = ContextManager.from_config(
        {
            "max_context_tokens": 1000,
            "reserve_output_tokens": 100,
            "strategies": [
                {"name": "tool_pair_safe", "clear_reasoning": True, "clear_tool_results": False},
                {"name": "pin_and_slide"},
            ],
        },
        counter=COUNTER,
    )
    history = [Message.system("agent"), Message.user("task")]
    for i in range(6):
        call = ToolCall(f"c{i}", "read", "{}")
        history.append(Message("assistant", (thinking(f"old step {i} " * 30),), tool_calls=(call,)))
        history.append(Message.tool(f"result {i}", call.id))
    history.append(Message.user("continue"))
    call = ToolCall("cur", "read", "{}")
    current = Message("assistant", (thinking("current step"),), tool_calls=(call,))
    history += [current, Message.tool("fresh", "cur")]
    assert COUNTER.count_messages(history) > 900  # over the trigger: a compaction
    out, report = mgr.fit(history)
    assert report.compacted and check_tool_pairs(out) == []
    assert current in out
    old = [m for m in out if m.role == "assistant" and m is not current]
    assert old and all(m.reasoning == () for m in old)
    assert all(m.metadata["ctxmgr"] == "cleared_reasoning" for m in old)
    assert all(mgr.state.archive.get(m.metadata["original_id"]).reasoning for m in old)  # type: ignore[union-attr]


def test_cleared_reasoning_and_inputs_still_name_the_archived_original() -> None:
    """A call message losing its reasoning and then its arguments names the true original."""
    mgr = ContextManager.from_config(
        {
            "max_context_tokens": 1500,
            "reserve_output_tokens": 100,
            "strategies": [
                {
                    "name": "tool_pair_safe",
                    "clear_reasoning": True,
                    "clear_tool_inputs": True,
                    "keep_recent_tool_results": 1,
                },
                {"name": "pin_and_slide"},
            ],
        },
        counter=COUNTER,
    )
    thinking = ContentPart("thinking", data={"thinking": "plan " * 40, "signature": "s" * 40})
    history = [Message.system("agent"), Message.user("task")]
    for i in range(5):
        call = ToolCall(f"c{i}", "read", json.dumps({"path": f"file{i}.py"}))
        history.append(Message("assistant", (thinking,), tool_calls=(call,)))
        history.append(Message.tool(f"line {i} " * 60, call.id))
    history.append(Message.user("next"))
    out, report = mgr.fit(history)
    heads = [m for m in out if m.metadata.get("ctxmgr") == "cleared_tool_inputs"]
    assert report.compacted and heads
    for m in heads:
        original = mgr.state.archive.get(m.metadata["original_id"])
        assert (
            original is not None
            and original.reasoning
            and "file" in original.tool_calls[0].arguments
        )
        assert m.reasoning == ()


def test_pinned_messages_keep_their_reasoning_and_arguments() -> None:
    """Pinned means verbatim: clear_reasoning and clear_tool_inputs leave pinned calls alone."""
    mgr = ContextManager.from_config(
        {
            "max_context_tokens": 1500,
            "reserve_output_tokens": 100,
            "strategies": [
                {
                    "name": "tool_pair_safe",
                    "clear_reasoning": True,
                    "clear_tool_inputs": True,
                    "keep_recent_tool_results": 0,
                },
                {"name": "pin_and_slide"},
            ],
        },
        counter=COUNTER,
    )
    thinking = ContentPart("thinking", data={"thinking": "plan " * 40, "signature": "s" * 40})
    history = [Message.system("agent"), Message.user("task")]
    for i in range(5):
        call = ToolCall(f"c{i}", "read", json.dumps({"path": f"file{i}.py"}))
        head = Message("assistant", (thinking,), tool_calls=(call,), pinned=i == 0)
        history += [head, Message.tool(f"line {i} " * 60, call.id)]
    history.append(Message.user("next"))
    out, report = mgr.fit(history)
    assert report.compacted
    assert history[2] in out and history[2].reasoning  # the pinned call, verbatim
    others = [m for m in out if m.role == "assistant" and m is not history[2]]
    assert others and all(m.reasoning == () for m in others)
