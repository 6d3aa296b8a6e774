"""LangChain adapter: lossless converters and end-to-end runs with LangChain's fake models."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")

from ctxmgr.adapters.langchain import (
    ContextMiddleware,
    ContextRunnable,
    LangChainSummarizer,
    ManagedChatMessageHistory,
    from_message,
    from_messages,
    note_tools,
    to_message,
    to_messages,
)
from langchain.agents import create_agent
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from ctxmgr import ContextManager, Message, ToolCall
from ctxmgr.tokens import get_counter

SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
MAX_TOKENS = 1500
RESERVE = 200
LIMIT = MAX_TOKENS - RESERVE


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
class RecordingModel(GenericFakeChatModel):
    """A fake chat model that records every message list it receives and follows a script.

    After a user message it asks for two tool calls in parallel (unless ``use_tools`` is
    false); after tool results it answers in text. ``bind_tools`` returns itself.
    """

    messages: Any = Field(default_factory=lambda: iter(()))
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    use_tools: bool = True
    note_on_first_call: bool = False

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingModel:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        n = len(self.calls)
        last = messages[-1]
        if isinstance(last, HumanMessage) and self.use_tools:
            topic = last.text.split()[-1]
            calls: list[Any] = [
                {"name": "search", "args": {"query": topic}, "id": f"call-{n}-a"},
                {"name": "lookup", "args": {"key": topic}, "id": f"call-{n}-b"},
            ]
            if n == 1 and self.note_on_first_call:
                note = {"key": "launch", "facts": ["the launch code is 7-ALPHA"]}
                calls.append({"name": "write_note", "args": note, "id": "note-1"})
            reply = AIMessage(content="", tool_calls=calls)
        else:
            reply = AIMessage(content=f"Answer {n}: based on the results, all is well.")
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def search(query: str) -> str:
    """Search the corpus."""
    return f"Results for {query}: " + " ".join(
        f"doc{i} mentions {query} at length" for i in range(40)
    )


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"Record {key}: " + " ".join(f"field{i}=value{i}" for i in range(50))


def summarizer_model() -> GenericFakeChatModel:
    """A fake model for summaries: always the same short summary."""
    return GenericFakeChatModel(messages=_forever("SUMMARY: earlier turns searched topics."))


def _forever(text: str) -> Any:
    while True:
        yield AIMessage(content=text)


def write_config(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / f"{preset}.toml"
    path.write_text(
        f'preset = "{preset}"\nmax_context_tokens = {MAX_TOKENS}\n'
        f"reserve_output_tokens = {RESERVE}\n"
    )
    return path


def assert_well_formed(call: Sequence[BaseMessage]) -> None:
    """Check one model input: system first, tool pairs whole, within the budget."""
    assert isinstance(call[0], SystemMessage) and call[0].text == SYSTEM
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


def run_agent(config: Path | str, turns: int, **kwargs: Any) -> tuple[RecordingModel, Any, Any]:
    model = RecordingModel()
    middleware = ContextMiddleware.from_config(config, **kwargs)
    agent = create_agent(
        model,
        [search, lookup],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "t1"}}
    for i in range(turns):
        agent.invoke({"messages": [HumanMessage(f"Turn {i}: research topic{i}")]}, cfg)
    return model, middleware, agent.get_state(cfg).values["messages"]


# ---------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------
ROUND_TRIP = [
    SystemMessage("sys", id="s1"),
    HumanMessage(
        content=[
            "bare text",
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "annotated", "extras": {"a": 1}},
            {"type": "image", "url": "https://example.org/cat.png", "mime_type": "image/png"},
            {"type": "audio", "base64": "UklGRg==", "mime_type": "audio/wav"},
        ],
        name="bob",
        id="h1",
    ),
    AIMessage(
        content="",
        tool_calls=[
            {"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"},
            {"name": "g", "args": {}, "id": None, "type": "tool_call"},
        ],
        invalid_tool_calls=[
            {"name": "h", "args": "{bad", "id": "c3", "error": "oops", "type": "invalid_tool_call"}
        ],
        usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        response_metadata={"model_name": "x"},
        additional_kwargs={"refusal": None},
        id="a1",
    ),
    ToolMessage("res", tool_call_id="c1", artifact={"raw": [1, 2]}, status="success", name="f"),
    ToolMessage([{"type": "text", "text": "bad args"}], tool_call_id="c3", status="error"),
    AIMessage(content="", additional_kwargs={"function_call": {"name": "old", "arguments": "{}"}}),
    FunctionMessage(content="old result", name="old"),
    ChatMessage(role="critic", content="meh"),
    ChatMessage(role="developer", content="be brief"),
    AIMessageChunk(content="chunk", id="ch1"),
    HumanMessage("same"),
    HumanMessage("same"),
]


def test_round_trip_is_lossless() -> None:
    """Every LangChain message type comes back equal (same class, fields, ids, blocks)."""
    back = from_messages(to_messages(ROUND_TRIP))
    assert len(back) == len(ROUND_TRIP)
    for original, rebuilt in zip(ROUND_TRIP, back, strict=True):
        assert type(rebuilt) is type(original)
        assert rebuilt == original


def test_neutral_view_of_tool_calls_and_parts() -> None:
    """Tool calls, results, names, ids and multimodal parts map onto the neutral fields."""
    neutral = to_messages(ROUND_TRIP)
    assert neutral[0].id == "s1" and neutral[0].role == "system"
    user = neutral[1]
    assert user.name == "bob" and user.id == "h1"
    assert [p.type for p in user.content] == ["text", "image_url", "text", "image", "audio"]
    ai = neutral[2]
    assert [
        (c.id, c.name, json.loads(c.arguments) if c.id == "c1" else c.arguments)
        for c in ai.tool_calls
    ] == [("c1", "f", {"a": 1}), ("lc-a1-1", "g", "{}"), ("c3", "h", "{bad")]
    assert neutral[3].role == "tool" and neutral[3].tool_call_id == "c1" and neutral[3].name == "f"
    assert neutral[4].tool_call_id == "c3"  # answers the invalid call, so it is not an orphan
    assert neutral[5].tool_calls[0].id == neutral[6].tool_call_id  # legacy function pairing
    assert neutral[7].role == "user" and neutral[8].role == "system"
    assert neutral[10].id != neutral[11].id  # repeated messages get distinct ids


def test_changed_message_keeps_class_and_extras() -> None:
    """A message ctxmgr edited (e.g. a cleared tool result) keeps its LangChain identity."""
    original = ToolMessage("x" * 500, tool_call_id="c9", artifact=[1], status="success", id="t9")
    cleared = to_message(original).evolve(content="[cleared]")
    rebuilt = from_message(cleared)
    assert isinstance(rebuilt, ToolMessage)
    assert (rebuilt.content, rebuilt.tool_call_id, rebuilt.id, rebuilt.artifact) == (
        "[cleared]",
        "c9",
        "t9",
        [1],
    )


def test_foreign_message_maps_by_role_with_marker() -> None:
    """An injected ctxmgr message becomes a plain LangChain message with its marker."""
    summary = Message.system("Summary so far", metadata={"ctxmgr": "summary"})
    rebuilt = from_message(summary)
    assert isinstance(rebuilt, SystemMessage)
    assert rebuilt.response_metadata == {"ctxmgr": "summary"}
    assert to_message(rebuilt).metadata["ctxmgr"] == "summary"
    call = from_message(Message.assistant("", [ToolCall("c1", "f", '{"x": 2}')]))
    assert isinstance(call, AIMessage) and call.tool_calls[0]["args"] == {"x": 2}


# ---------------------------------------------------------------------------------------
# agent middleware
# ---------------------------------------------------------------------------------------
def test_agent_long_conversation_stays_valid(tmp_path: Path) -> None:
    """48 model calls with parallel tool calls and big results: every request is valid.

    No orphan tool result, no call without its result, never above the budget, the system
    prompt always first; the graph state keeps the whole history.
    """
    model, middleware, state = run_agent(write_config(tmp_path, "fifo"), turns=24)
    assert len(model.calls) == 48
    for call in model.calls:
        assert_well_formed(call)
    assert len(state) == 24 * 5  # nothing lost from the graph state
    assert max(len(c) for c in model.calls) < len(state)  # but the model saw less
    report = middleware.last_reports["t1"]
    assert report.tokens_before > LIMIT >= report.tokens_after


def test_config_file_switch_changes_strategy(tmp_path: Path) -> None:
    """Swapping fifo.toml for summary.toml changes what the model receives, no code change."""
    fifo_model, _, _ = run_agent(
        write_config(tmp_path, "fifo"), turns=12, summarizer=LangChainSummarizer(summarizer_model())
    )
    sum_model, _, _ = run_agent(
        write_config(tmp_path, "summary"),
        turns=12,
        summarizer=LangChainSummarizer(summarizer_model()),
    )

    def summaries(model: RecordingModel) -> list[BaseMessage]:
        return [
            m
            for call in model.calls
            for m in call
            if m.response_metadata.get("ctxmgr") == "summary"
        ]

    assert summaries(fifo_model) == []
    found = summaries(sum_model)
    assert found and "SUMMARY: earlier turns" in found[-1].text
    for call in sum_model.calls:
        assert_well_formed(call)


def test_state_is_per_thread(tmp_path: Path) -> None:
    """Two threads interleaved: each has its own manager and sees only its own history."""
    model = RecordingModel()
    middleware = ContextMiddleware.from_config(write_config(tmp_path, "fifo"))
    agent = create_agent(
        model,
        [search, lookup],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    for i in range(6):
        for thread in ("alpha", "beta"):
            cfg = {"configurable": {"thread_id": thread}}
            agent.invoke({"messages": [HumanMessage(f"{thread} turn {i}: topic{thread}")]}, cfg)
    assert sorted(middleware.threads()) == ["alpha", "beta"]
    alpha, beta = middleware.manager_for("alpha"), middleware.manager_for("beta")
    assert alpha is not beta and alpha is not middleware.manager
    assert alpha.state.turn == beta.state.turn == 12  # two model calls per turn
    for call in model.calls:
        assert_well_formed(call)
        users = {m.text.split()[0] for m in call if isinstance(m, HumanMessage)}
        assert len(users) == 1  # never a mix of threads


async def test_agent_async_path(tmp_path: Path) -> None:
    """``ainvoke`` goes through ``awrap_model_call`` and the async summarizer."""
    model = RecordingModel()
    middleware = ContextMiddleware.from_config(
        write_config(tmp_path, "summary"), summarizer=LangChainSummarizer(summarizer_model())
    )
    agent = create_agent(
        model,
        [search, lookup],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "async"}}
    for i in range(10):
        await agent.ainvoke({"messages": [HumanMessage(f"Turn {i}: topic{i}")]}, cfg)
    assert len(model.calls) == 20
    for call in model.calls:
        assert_well_formed(call)
    assert (
        middleware.manager_for("async").state.summary == "SUMMARY: earlier turns searched topics."
    )


# ---------------------------------------------------------------------------------------
# LCEL runnable and chat history
# ---------------------------------------------------------------------------------------
def tool_exchange(i: int) -> list[BaseMessage]:
    """One user turn with two parallel tool calls and big results."""
    return [
        HumanMessage(f"question {i} about topic{i}"),
        AIMessage(
            content="",
            tool_calls=[
                {"name": "search", "args": {"query": f"t{i}"}, "id": f"r{i}a"},
                {"name": "lookup", "args": {"key": f"t{i}"}, "id": f"r{i}b"},
            ],
        ),
        ToolMessage(search.invoke({"query": f"t{i}"}), tool_call_id=f"r{i}a"),
        ToolMessage(lookup.invoke({"key": f"t{i}"}), tool_call_id=f"r{i}b"),
        AIMessage(f"answer {i}"),
    ]


def test_lcel_runnable_fits_prompt(tmp_path: Path) -> None:
    """``prompt | ContextRunnable | model``: the model gets a fitted ChatPromptValue."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    fitter = ContextRunnable.from_config(write_config(tmp_path, "fifo"))
    model = RecordingModel()
    chain = prompt | fitter | model
    history: list[BaseMessage] = []
    cfg = {"configurable": {"thread_id": "lcel"}}
    for i in range(12):
        value = (prompt | fitter).invoke({"history": history, "question": f"q{i}"}, cfg)
        assert isinstance(value, ChatPromptValue)
        chain.invoke({"history": history, "question": f"q{i}"}, cfg)
        history.extend(tool_exchange(i))
    for call in model.calls:
        assert_well_formed(call)
    assert len(model.calls[-1]) < len(history)
    as_list = fitter.invoke(prompt.invoke({"history": history, "question": "x"}).to_messages(), cfg)
    assert isinstance(as_list, list) and isinstance(as_list[0], SystemMessage)


# langchain-core 1.6.4+ deprecates RunnableWithMessageHistory and InMemoryChatMessageHistory
# (in favour of LangGraph persistence) but still ships them; the history adapter exists for
# apps that use them. Only these two deprecation warnings are ignored.
@pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated"
    ":langchain_core._api.deprecation.LangChainDeprecationWarning"
)
@pytest.mark.filterwarnings(
    "ignore:The class `InMemoryChatMessageHistory` was deprecated"
    ":langchain_core._api.deprecation.LangChainDeprecationWarning"
)
def test_managed_history_keeps_all_and_returns_fitted(tmp_path: Path) -> None:
    """``RunnableWithMessageHistory`` stores everything; the chain sees the fitted view."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    model = RecordingModel(use_tools=False)
    get_history = ManagedChatMessageHistory.session_factory(write_config(tmp_path, "fifo"))
    chain = RunnableWithMessageHistory(
        prompt | model, get_history, input_messages_key="question", history_messages_key="history"
    )
    for i in range(8):
        hist = get_history("s1")
        hist.add_messages(tool_exchange(i))
        chain.invoke({"question": f"q{i}"}, {"configurable": {"session_id": "s1"}})
    hist = get_history("s1")
    assert len(hist.all_messages) == 8 * 5 + 8 * 2  # every exchange plus each question/answer
    fitted = hist.messages
    assert len(fitted) < len(hist.all_messages)
    assert get_counter().count_messages(to_messages(fitted)) <= LIMIT
    assert hist.last_report is not None and hist.last_report.tokens_before > LIMIT
    assert not hist.last_report.repairs
    for call in model.calls:  # the model got the fitted history between prompt and question
        assert isinstance(call[0], SystemMessage) and len(call) <= len(fitted) + 2
    assert get_history("s2") is not hist and get_history("s2").messages == []
    inner = InMemoryChatMessageHistory()
    managed = ManagedChatMessageHistory.from_config(write_config(tmp_path, "fifo"), inner)
    managed.add_messages(tool_exchange(0))
    assert inner.messages == managed.all_messages and len(inner.messages) == 5
    managed.clear()
    assert inner.messages == []


# ---------------------------------------------------------------------------------------
# summarizer and note tools
# ---------------------------------------------------------------------------------------
async def test_summarizer_sync_and_async() -> None:
    """The summarizer prompts the model with the transcript and returns its text."""
    model = GenericFakeChatModel(messages=iter(["short summary", "async summary"]))
    summarizer = LangChainSummarizer(model)
    evicted = [Message.user("book a flight to Oslo"), Message.assistant("Booked flight OS123")]
    assert summarizer.summarize("earlier", evicted, max_tokens=50) == "short summary"
    assert await summarizer.asummarize(None, evicted, max_tokens=50) == "async summary"
    prompt = summarizer._messages("earlier", evicted, 50)[0].text
    assert "Oslo" in prompt and "earlier" in prompt and "50" in prompt


def test_note_tools_write_to_scratchpad() -> None:
    """The four note tools act on the manager's scratchpad."""
    mgr = ContextManager.from_config("agent", max_context_tokens=MAX_TOKENS)
    tools = {t.name: t for t in note_tools(mgr)}
    assert sorted(tools) == ["delete_note", "read_notes", "update_note", "write_note"]
    tools["write_note"].invoke({"key": "prefs", "facts": ["likes aisle seats"]})
    tools["update_note"].invoke({"key": "prefs", "facts": ["vegetarian"], "append": True})
    text = tools["read_notes"].invoke({})
    assert "aisle" in text and "vegetarian" in text
    assert "deleted" in tools["delete_note"].invoke({"key": "prefs"})
    assert "aisle" not in mgr.scratchpad.read()


def test_note_tools_follow_the_thread() -> None:
    """Bound to the middleware, note tools write to the calling thread's scratchpad."""
    middleware = ContextMiddleware.from_config("agent", max_context_tokens=MAX_TOKENS)
    write = {t.name: t for t in middleware.note_tools()}["write_note"]
    write.invoke({"key": "k", "facts": ["alpha fact"]}, {"configurable": {"thread_id": "a"}})
    assert "alpha fact" in middleware.manager_for("a").scratchpad.read()
    assert "alpha fact" not in middleware.manager_for("b").scratchpad.read()


def test_agent_registers_note_tools_and_sees_notes(tmp_path: Path) -> None:
    """With ``register_note_tools`` the agent can write notes; later requests carry them."""
    model = RecordingModel(note_on_first_call=True)
    middleware = ContextMiddleware.from_config(
        "agent",
        max_context_tokens=MAX_TOKENS,
        reserve_output_tokens=RESERVE,
        summarizer=LangChainSummarizer(summarizer_model()),
        register_note_tools=True,
    )
    assert {t.name for t in middleware.tools} >= {"write_note", "read_notes"}
    agent = create_agent(
        model,
        [search, lookup],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    cfg: Any = {"configurable": {"thread_id": "notes"}}
    for i in range(10):
        agent.invoke({"messages": [HumanMessage(f"Turn {i}: topic{i}")]}, cfg)
    assert "7-ALPHA" in middleware.manager_for("notes").scratchpad.read()
    assert middleware.manager_for("other").scratchpad.read().count("7-ALPHA") == 0
    notes = [m for m in model.calls[-1] if m.response_metadata.get("ctxmgr") == "notes"]
    assert notes and "7-ALPHA" in notes[0].text
    for call in model.calls:
        assert_well_formed(call)


def test_note_tools_need_a_scratchpad() -> None:
    """Without the scratchpad strategy the error names the fix."""
    from ctxmgr.errors import ConfigError

    with pytest.raises(ConfigError, match="scratchpad"):
        note_tools(ContextManager.from_config("fifo", max_context_tokens=MAX_TOKENS))


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the framework, importing the adapter says which extra to install."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "langchain.agents.middleware", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.langchain")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[langchain]"')):
        importlib.import_module("ctxmgr.adapters.langchain")
