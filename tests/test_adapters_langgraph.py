"""LangGraph prebuilt adapter: ``create_react_agent(pre_model_hook=ContextHook)`` end to end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ctxmgr.testing import bm25_agent_config

pytest.importorskip("langgraph.prebuilt")

from ctxmgr.adapters.langgraph import ContextHook, from_messages, note_tools, to_messages
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent
from pydantic import Field

from ctxmgr.tokens import get_counter

pytestmark = pytest.mark.filterwarnings(
    # create_react_agent is deprecated for langchain.agents.create_agent, still shipped
    "ignore:create_react_agent has been moved:langgraph.warnings.LangGraphDeprecatedSinceV10"
)

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


class ToolCallingFake(GenericFakeChatModel):
    """A fake chat model that records every input and scripts parallel tool calls.

    After a user message it calls ``search`` and ``lookup`` in parallel; after tool
    results it answers in text. ``bind_tools`` returns the model itself.
    """

    messages: Any = Field(default_factory=lambda: iter(()))
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        n = len(self.calls)
        if isinstance(messages[-1], HumanMessage):
            topic = messages[-1].text.split()[-1]
            reply = AIMessage(
                content="",
                tool_calls=[
                    {"name": "search", "args": {"query": topic}, "id": f"call-{n}-a"},
                    {"name": "lookup", "args": {"key": topic}, "id": f"call-{n}-b"},
                ],
            )
        else:
            reply = AIMessage(content=f"Answer {n}: the results agree.")
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def search(query: str) -> str:
    """Search the corpus."""
    return big_result(f"search-{query}")


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return big_result(f"lookup-{key}")


def assert_well_formed(call: Sequence[BaseMessage], latest_user: str) -> None:
    """System prompt first, latest user message present, tool pairs whole, within budget."""
    assert isinstance(call[0], SystemMessage) and call[0].text == SYSTEM
    assert any(isinstance(m, HumanMessage) and m.text == latest_user for m in call)
    asked: set[str] = set()
    answered: set[str] = set()
    for message in call:
        if isinstance(message, AIMessage):
            asked.update(c["id"] for c in message.tool_calls if c["id"])
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in asked, f"orphan tool result {message.tool_call_id}"
            answered.add(message.tool_call_id)
    assert asked == answered, f"calls without results: {asked - answered}"
    tokens = get_counter().count_messages(to_messages(call))
    assert tokens <= LIMIT, f"{tokens} tokens sent, limit {LIMIT}"


def make_agent(hook: ContextHook, **kwargs: Any) -> tuple[ToolCallingFake, Any]:
    model = ToolCallingFake()
    agent = create_react_agent(
        model, [search, lookup], pre_model_hook=hook, checkpointer=InMemorySaver(), **kwargs
    )
    return model, agent


def test_react_agent_thirty_turns_stay_valid() -> None:
    """30 turns, 60 model calls, parallel ~1,500-token results, a 3,000-token window.

    Every call is within the window, has the system prompt and the latest user message, and
    no orphan result or unanswered call; the graph state keeps the whole history.
    """
    hook = ContextHook.from_config(
        AGENT, system_prompt=SYSTEM, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    model, agent = make_agent(hook)
    cfg = {"configurable": {"thread_id": "t1"}}
    for i in range(TURNS):
        before = len(model.calls)
        question = f"Turn {i}: research topic{i}"
        agent.invoke({"messages": [HumanMessage(question)]}, cfg)
        assert len(model.calls) == before + 2
        for call in model.calls[before:]:
            assert_well_formed(call, question)
    state = agent.get_state(cfg).values["messages"]
    assert len(state) == TURNS * 5  # user, calls, 2 results, answer: nothing lost
    assert max(len(c) for c in model.calls) < len(state)
    report = hook.last_reports["t1"]
    assert report.tokens_before > LIMIT >= report.tokens_after


async def test_react_agent_async_and_per_thread() -> None:
    """``ainvoke`` runs the async hook; two threads keep separate ctxmgr state."""
    hook = ContextHook.from_config(
        "fifo", system_prompt=SYSTEM, max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    model, agent = make_agent(hook)
    for i in range(4):
        for thread in ("alpha", "beta"):
            question = f"{thread} turn {i}: {thread}"
            before = len(model.calls)
            cfg = {"configurable": {"thread_id": thread}}
            await agent.ainvoke({"messages": [HumanMessage(question)]}, cfg)
            for call in model.calls[before:]:
                assert_well_formed(call, question)
                users = {m.text.split()[0] for m in call if isinstance(m, HumanMessage)}
                assert users == {thread}
    assert sorted(hook.threads()) == ["alpha", "beta"]
    assert hook.manager_for("alpha") is not hook.manager_for("beta")
    assert hook.manager_for("alpha").state.turn == 8


def test_hook_does_not_mutate_state_and_round_trips() -> None:
    """The hook returns only ``llm_input_messages``; the state's list is untouched."""
    hook = ContextHook.from_config("fifo", system_prompt=SYSTEM, max_context_tokens=MAX_TOKENS)
    history: list[BaseMessage] = [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1")]
    state = {"messages": list(history)}
    out = hook.invoke(state)
    assert set(out) == {"llm_input_messages"}
    assert state["messages"] == history
    assert [m.text for m in out["llm_input_messages"]] == [SYSTEM, "hi", "hello"]
    assert from_messages(to_messages(history)) == history


def test_note_tools_act_on_the_calling_thread() -> None:
    """``note_tools(hook)`` writes to the scratchpad of the thread in the run's config."""
    hook = ContextHook.from_config(AGENT, system_prompt=SYSTEM, max_context_tokens=MAX_TOKENS)
    write, *_rest, read = note_tools(hook)
    write.invoke(
        {"key": "k", "facts": ["fact one"]}, {"configurable": {"thread_id": "notes-thread"}}
    )
    assert "fact one" in str(hook.manager_for("notes-thread").scratchpad.read("k"))
    assert read.invoke({}, {"configurable": {"thread_id": "other"}}) == "(no notes)"


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the framework, importing the adapter says which extra to install."""
    import importlib
    import re
    import sys

    monkeypatch.setitem(sys.modules, "langgraph.prebuilt", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.langgraph")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[langchain]"')):
        importlib.import_module("ctxmgr.adapters.langgraph")
