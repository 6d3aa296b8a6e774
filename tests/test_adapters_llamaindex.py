"""LlamaIndex adapter: lossless converters and end-to-end runs with LlamaIndex's mock LLMs."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from ctxmgr.adapters.llamaindex import (
    ContextMemory,
    LlamaIndexSummarizer,
    UnsupportedContentWarning,
    from_message,
    from_messages,
    note_tools,
    to_messages,
)
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.tools import FunctionTool
from pydantic import Field

from ctxmgr import ContentPart, ContextManager, Message
from ctxmgr.tokens import get_counter

# llama-index-workflows inspects agent instances with inspect.getmembers(), which touches
# pydantic's deprecated instance attributes; only that warning is ignored here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance is deprecated"
    ":pydantic.warnings.PydanticDeprecatedSince211"
)

SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
MAX_TOKENS = 1500
RESERVE = 200
LIMIT = MAX_TOKENS - RESERVE
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
class RecordingLLM(MockLLM):
    """MockLLM that records the messages of every ``chat`` call."""

    calls: list[list[ChatMessage]] = Field(default_factory=list)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.calls.append(list(messages))
        return super().chat(messages, **kwargs)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.calls.append(list(messages))
        return await super().achat(messages, **kwargs)


class ScriptedAgentLLM:
    """Response generator for MockFunctionCallingLLM that records what the LLM received.

    After a user message it calls ``search`` and ``lookup`` in parallel; after tool results
    it answers in text.
    """

    def __init__(self) -> None:
        self.calls: list[list[ChatMessage]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.calls.append(list(messages))
        n = len(self.calls)
        last = messages[-1]
        if last.role == MessageRole.USER:
            topic = (last.content or "").split()[-1]
            return ChatMessage(
                role="assistant",
                blocks=[
                    ToolCallBlock(
                        tool_call_id=f"c{n}a", tool_name="search", tool_kwargs={"query": topic}
                    ),
                    ToolCallBlock(
                        tool_call_id=f"c{n}b", tool_name="lookup", tool_kwargs={"key": topic}
                    ),
                ],
            )
        return ChatMessage(role="assistant", content=f"Answer {n}: the results look fine.")


def search(query: str) -> str:
    """Search the corpus."""
    return f"Results for {query}: " + " ".join(f"doc{i} covers {query}" for i in range(40))


def lookup(key: str) -> str:
    """Look a key up."""
    return f"Record {key}: " + " ".join(f"field{i}=value{i}" for i in range(50))


TOOLS = [FunctionTool.from_defaults(fn=search), FunctionTool.from_defaults(fn=lookup)]


class FixedSummaryLLM(MockLLM):
    """A MockLLM whose every chat reply is the same short summary."""

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role="assistant", content="SUMMARY: topics seen."))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages)


def write_config(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / f"{preset}.toml"
    path.write_text(
        f'preset = "{preset}"\nmax_context_tokens = {MAX_TOKENS}\n'
        f"reserve_output_tokens = {RESERVE}\n"
    )
    return path


def assert_well_formed(call: Sequence[ChatMessage]) -> None:
    """Check one LLM input: system first, tool pairs whole, within the budget."""
    assert call[0].role == MessageRole.SYSTEM and call[0].content == SYSTEM
    neutral = to_messages(call)
    asked: set[str] = set()
    answered: set[str] = set()
    for message in neutral:
        asked.update(c.id for c in message.tool_calls)
        if message.role == "tool":
            assert message.tool_call_id in asked, f"orphan tool result {message.tool_call_id}"
            answered.add(message.tool_call_id)
    assert asked == answered, f"calls without results: {asked - answered}"
    tokens = get_counter().count_messages(neutral)
    assert tokens <= LIMIT, f"{tokens} tokens sent, limit {LIMIT}"


def tool_exchange(i: int) -> list[ChatMessage]:
    """One user turn with two parallel tool calls and big results."""
    return [
        ChatMessage(role="user", content=f"question {i} about topic{i}"),
        ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id=f"r{i}a", tool_name="search", tool_kwargs={"query": "x"}
                ),
                ToolCallBlock(tool_call_id=f"r{i}b", tool_name="lookup", tool_kwargs={"key": "x"}),
            ],
        ),
        ChatMessage(
            role="tool", content=search(f"t{i}"), additional_kwargs={"tool_call_id": f"r{i}a"}
        ),
        ChatMessage(
            role="tool", content=lookup(f"t{i}"), additional_kwargs={"tool_call_id": f"r{i}b"}
        ),
        ChatMessage(role="assistant", content=f"answer {i}"),
    ]


async def run_agent(memory: ContextMemory, turns: int, who: str = "Turn") -> ScriptedAgentLLM:
    script = ScriptedAgentLLM()
    agent = FunctionAgent(tools=TOOLS, llm=MockFunctionCallingLLM(response_generator=script))
    for i in range(turns):
        await agent.run(user_msg=f"{who} {i}: research topic{i}", memory=memory)
    return script


# ---------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------
ROUND_TRIP = [
    ChatMessage(role="system", content="sys"),
    ChatMessage(
        role="user",
        blocks=[
            TextBlock(text="look"),
            ImageBlock(image=PNG),
            DocumentBlock(data=b"%PDF-1.4", title="t"),
        ],
    ),
    ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="calling"),
            ToolCallBlock(tool_call_id="c1", tool_name="f", tool_kwargs={"a": 1}),
            ToolCallBlock(tool_name="g", tool_kwargs="{raw"),
        ],
    ),
    ChatMessage(role="tool", content="res", additional_kwargs={"tool_call_id": "c1", "name": "f"}),
    ChatMessage(
        role="assistant",
        content=None,
        additional_kwargs={
            "tool_calls": [
                {"id": "k1", "type": "function", "function": {"name": "h", "arguments": "{}"}}
            ]
        },
    ),
    ChatMessage(role="tool", content="res2", additional_kwargs={"tool_call_id": "k1"}),
    ChatMessage(
        role="assistant",
        additional_kwargs={
            "tool_calls": [ToolSelection(tool_id="s1", tool_name="x", tool_kwargs={"b": 2})]
        },
    ),
    ChatMessage(role="assistant", blocks=[ThinkingBlock(content="hmm"), TextBlock(text="ok")]),
    ChatMessage(role="chatbot", content="hi"),
    ChatMessage(role="user", blocks=[TextBlock(text="a"), TextBlock(text="b")]),
    ChatMessage(role="user", content=""),
    ChatMessage(role="user", content="same"),
    ChatMessage(role="user", content="same"),
]


def test_round_trip_is_lossless() -> None:
    """Every ChatMessage comes back equal: roles, blocks in order, kwargs, tool calls."""
    back = from_messages(to_messages(ROUND_TRIP))
    assert back == ROUND_TRIP


def test_neutral_view_of_tool_calls_and_parts() -> None:
    """Tool calls (blocks or kwargs), results, names and multimodal parts map correctly."""
    neutral = to_messages(ROUND_TRIP)
    assert [p.type for p in neutral[1].content] == ["text", "image", "file"]
    assert [(c.id, c.name, c.arguments) for c in neutral[2].tool_calls] == [
        ("c1", "f", '{"a": 1}'),
        ("li-i2-2", "g", "{raw"),
    ]
    assert (neutral[3].tool_call_id, neutral[3].name) == ("c1", "f")
    assert [c.id for c in neutral[4].tool_calls] == ["k1"] and neutral[5].tool_call_id == "k1"
    assert [c.name for c in neutral[6].tool_calls] == ["x"]
    assert neutral[7].content[0].text == "hmm"  # thinking text is counted
    assert neutral[8].role == "assistant"
    assert neutral[-1].id != neutral[-2].id


def test_foreign_parts_convert_or_warn() -> None:
    """OpenAI-style parts become blocks; a part with no block type is reported by name."""
    msg = Message.user(
        [
            ContentPart("text", "see"),
            ContentPart("image_url", data={"image_url": {"url": "https://x.org/a.png"}}),
            ContentPart("refusal", data={"refusal": "no"}),
        ]
    )
    with pytest.warns(UnsupportedContentWarning, match="'refusal'"):
        rebuilt = from_message(msg)
    assert [type(b).__name__ for b in rebuilt.blocks] == ["TextBlock", "ImageBlock"]
    summary = from_message(Message.tool("r", "c9", name="f"))
    assert summary.additional_kwargs == {"tool_call_id": "c9", "name": "f"}


# ---------------------------------------------------------------------------------------
# memory end to end
# ---------------------------------------------------------------------------------------
async def test_function_agent_long_conversation_stays_valid(tmp_path: Path) -> None:
    """24 agent runs (48 LLM calls) with parallel tool calls and big results stay valid.

    The memory holds the system prompt and leaves ``headroom_tokens`` for the tool round
    FunctionAgent appends outside the memory; every LLM input is within the budget, has
    no orphan result or unanswered call, and starts with the system prompt. The chat store
    keeps every message.
    """
    memory = ContextMemory.from_config(
        write_config(tmp_path, "fifo"), system_prompt=SYSTEM, headroom_tokens=650
    )
    script = await run_agent(memory, turns=24)
    assert len(script.calls) == 48
    for call in script.calls:
        assert_well_formed(call)
    stored = memory.get_all()
    assert len(stored) == 24 * 5  # nothing lost
    assert max(len(c) for c in script.calls) < len(stored)
    report = memory.last_report
    assert report is not None and report.tokens_before > LIMIT


async def test_agent_workflow_uses_memory(tmp_path: Path) -> None:
    """AgentWorkflow(run(..., memory=...)) goes through the same memory."""
    memory = ContextMemory.from_config(
        write_config(tmp_path, "fifo"), system_prompt=SYSTEM, headroom_tokens=650
    )
    script = ScriptedAgentLLM()
    agent = FunctionAgent(
        name="researcher",
        description="researches",
        tools=TOOLS,
        llm=MockFunctionCallingLLM(response_generator=script),
    )
    workflow = AgentWorkflow(agents=[agent])
    for i in range(8):
        await workflow.run(user_msg=f"Turn {i}: topic{i}", memory=memory)
    assert len(memory.get_all()) == 8 * 5
    for call in script.calls:
        assert_well_formed(call)


async def test_config_file_switch_changes_strategy(tmp_path: Path) -> None:
    """Swapping fifo.toml for summary.toml changes what the LLM receives, no code change."""
    received = {}
    for preset in ("fifo", "summary"):
        memory = ContextMemory.from_config(
            write_config(tmp_path, preset),
            system_prompt=SYSTEM,
            headroom_tokens=650,
            summarizer=LlamaIndexSummarizer(FixedSummaryLLM()),
        )
        received[preset] = (await run_agent(memory, turns=12)).calls
        for call in received[preset]:
            assert_well_formed(call)

    def summaries(calls: list[list[ChatMessage]]) -> list[str]:
        return [
            m.content or ""
            for c in calls
            for m in c
            if "SUMMARY: topics seen." in (m.content or "")
        ]

    assert summaries(received["fifo"]) == []
    assert summaries(received["summary"])


def test_simple_chat_engine_with_history(tmp_path: Path) -> None:
    """SimpleChatEngine over a long tool-using history sends the fitted view each call."""
    llm = RecordingLLM(max_tokens=20)
    memory = ContextMemory.from_config(write_config(tmp_path, "fifo"), system_prompt=SYSTEM)
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    for i in range(10):
        memory.put_messages(tool_exchange(i))
        engine.chat(f"what did you find about topic{i}?")
    assert len(llm.calls) == 10
    for call in llm.calls:
        assert_well_formed(call)
    assert len(memory.get_all()) == 10 * 7
    assert llm.calls[-1][-1].content == "what did you find about topic9?"


async def test_state_is_per_session(tmp_path: Path) -> None:
    """Sessions sharing one chat store keep separate histories and ctxmgr states."""
    store = SimpleChatStore()
    first = ContextMemory.from_config(
        write_config(tmp_path, "fifo"),
        chat_store=store,
        session_id="u1",
        system_prompt=SYSTEM,
        headroom_tokens=650,
    )
    second = first.for_session("u2")
    await run_agent(first, turns=4, who="Ann")
    await run_agent(second, turns=2, who="Bob")
    assert sorted(store.get_keys()) == ["u1", "u2"]
    assert len(first.get_all()) == 20 and len(second.get_all()) == 10
    assert first.manager is not second.manager
    assert first.manager.state.turn > second.manager.state.turn
    users = [m.content or "" for m in second.get() if m.role == MessageRole.USER]
    assert users and all(u.startswith("Bob") for u in users)
    first.reset()
    assert first.get_all() == [] and len(second.get_all()) == 10


def test_from_defaults_and_direct_use(tmp_path: Path) -> None:
    """``from_defaults`` takes ``config=`` and an ``llm`` that becomes the summarizer."""
    memory = ContextMemory.from_defaults(
        config=write_config(tmp_path, "summary"), llm=FixedSummaryLLM(), system_prompt=SYSTEM
    )
    assert isinstance(memory.manager.summarizer, LlamaIndexSummarizer)
    for i in range(8):
        memory.put_messages(tool_exchange(i))
    fitted = memory.get()
    assert_well_formed(fitted)
    assert any("SUMMARY" in (m.content or "") for m in fitted)


# ---------------------------------------------------------------------------------------
# summarizer and note tools
# ---------------------------------------------------------------------------------------
async def test_summarizer_sync_and_async() -> None:
    """The summarizer sends the transcript to the LLM and returns the reply text."""
    summarizer = LlamaIndexSummarizer(FixedSummaryLLM())
    evicted = [Message.user("fly to Oslo"), Message.assistant("Booked OS123")]
    assert summarizer.summarize(None, evicted, max_tokens=40) == "SUMMARY: topics seen."
    assert await summarizer.asummarize("old", evicted, max_tokens=40) == "SUMMARY: topics seen."
    prompt = summarizer._messages("old", evicted, 40)[0].content or ""
    assert "Oslo" in prompt and "old" in prompt


async def test_note_tools_write_to_scratchpad() -> None:
    """The four FunctionTools act on the session's scratchpad."""
    memory = ContextMemory.from_config("agent", max_context_tokens=MAX_TOKENS, session_id="s")
    tools = {t.metadata.name: t for t in note_tools(memory)}
    assert sorted(tools) == ["delete_note", "read_notes", "update_note", "write_note"]
    tools["write_note"](key="prefs", facts=["likes aisle seats"])
    await tools["update_note"].acall(key="prefs", facts=["vegetarian"], append=True)
    text = str(tools["read_notes"]())
    assert "aisle" in text and "vegetarian" in text
    assert "aisle" in memory.manager.scratchpad.read()
    assert "aisle" not in memory.for_session("other").manager.scratchpad.read()
    mgr = ContextManager.from_config("agent", max_context_tokens=MAX_TOKENS)
    assert "deleted" not in str(note_tools(mgr)[2](key="nothing"))


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the framework, importing the adapter says which extra to install."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "llama_index.core.base.llms.types", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.llamaindex")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[llamaindex]"')):
        importlib.import_module("ctxmgr.adapters.llamaindex")
