"""LangChain through the real provider clients against the mock provider server.

Every run: 30 turns, each answered with two parallel tool calls whose results are 1,500
tokens each, in a 3,000-token window (the server's own count; x1.2 for Anthropic and
Gemini). A run passes when the server rejected nothing, no request was over the window,
and every request held the system prompt and the current question
(:func:`mockprovider.problems`).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_openai")

import mockprovider
from ctxmgr.adapters.langchain import (
    ContextMiddleware,
    ContextRunnable,
)
from langchain.agents import create_agent
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool
from mockprovider import (
    SYSTEM_PROMPT,
    UNCLOSED_CLIENT_SOCKETS,
    MockProvider,
    problems,
    question,
    report_problems,
)

from ctxmgr.config import PRESETS

TURNS = 30
WINDOW = 3000
PROVIDERS = ("openai", "responses", "anthropic", "gemini")

pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS]


lookup = tool(mockprovider.lookup)
chat_model = mockprovider.langchain_model


@pytest.fixture
def server() -> Any:
    with MockProvider(window=WINDOW) as srv:
        yield srv


def _matrix() -> list[Any]:
    """Every preset on each provider."""
    return [(p, preset) for p in PROVIDERS for preset in PRESETS]


@pytest.mark.parametrize(("provider", "preset"), _matrix())
def test_create_agent(server: MockProvider, provider: str, preset: str) -> None:
    """create_agent + ContextMiddleware: 30 tool turns, nothing rejected or over the window."""
    middleware = ContextMiddleware.from_config(preset, max_context_tokens=WINDOW)
    agent = create_agent(
        chat_model(provider, server), [lookup], system_prompt=SYSTEM_PROMPT, middleware=[middleware]
    )
    messages: list[BaseMessage] = []
    for n in range(TURNS):
        server.current_user = question(n)
        out = agent.invoke({"messages": [*messages, HumanMessage(question(n))]})
        messages = out["messages"]
    assert problems(server, turns=TURNS) == []
    assert report_problems(middleware.manager_for("default"), provider) == []


def _tool_round(reply: AIMessage) -> list[ToolMessage]:
    return [ToolMessage(lookup.invoke(c["args"]), tool_call_id=c["id"]) for c in reply.tool_calls]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_lcel(server: MockProvider, provider: str) -> None:
    """Prompt | ContextRunnable(model=...): the runnable fits and calls the bound model."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM_PROMPT), MessagesPlaceholder("history")]
    )
    model = chat_model(provider, server).bind_tools([lookup])
    runnable = ContextRunnable.from_config("agent", model=model, max_context_tokens=WINDOW)
    chain = prompt | runnable
    history: list[BaseMessage] = []
    for n in range(TURNS):
        server.current_user = question(n)
        history.append(HumanMessage(question(n)))
        for _ in range(3):
            reply = chain.invoke({"history": history})
            assert isinstance(reply, AIMessage)
            history.append(reply)
            if not reply.tool_calls:
                break
            history.extend(_tool_round(reply))
    assert problems(server, turns=TURNS) == []
    assert report_problems(runnable.manager_for("default"), provider) == []


class _History(BaseChatMessageHistory):
    """A plain list history (LangChain's in-memory one warns as deprecated)."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []

    def add_messages(self, messages: Any) -> None:
        self.messages.extend(messages)

    def clear(self) -> None:
        self.messages = []


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_runnable_with_message_history(server: MockProvider, provider: str) -> None:
    """RunnableWithMessageHistory around prompt | ContextRunnable(model=...), tool loop."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM_PROMPT), MessagesPlaceholder("history"), MessagesPlaceholder("input")]
    )
    model = chat_model(provider, server).bind_tools([lookup])
    sessions: dict[str, _History] = {}
    runnable = ContextRunnable.from_config("agent", model=model, max_context_tokens=WINDOW)
    chain = RunnableWithMessageHistory(
        prompt | runnable,
        lambda sid: sessions.setdefault(sid, _History()),
        input_messages_key="input",
        history_messages_key="history",
    )
    config: Any = {"configurable": {"session_id": "s1"}}
    for n in range(TURNS):
        server.current_user = question(n)
        turn_input: list[BaseMessage] = [HumanMessage(question(n))]
        for _ in range(3):
            reply = chain.invoke({"input": turn_input}, config)
            if not reply.tool_calls:
                break
            turn_input = list(_tool_round(reply))
    assert problems(server, turns=TURNS) == []
    assert report_problems(runnable.manager_for("s1"), provider) == []
