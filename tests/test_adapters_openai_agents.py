"""OpenAI Agents SDK adapter: lossless item converters and runs with a fake ``Model``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("agents")

from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from ctxmgr.adapters.openai_agents import (
    AgentsSummarizer,
    ContextFilter,
    ContextSession,
    from_messages,
    note_tools,
    to_messages,
)
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from ctxmgr import Message, ToolCall
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


@function_tool
def search(query: str) -> str:
    """Search the corpus."""
    return big_result(f"search-{query}")


@function_tool
def lookup(key: str) -> str:
    """Look a key up."""
    return big_result(f"lookup-{key}")


@dataclass
class ModelCall:
    """What one model call received."""

    system_instructions: str | None
    input: Any


def assistant_message(text: str, *, item_id: str) -> ResponseOutputMessage:
    """One assistant text output item."""
    content = [ResponseOutputText(text=text, type="output_text", annotations=[])]
    return ResponseOutputMessage(
        id=item_id, type="message", role="assistant", status="completed", content=content
    )


def function_call(
    name: str, arguments: dict[str, Any], *, call_id: str
) -> ResponseFunctionToolCall:
    """One function-call output item."""
    return ResponseFunctionToolCall(
        id=call_id,
        call_id=call_id,
        type="function_call",
        name=name,
        arguments=json.dumps(arguments),
    )


class ScriptedModel(Model):
    """A fake Agents SDK ``Model``: records every call's input, replies with ``respond(call)``."""

    def __init__(self, respond: Callable[[ModelCall], list[Any]]) -> None:
        self.respond = respond
        self.calls: list[ModelCall] = []

    async def get_response(
        self, system_instructions: str | None, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        """Record the call and return the scripted reply."""
        call = ModelCall(system_instructions, copy.deepcopy(input))
        self.calls.append(call)
        return ModelResponse(output=self.respond(call), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        """Streaming is not scripted."""
        raise NotImplementedError("the scripted model does not stream")


def respond(call: ModelCall) -> Any:
    """Parallel tool calls (after reasoning) for a new question; an answer after results."""
    items = list(call.input) if isinstance(call.input, list) else [{"content": call.input}]
    n = id(call) % 100_000
    last = items[-1]
    if "running summary" in str(last.get("content")):
        return [assistant_message("SUMMARY: earlier turns.", item_id=f"sum-{n}")]
    asks = [i for i, item in enumerate(items) if str(item.get("content")).startswith("Turn")]
    if any(item.get("type") == "function_call_output" for item in items[asks[-1] :]):
        return [assistant_message("Answer: the results agree.", item_id=f"msg-{n}")]
    topic = str(items[asks[-1]]["content"]).split()[-1]
    reasoning = ResponseReasoningItem(
        id=f"rs-{n}",
        type="reasoning",
        summary=[Summary(text=f"look up {topic}", type="summary_text")],
    )
    return [
        reasoning,
        function_call("search", {"query": topic}, call_id=f"call-{n}-a"),
        function_call("lookup", {"key": topic}, call_id=f"call-{n}-b"),
    ]


def scripted(steps: int) -> ScriptedModel:
    """A fresh scripted model (``steps`` is the number of calls the test expects)."""
    return ScriptedModel(respond)


def assert_well_formed(call: ModelCall, latest_user: str, tools_tokens: int = 0) -> None:
    """Instructions sent, latest user message present, tool pairs whole, within budget.

    ``tools_tokens``: the tool definitions sent with the call, part of the budget.
    """
    assert call.system_instructions == SYSTEM
    items: Sequence[Any] = call.input
    # a provider profile may merge adjacent user turns: the question is in one of them
    assert any(i.get("role") == "user" and latest_user in str(i.get("content")) for i in items)
    asked = {i["call_id"] for i in items if i.get("type") == "function_call"}
    answered = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    assert set(answered) == asked and len(answered) == len(set(answered))
    for index, item in enumerate(items):
        if item.get("type") == "function_call_output":
            calls_before = {i.get("call_id") for i in items[:index]}
            assert item["call_id"] in calls_before, f"orphan result {item['call_id']}"
    counter = get_counter()
    tokens = counter.count_messages(to_messages(items)) + counter.count_text(SYSTEM)
    assert tokens + tools_tokens <= LIMIT, f"{tokens} + {tools_tokens} tokens sent, limit {LIMIT}"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_runner_thirty_turns_stay_valid(provider: str) -> None:
    """30 turns (60 model calls) of parallel ~1,500-token tool results in a 3,000 window.

    Every model call gets the instructions and the latest user message, no orphan result
    or unanswered call, and fits the window; the session keeps the whole history.
    """
    flt = ContextFilter.from_config(
        AGENT, provider=provider, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    model = scripted(TURNS * 2)
    agent = Agent(name="researcher", instructions=SYSTEM, model=model, tools=[search, lookup])
    session = SQLiteSession("t1")
    config = RunConfig(call_model_input_filter=flt, tracing_disabled=True)
    for i in range(TURNS):
        before = len(model.calls)
        question = f"Turn {i}: research topic{i}"
        await Runner.run(
            agent, question, session=session, run_config=config, context={"thread_id": "t1"}
        )
        assert len(model.calls) == before + 2
        tools_tokens = flt.last_reports["t1"].tools_tokens
        assert tools_tokens > 0  # the two tool schemas are in the budget
        for call in model.calls[before:]:
            assert_well_formed(call, question, tools_tokens)
    history = await session.get_items()
    # user, reasoning, 2 calls, 2 results, answer per turn: nothing lost
    assert len(history) == TURNS * 7
    assert max(len(c.input) for c in model.calls) < len(history)
    report = flt.last_reports["t1"]
    assert report.tokens_before > LIMIT >= report.tokens_after
    session.close()


async def test_session_stores_everything_and_reads_the_fitted_view() -> None:
    """``ContextSession``: all items stored; each run starts from a view within the window.

    The session is read once per run, before the SDK appends the run's new input, so it
    bounds the first model call of each turn only with headroom for that input, given as
    extra reply reserve (the filter bounds every call, tested above).
    """
    session = ContextSession.from_config(
        "t2",
        AGENT,
        instructions=SYSTEM,
        max_context_tokens=MAX_TOKENS,
        reserve_output_tokens=RESERVE + 64,  # headroom for the question the SDK appends
    )
    model = scripted(TURNS * 2)
    agent = Agent(name="researcher", instructions=SYSTEM, model=model, tools=[search, lookup])
    config = RunConfig(tracing_disabled=True)
    for i in range(TURNS):
        before = len(model.calls)
        question = f"Turn {i}: research topic{i}"
        await Runner.run(agent, question, session=session, run_config=config)
        assert_well_formed(model.calls[before], question)
        view = await session.get_items()
        assert to_messages(view)  # converts: every item is a Responses-API item
    stored = await session.all_items()
    assert len(stored) == TURNS * 7
    assert len(view) < len(stored)
    report = session.last_report
    assert report is not None and report.tokens_after <= LIMIT
    await session.clear_session()
    assert await session.all_items() == [] and session.last_report is None


async def test_summarizer_and_note_tools() -> None:
    """``AgentsSummarizer`` writes the summary with an SDK model; notes are FunctionTools."""
    flt = ContextFilter.from_config(
        "summary",
        summarizer=AgentsSummarizer(scripted(20)),
        max_context_tokens=MAX_TOKENS,
        reserve_output_tokens=RESERVE,
    )
    model = scripted(12)
    agent = Agent(name="researcher", instructions=SYSTEM, model=model, tools=[search, lookup])
    items: list[Any] = []
    config = RunConfig(call_model_input_filter=flt, tracing_disabled=True)
    for i in range(6):
        question = f"Turn {i}: topic{i}"
        result = await Runner.run(
            agent, [*items, {"role": "user", "content": question}], run_config=config
        )
        items = result.to_input_list()
    for call in model.calls:
        assert call.system_instructions == SYSTEM
    keys = list(flt.last_reports)
    assert len(keys) == 1  # one conversation, keyed by its first item
    assert flt.manager_for(keys[0]).state.summary == "SUMMARY: earlier turns."
    tools = note_tools(ContextFilter.from_config(AGENT, max_context_tokens=MAX_TOKENS), key="k")
    assert [t.name for t in tools] == ["write_note", "update_note", "delete_note", "read_notes"]


ROUND_TRIP: list[dict[str, Any]] = [
    {"role": "developer", "content": "be brief"},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
            {"type": "input_file", "file_id": "file-1"},
        ],
    },
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "think"}],
        "encrypted_content": "opaque",
    },
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "calling", "annotations": []}],
    },
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}', "id": "fc_1"},
    {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{bad", "id": "fc_2"},
    {"type": "function_call_output", "call_id": "c1", "output": "r1"},
    {
        "type": "function_call_output",
        "call_id": "c2",
        "output": [{"type": "input_text", "text": "r2"}],
    },
    {"role": "user", "content": "same"},
    {"role": "user", "content": "same"},
]


def test_round_trip_is_lossless() -> None:
    """Messages, reasoning, parallel calls, outputs and input parts come back equal."""
    neutral = to_messages(ROUND_TRIP)
    assert from_messages(neutral) == ROUND_TRIP
    assert [m.role for m in neutral] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
        "user",
    ]
    assert [p.type for p in neutral[1].content] == ["text", "image_url", "file"]
    reply = neutral[2]
    assert [p.type for p in reply.content] == ["reasoning", "text"]
    assert [(c.id, c.name) for c in reply.tool_calls] == [("c1", "f"), ("c2", "g")]
    assert neutral[-1].id != neutral[-2].id


def test_changed_items_are_rebuilt() -> None:
    """A cleared output keeps its call id; a changed reasoning text edits only that item."""
    neutral = to_messages(ROUND_TRIP)
    changed = [m.evolve(content="[cleared]") if m.tool_call_id == "c1" else m for m in neutral]
    back = from_messages(changed)
    assert back[6] == {"type": "function_call_output", "call_id": "c1", "output": "[cleared]"}
    assert back[:6] == ROUND_TRIP[:6] and back[7:] == ROUND_TRIP[7:]


@st.composite
def item_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Responses-API histories: text or multimodal user turns, reasoning, parallel calls."""
    items: list[dict[str, Any]] = []
    text = st.text(max_size=20)
    for t in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            items.append({"role": "user", "content": draw(text)})
        else:
            image = {"type": "input_image", "image_url": "data:image/png;base64,AA"}
            items.append(
                {"role": "user", "content": [{"type": "input_text", "text": draw(text)}, image]}
            )
        if draw(st.booleans()):
            summary = [{"type": "summary_text", "text": draw(text)}]
            items.append({"id": f"rs{t}", "type": "reasoning", "summary": summary})
        calls = draw(st.integers(0, 3))
        for k in range(calls):
            args = json.dumps({"q": draw(text)})
            items.append(
                {"type": "function_call", "call_id": f"c{t}{k}", "name": "f", "arguments": args}
            )
        for k in range(calls):
            items.append(
                {"type": "function_call_output", "call_id": f"c{t}{k}", "output": draw(text)}
            )
        content = [{"type": "output_text", "text": draw(text), "annotations": []}]
        items.append({"type": "message", "role": "assistant", "id": f"m{t}", "content": content})
    return items


@given(item_histories())
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

    monkeypatch.setitem(sys.modules, "agents", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.openai_agents")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[openai-agents]"')):
        importlib.import_module("ctxmgr.adapters.openai_agents")


async def test_store_lets_two_workers_serve_one_conversation(tmp_path: Any) -> None:
    """With ``store=``, two filters (two workers) alternating turns share one ctxmgr state."""
    url = f"sqlite:///{tmp_path / 'ctx.db'}"
    workers = [
        ContextFilter.from_config(
            AGENT, store=url, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
        )
        for _ in range(2)
    ]
    model = scripted(12)
    agent = Agent(name="researcher", instructions=SYSTEM, model=model, tools=[search, lookup])
    session = SQLiteSession("t9")
    for i in range(6):
        config = RunConfig(call_model_input_filter=workers[i % 2], tracing_disabled=True)
        question = f"Turn {i}: research topic{i}"
        await Runner.run(
            agent, question, session=session, run_config=config, context={"thread_id": "t9"}
        )
        for call in model.calls[-2:]:
            assert_well_formed(call, question, workers[i % 2].last_reports["t9"].tools_tokens)
    for worker in workers:
        worker.reset("t9")  # drop the in-process copies: state comes from the store
    assert workers[0].manager_for("t9").state.turn == 12  # every fit, from both workers
    session.close()


def test_messages_ctxmgr_made_become_items() -> None:
    """A summary, a synthetic call and its result map to Responses-API items."""
    made = [
        Message.system("Summary so far", metadata={"ctxmgr": "summary"}),
        Message.assistant("", [ToolCall("c9", "f", '{"a": 1}')]),
        Message.tool("r", "c9"),
    ]
    assert from_messages(made) == [
        {"role": "system", "content": "Summary so far"},
        {"type": "function_call", "call_id": "c9", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c9", "output": "r"},
    ]
