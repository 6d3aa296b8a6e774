"""AG2 adapter: lossless converters and ``ConversableAgent`` runs with a scripted model client."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("autogen.agentchat.contrib.capabilities.transform_messages")

from autogen import ConversableAgent, OpenAIWrapper, register_function
from ctxmgr.adapters.ag2 import (
    AG2Summarizer,
    ContextTransform,
    from_messages,
    note_tools,
    to_messages,
)
from openai.types.chat import ChatCompletion

from ctxmgr import Message, messages_from_openai
from ctxmgr.testing import bm25_agent_config
from ctxmgr.tokens import get_counter

SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
MAX_TOKENS = 3000
RESERVE = 300
LIMIT = MAX_TOKENS - RESERVE
TURNS = 30
# The agent preset with BM25-only relevance: its WordLlama embeddings cost about a second a
# fit on a loaded 2-core machine, and what these tests check does not depend on the scorer.
AGENT: dict[str, Any] = bm25_agent_config()


def big_result(tag: str) -> str:
    """About 1,500 tokens of tool output."""
    return f"Result {tag}: " + " ".join(f"{tag}-w{i}" for i in range(500))


def search(query: str) -> str:
    """Search the corpus."""
    return big_result(f"search-{query}")


def lookup(key: str) -> str:
    """Look a key up."""
    return big_result(f"lookup-{key}")


class ScriptedClient:
    """An AG2 ``ModelClient`` that records each request and replies from a script.

    After a user message it calls ``search`` and ``lookup`` in parallel; after tool results
    it answers in text. Every request's messages are kept in ``ScriptedClient.calls``.
    """

    calls: list[list[dict[str, Any]]] = []

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        self.model = config.get("model", "scripted")

    def create(self, params: dict[str, Any]) -> ChatCompletion:
        messages = copy.deepcopy(params["messages"])
        ScriptedClient.calls.append(messages)
        n = len(ScriptedClient.calls)
        last = messages[-1]
        if last.get("role") == "user" and "running summary" in str(last.get("content")):
            message: dict[str, Any] = {"role": "assistant", "content": "SUMMARY: earlier turns."}
        elif last.get("role") == "user":
            topic = str(last["content"]).split()[-1]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call-{n}-{name}",
                        "type": "function",
                        "function": {"name": name, "arguments": f'{{"{arg}": "{topic}"}}'},
                    }
                    for name, arg in (("search", "query"), ("lookup", "key"))
                ],
            }
        else:
            message = {"role": "assistant", "content": f"Answer {n}: the results agree."}
        return ChatCompletion.model_validate(
            {
                "id": f"r{n}",
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                        "message": message,
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    def message_retrieval(self, response: ChatCompletion) -> list[Any]:
        return [choice.message for choice in response.choices]

    def cost(self, response: ChatCompletion) -> float:
        return 0.0

    @staticmethod
    def get_usage(response: ChatCompletion) -> dict[str, Any]:
        return {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": 0.0,
            "model": response.model,
        }


LLM_CONFIG = {"config_list": [{"model": "scripted", "model_client_cls": "ScriptedClient"}]}


def make_agents(transform: ContextTransform) -> tuple[ConversableAgent, ConversableAgent]:
    assistant = ConversableAgent(
        "assistant", system_message=SYSTEM, llm_config=LLM_CONFIG, human_input_mode="NEVER"
    )
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
    for fn in (search, lookup):
        register_function(
            fn, caller=assistant, executor=user, description=fn.__doc__ or fn.__name__
        )
    assistant.register_model_client(ScriptedClient)  # after the tools: they rebuild the client
    transform.add_to_agent(assistant)
    return assistant, user


def assert_well_formed(
    call: Sequence[dict[str, Any]], latest_user: str, tools_tokens: int = 0
) -> None:
    """System prompt first, latest user message present, tool pairs whole, within budget.

    ``tools_tokens``: the tool definitions sent with the call, part of the budget.
    """
    assert call[0]["role"] == "system" and call[0]["content"] == SYSTEM
    # a provider profile may merge adjacent user turns: the question is in one of them
    assert any(m["role"] == "user" and latest_user in str(m.get("content")) for m in call)
    asked: set[str] = set()
    answered: set[str] = set()
    for message in call:
        asked.update(c["id"] for c in message.get("tool_calls") or ())
        if message["role"] == "tool":
            assert message["tool_call_id"] in asked, f"orphan {message['tool_call_id']}"
            answered.add(message["tool_call_id"])
    assert asked == answered, f"calls without results: {asked - answered}"
    tokens = get_counter().count_messages(messages_from_openai(call))
    assert tokens + tools_tokens <= LIMIT, f"{tokens} + {tools_tokens} tokens sent, limit {LIMIT}"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_conversable_agent_thirty_turns_stay_valid(provider: str) -> None:
    """30 turns (60 model calls) of parallel ~1,500-token tool results in a 3,000 window.

    What the model client receives always holds the system prompt and the latest user
    message, has no orphan result or unanswered call and fits the window; the agent's
    ``chat_messages`` keep the whole history. Under each provider profile's wire rules.
    """
    ScriptedClient.calls = []
    transform = ContextTransform.from_config(
        AGENT, provider=provider, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    assistant, user = make_agents(transform)
    for i in range(TURNS):
        before = len(ScriptedClient.calls)
        question = f"Turn {i}: research topic{i}"
        user.initiate_chat(
            assistant, message=question, max_turns=2, clear_history=False, silent=True
        )
        assert len(ScriptedClient.calls) == before + 2
        tools_tokens = transform.last_report.tools_tokens if transform.last_report else 0
        assert tools_tokens > 0  # the two tool schemas are in the budget
        for call in ScriptedClient.calls[before:]:
            assert_well_formed(call, question, tools_tokens)
    history = assistant.chat_messages[user]
    assert len(history) == TURNS * 4  # question, calls, grouped results, answer
    assert sum(len(m.get("tool_responses") or ()) for m in history) == TURNS * 2
    assert max(len(c) for c in ScriptedClient.calls) < len(history)
    report = transform.last_report
    assert report is not None and report.tokens_before > LIMIT >= report.tokens_after


def test_summarizer_and_note_tools() -> None:
    """``AG2Summarizer`` writes the running summary through AG2's client; notes are tools."""
    ScriptedClient.calls = []
    wrapper = OpenAIWrapper(**LLM_CONFIG)
    wrapper.register_model_client(ScriptedClient)
    transform = ContextTransform.from_config(
        "summary",
        summarizer=AG2Summarizer(wrapper),
        system_message=SYSTEM,
        max_context_tokens=MAX_TOKENS,
        reserve_output_tokens=RESERVE,
    )
    history: list[dict[str, Any]] = []
    for i in range(6):
        history += [
            {"role": "user", "content": f"question {i}", "name": "user"},
            {"role": "assistant", "content": f"answer {i}: " + big_result(f"a{i}")},
        ]
        transform.apply_transform(history)
    assert transform.manager_for(history).state.summary == "SUMMARY: earlier turns."
    notes = note_tools(ContextTransform.from_config(AGENT, max_context_tokens=MAX_TOKENS))
    assert [t.name for t in notes] == ["write_note", "update_note", "delete_note", "read_notes"]
    assert notes[0].func(key="k", facts=["fact one"]) == "saved note 'k'"
    assert "fact one" in notes[3].func()


ROUND_TRIP: list[dict[str, Any]] = [
    {"role": "user", "content": "hello", "name": "user"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
        "name": "user",
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{bad"}},
        ],
        "name": "assistant",
        "refusal": None,
    },
    {
        "role": "tool",
        "content": "r1\n\nr2",
        "tool_responses": [
            {"tool_call_id": "c1", "role": "tool", "content": "r1"},
            {"tool_call_id": "c2", "role": "tool", "content": "r2"},
        ],
    },
    {"role": "assistant", "content": None, "function_call": {"name": "old", "arguments": "{}"}},
    {"role": "function", "name": "old", "content": "old result"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "f", "arguments": ""}}
        ],
    },
    {
        "role": "user",
        "content": "stop that",
        "tool_responses": [{"tool_call_id": "c3", "role": "tool", "content": "USER INTERRUPTED"}],
    },
    {"role": "assistant", "content": "same"},
    {"role": "assistant", "content": "same"},
]


def test_round_trip_is_lossless() -> None:
    """Every AG2 message shape comes back equal: groups, legacy calls, parts, extra keys."""
    neutral = to_messages(ROUND_TRIP)
    assert from_messages(neutral) == ROUND_TRIP
    assert [m.role for m in neutral] == [
        "user", "user", "assistant", "tool", "tool", "assistant", "tool",
        "assistant", "tool", "user", "assistant", "assistant",
    ]  # fmt: skip
    assert [m.tool_call_id for m in neutral if m.role == "tool"] == ["c1", "c2", "fc-5", "c3"]
    assert [p.type for p in neutral[1].content] == ["text", "image_url"]
    assert neutral[-1].id != neutral[-2].id


def test_changed_results_regroup_and_kept_dicts_are_the_originals() -> None:
    """A cleared tool result is regrouped with its sibling; untouched dicts are not copied."""
    neutral = to_messages(ROUND_TRIP)
    cleared = [m.evolve(content="[cleared]") if m.tool_call_id == "c1" else m for m in neutral]
    back = from_messages(cleared)
    assert back[3]["tool_responses"][0]["content"] == "[cleared]"
    assert back[3]["content"] == "[cleared]\n\nr2"
    transform = ContextTransform.from_config("fifo", max_context_tokens=100_000)
    out = transform.apply_transform(ROUND_TRIP)
    assert out == ROUND_TRIP and all(a is b for a, b in zip(out, ROUND_TRIP, strict=True))
    injected = from_messages([Message.system("Summary", metadata={"ctxmgr": "summary"})])
    assert injected == [{"role": "system", "content": "Summary"}]


@st.composite
def dict_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """AG2 histories: user turns (text or parts), parallel calls with grouped responses."""
    items: list[dict[str, Any]] = []
    text = st.text(max_size=20)
    for t in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            items.append({"role": "user", "content": draw(text), "name": "user"})
        else:
            image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
            items.append({"role": "user", "content": [{"type": "text", "text": draw(text)}, image]})
        calls = draw(st.integers(0, 3))
        if calls:
            items.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"c{t}{k}",
                            "type": "function",
                            "function": {"name": "f", "arguments": json.dumps({"q": draw(text)})},
                        }
                        for k in range(calls)
                    ],
                }
            )
            responses = [
                {"tool_call_id": f"c{t}{k}", "role": "tool", "content": draw(text)}
                for k in range(calls)
            ]
            joined = "\n\n".join(r["content"] for r in responses)
            items.append({"role": "tool", "content": joined, "tool_responses": responses})
        items.append({"role": "assistant", "content": draw(text), "name": "assistant"})
    return items


@given(dict_histories())
@settings(max_examples=60, deadline=None)
def test_round_trip_property(items: list[dict[str, Any]]) -> None:
    """Any generated history round-trips, and every tool result follows its call."""
    neutral = to_messages(items)
    assert from_messages(neutral) == items
    asked: set[str] = set()
    for message in neutral:
        asked.update(c.id for c in message.tool_calls)
        if message.role == "tool":
            assert message.tool_call_id in asked


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the framework, importing the adapter says which extra to install."""
    import importlib
    import re
    import sys

    monkeypatch.setitem(sys.modules, "autogen", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.ag2")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[ag2]"')):
        importlib.import_module("ctxmgr.adapters.ag2")
