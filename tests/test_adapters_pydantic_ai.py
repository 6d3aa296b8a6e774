"""pydantic-ai adapter: lossless converters and agent runs with ``FunctionModel``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxmgr.testing import bm25_agent_config

pytest.importorskip("pydantic_ai")

from ctxmgr.adapters.pydantic_ai import (
    ContextProcessor,
    PydanticAISummarizer,
    from_messages,
    note_tools,
    to_messages,
)
from pydantic_ai import Agent
from pydantic_ai.capabilities import ProcessHistory
from pydantic_ai.messages import (
    BinaryContent,
    CompactionPart,
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    RetryInfo,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from ctxmgr.tokens import get_counter

SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
MAX_TOKENS = 3000
RESERVE = 300
LIMIT = MAX_TOKENS - RESERVE
TURNS = 30
# The agent preset with BM25-only relevance: its WordLlama embeddings cost about a second a
# fit on a loaded 2-core machine, and what these tests check does not depend on the scorer.
AGENT: dict[str, Any] = bm25_agent_config()
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
# FunctionModel gets a mid-conversation SystemPromptPart as <system>-framed user text, as
# pydantic-ai's Anthropic model sends it; the anthropic profile injects ctxmgr's context in
# the user role, so what is counted is exactly what the model receives.
PROVIDER = "anthropic"


def big_result(tag: str) -> str:
    """About 1,500 tokens of tool output."""
    return f"Result {tag}: " + " ".join(f"{tag}-w{i}" for i in range(500))


class Script:
    """A ``FunctionModel`` body that records each request and scripts parallel tool calls.

    Unless the last request holds tool returns, it calls ``search`` and ``lookup`` in
    parallel on the latest ``Turn ...`` prompt's topic; after tool returns it answers.
    """

    def __init__(self) -> None:
        self.calls: list[list[ModelMessage]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls.append(list(messages))
        n = len(self.calls)
        last = messages[-1]
        prompts = [p for p in last.parts if isinstance(p, UserPromptPart)]
        if any("running summary" in str(p.content) for p in prompts):
            return ModelResponse(parts=[TextPart("SUMMARY: earlier turns.")])
        if not any(isinstance(p, ToolReturnPart) for p in last.parts):
            asks = [p for m in messages for p in m.parts if isinstance(p, UserPromptPart)]
            topic = str([p for p in asks if str(p.content).startswith("Turn")][-1].content)
            topic = topic.split()[-1]
            return ModelResponse(
                parts=[
                    ThinkingPart(f"I should search {topic} and look it up."),
                    ToolCallPart("search", {"query": topic}, tool_call_id=f"c{n}a"),
                    ToolCallPart("lookup", {"key": topic}, tool_call_id=f"c{n}b"),
                ]
            )
        return ModelResponse(parts=[TextPart(f"Answer {n}: the results agree.")])


def make_agent(
    processor: ContextProcessor, script: Script, sync: bool = False, **kwargs: Any
) -> Agent[None, str]:
    capability = ProcessHistory(processor.process) if sync else processor.capability()
    agent: Agent[None, str] = Agent(FunctionModel(script), capabilities=[capability], **kwargs)

    @agent.tool_plain
    def search(query: str) -> str:
        """Search the corpus."""
        return big_result(f"search-{query}")

    @agent.tool_plain
    def lookup(key: str) -> str:
        """Look a key up."""
        return big_result(f"lookup-{key}")

    return agent


def assert_well_formed(
    call: Sequence[ModelMessage], latest_user: str, system: str, tools_tokens: int = 0
) -> None:
    """System prompt present, latest user prompt present, tool pairs whole, within budget.

    ``tools_tokens``: the tool definitions sent with the call, part of the budget.
    """
    parts = [p for m in call for p in m.parts]
    systems = [p.content for p in parts if isinstance(p, SystemPromptPart)]
    instructions = [m.instructions for m in call if isinstance(m, ModelRequest) and m.instructions]
    assert system in systems or (instructions and instructions[-1] == system)
    # the provider profile may merge adjacent user turns: the prompt is in one of them
    assert any(isinstance(p, UserPromptPart) and latest_user in str(p.content) for p in parts)
    asked: set[str] = set()
    answered: set[str] = set()
    for part in parts:
        if isinstance(part, ToolCallPart):
            asked.add(part.tool_call_id)
        if isinstance(part, ToolReturnPart):
            assert part.tool_call_id in asked, f"orphan tool result {part.tool_call_id}"
            answered.add(part.tool_call_id)
    assert asked == answered, f"calls without results: {asked - answered}"
    counter = get_counter()
    tokens = counter.count_messages(to_messages(call))
    if instructions and system not in systems:
        tokens += counter.count_text(instructions[-1])
    assert tokens + tools_tokens <= LIMIT, f"{tokens} + {tools_tokens} tokens sent, limit {LIMIT}"


async def run_turns(
    agent: Agent[None, str], script: Script, turns: int, system: str, processor: ContextProcessor
) -> Any:
    """Run ``turns`` turns, checking every model call; tool definitions count when hooked."""
    history: list[ModelMessage] | None = None
    result: Any = None
    for i in range(turns):
        before = len(script.calls)
        question = f"Turn {i}: research topic{i}"
        result = await agent.run(question, message_history=history)
        history = result.all_messages()
        assert len(script.calls) == before + 2
        tools_tokens = max(r.tools_tokens for r in processor.last_reports.values())
        for call in script.calls[before:]:
            assert_well_formed(call, question, system, tools_tokens)
    return result


@pytest.mark.parametrize("path", ["hook", "processor"])
async def test_agent_thirty_turns_stay_valid(path: str) -> None:
    """30 turns (60 model calls) of parallel ~1,500-token tool results in a 3,000 window.

    Every request is within the window with the system prompt and the latest user prompt,
    and no orphan or unanswered tool call. With the hook (``capability()``) pydantic-ai keeps
    the whole history; with the sync ``ProcessHistory`` processor, which replaces it, the
    processor keeps it.
    """
    processor = ContextProcessor.from_config(
        AGENT, provider=PROVIDER, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    script = Script()
    agent = make_agent(processor, script, sync=path == "processor", system_prompt=SYSTEM)
    result = await run_turns(agent, script, TURNS, SYSTEM, processor)
    if path == "hook":  # the hook sees the request's tool definitions and counts them
        assert processor.last_reports[result.conversation_id].tools_tokens > 0
    conversation = result.conversation_id
    full = processor.history(conversation)
    # request, calls, results, answer per turn; the last answer came after the last request
    assert len(full) == TURNS * 4 - 1
    assert [type(p) for p in full[-1].parts] == [ToolReturnPart, ToolReturnPart]
    final = result.all_messages()
    assert final[-1].parts[0].content == f"Answer {len(script.calls)}: the results agree."
    if path == "hook":
        assert final[:-1] == full  # pydantic-ai's own history is whole
    else:
        assert len(final) < len(full)  # replaced by the fitted view
    assert sum(isinstance(p, ToolReturnPart) for m in full for p in m.parts) == TURNS * 2
    assert max(len(c) for c in script.calls) < len(full)
    report = processor.last_reports[conversation]
    assert report.tokens_before > LIMIT >= report.tokens_after


async def test_async_run_with_instructions_and_summarizer() -> None:
    """``instructions=`` are counted and pinned; the async path awaits the summarizer."""
    summarizer_script = Script()
    processor = ContextProcessor.from_config(
        "summary",  # openai profile: the summary stands alone, as a CompactionPart
        summarizer=PydanticAISummarizer(FunctionModel(summarizer_script)),
        max_context_tokens=MAX_TOKENS,
        reserve_output_tokens=RESERVE,
    )
    script = Script()
    agent = make_agent(processor, script, instructions=SYSTEM)
    history: list[ModelMessage] | None = None
    for i in range(6):
        before = len(script.calls)
        question = f"Turn {i}: topic{i}"
        result = await agent.run(question, message_history=history)
        history = result.all_messages()
        for call in script.calls[before:]:
            assert_well_formed(call, question, SYSTEM)
    manager = processor.manager_for(result.conversation_id)
    assert manager.state.summary == "SUMMARY: earlier turns."
    assert summarizer_script.calls  # the summary came from the model
    summaries = [
        p.content
        for call in script.calls
        for m in call
        for p in m.parts
        if isinstance(p, CompactionPart) and (p.metadata or {}).get("ctxmgr") == "summary"
    ]
    assert summaries and "SUMMARY: earlier turns." in str(summaries[-1])


async def test_note_tools_are_pydantic_ai_tools() -> None:
    """Note tools act on the calling run's conversation scratchpad."""
    processor = ContextProcessor.from_config(AGENT, max_context_tokens=MAX_TOKENS)
    calls: list[int] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        assert [t.name for t in info.function_tools] == [
            "write_note", "update_note", "delete_note", "read_notes",
        ]  # fmt: skip
        if len(calls) == 1:
            args = {"key": "k", "facts": ["fact one"]}
            return ModelResponse(parts=[ToolCallPart("write_note", args, tool_call_id="n1")])
        return ModelResponse(parts=[TextPart("saved")])

    agent: Agent[None, str] = Agent(
        FunctionModel(model), capabilities=[processor.capability()], tools=note_tools(processor)
    )
    result = await agent.run("remember this", conversation_id="notes")
    assert result.output == "saved"
    assert "fact one" in str(processor.manager_for("notes").scratchpad.read("k"))


ROUND_TRIP: list[ModelMessage] = [
    ModelRequest(
        parts=[
            SystemPromptPart("sys", timestamp=T0),
            UserPromptPart(
                [
                    "look at",
                    ImageUrl("https://example.org/cat.png"),
                    BinaryContent(b"RIFF", media_type="audio/wav"),
                ],
                timestamp=T0,
            ),
        ],
        instructions="be brief",
        timestamp=T0,
    ),
    ModelResponse(
        parts=[
            ThinkingPart("let me think", signature="sig", provider_name="anthropic"),
            TextPart("calling tools"),
            ToolCallPart("f", {"a": 1}, tool_call_id="c1"),
            ToolCallPart("g", '{"b": 2}', tool_call_id="c2"),
        ],
        model_name="m",
        timestamp=T0,
        provider_response_id="resp-1",
    ),
    ModelRequest(
        parts=[
            ToolReturnPart("f", {"rows": [1, 2]}, tool_call_id="c1", timestamp=T0),
            ToolReturnPart(
                "g",
                "bad args",
                tool_call_id="c2",
                outcome="retried",
                retry=RetryInfo(cause="model_retry"),
                timestamp=T0,
            ),
        ],
        timestamp=T0,
    ),
    ModelResponse(parts=[TextPart("done")], timestamp=T0),
    ModelRequest(
        parts=[RetryFeedbackPart("try again", retry=RetryInfo(cause="model_retry"), timestamp=T0)],
        timestamp=T0,
    ),
    ModelRequest(parts=[UserPromptPart("same", timestamp=T0)], timestamp=T0),
    ModelRequest(parts=[UserPromptPart("same", timestamp=T0)], timestamp=T0),
]


def test_round_trip_is_lossless() -> None:
    """Every part kind comes back equal: system, user (multimodal), thinking, calls, returns."""
    neutral = to_messages(ROUND_TRIP)
    assert from_messages(neutral) == ROUND_TRIP
    assert [m.role for m in neutral] == [
        "system", "user", "assistant", "tool", "tool", "assistant", "user", "user", "user",
    ]  # fmt: skip
    assert [p.type for p in neutral[1].content] == ["text", "image_url", "input_audio"]
    reply = neutral[2]
    assert [p.type for p in reply.content] == ["reasoning", "text"]
    assert [(c.id, c.name) for c in reply.tool_calls] == [("c1", "f"), ("c2", "g")]
    assert reply.id == "resp-1"
    assert [m.tool_call_id for m in neutral[3:5]] == ["c1", "c2"]
    assert neutral[-1].id != neutral[-2].id


def test_changed_parts_are_rebuilt_in_their_request() -> None:
    """A cleared tool return keeps its request, id and sibling; dropped parts leave the group."""
    neutral = to_messages(ROUND_TRIP)
    cleared = [m.evolve(content="[cleared]") if m.tool_call_id == "c1" else m for m in neutral]
    back = from_messages(cleared)
    returned = back[2].parts
    assert isinstance(returned[0], ToolReturnPart) and returned[0].content == "[cleared]"
    assert returned[0].tool_call_id == "c1" and returned[1] == ROUND_TRIP[2].parts[1]
    without_system = from_messages(neutral[1:])
    assert [type(p) for p in without_system[0].parts] == [UserPromptPart]
    assert without_system[0].instructions == "be brief"


@st.composite
def model_histories(draw: st.DrawFn) -> list[ModelMessage]:
    """pydantic-ai histories: prompts (text or image), thinking, parallel calls and returns."""
    text = st.text(max_size=20)
    items: list[ModelMessage] = [
        ModelRequest(parts=[SystemPromptPart("sys", timestamp=T0)], timestamp=T0)
    ]
    for t in range(draw(st.integers(0, 4))):
        content: Any = (
            draw(text) if draw(st.booleans()) else [draw(text), ImageUrl("https://e.org/i.png")]
        )
        items.append(ModelRequest(parts=[UserPromptPart(content, timestamp=T0)], timestamp=T0))
        calls = draw(st.integers(0, 3))
        parts: list[Any] = [ThinkingPart(draw(text))] if draw(st.booleans()) else []
        parts += [
            ToolCallPart("f", {"q": draw(text)}, tool_call_id=f"c{t}{k}") for k in range(calls)
        ]
        if calls:
            items.append(ModelResponse(parts=parts, timestamp=T0))
            returns = [
                ToolReturnPart("f", draw(text), tool_call_id=f"c{t}{k}", timestamp=T0)
                for k in range(calls)
            ]
            items.append(ModelRequest(parts=returns, timestamp=T0))
        items.append(ModelResponse(parts=[TextPart(draw(text))], timestamp=T0))
    return items


@given(model_histories())
@settings(max_examples=40, deadline=None)
def test_round_trip_property(items: list[ModelMessage]) -> None:
    """Any generated history round-trips, and every tool return follows its call."""
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

    monkeypatch.setitem(sys.modules, "pydantic_ai", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.pydantic_ai")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[pydantic-ai]"')):
        importlib.import_module("ctxmgr.adapters.pydantic_ai")
