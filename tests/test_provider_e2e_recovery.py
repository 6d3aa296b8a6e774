"""Reactive recovery: the provider answers context-length-exceeded, the adapter refits once.

The server answers one mid-run request (the 5th, in the third turn) with the provider's
own context-length error claiming one token over its 3,000-token window: the adapter refits
with the provider's numbers and retries, the FitReport says ``recovered``, and every later
request fits. When the retry is refused too, ``ContextOverflowError`` carries the
provider's numbers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_openai")

from ctxmgr.adapters.langchain import ContextMiddleware
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool
from mockprovider import (
    SYSTEM_PROMPT,
    UNCLOSED_CLIENT_SOCKETS,
    MockProvider,
    Reply,
    alookup,
    autogen_client,
    langchain_model,
    llamaindex_llm,
    problems,
    question,
)
from mockprovider import lookup as plain_lookup

from ctxmgr.errors import ContextOverflowError
from ctxmgr.report import FitReport

pytestmark = [
    *(pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS),
    pytest.mark.filterwarnings(
        "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance is "
        "deprecated:pydantic.warnings.PydanticDeprecatedSince211"
    ),
]

TURNS = 8
TOLD = 3000  # the window, for the adapter and the server
SERVED = TOLD
FORCED = 5  # the request answered with the context-length error
SYSTEM = SYSTEM_PROMPT
lookup = tool(plain_lookup)


def _recovered_once(server: MockProvider, reports: list[FitReport]) -> None:
    """Exactly one refusal (a context-length one), one recovered fit naming it, then clean."""
    refused = server.rejected
    assert [server.requests.index(r) + 1 for r in refused] == [FORCED], [r.error for r in refused]
    recovered = [r for r in reports if r.recovered]
    assert len(recovered) == 1
    assert str(refused[0].error)[:30] in recovered[0].reason
    after = server.requests[server.requests.index(refused[0]) + 1 :]
    assert after and all(r.status == 200 and r.tokens <= SERVED for r in after)


def _lc_agent(server: MockProvider, provider: str, reports: list[FitReport]) -> Any:
    middleware = ContextMiddleware.from_config(
        "agent", max_context_tokens=TOLD, on_fit=lambda _key, report: reports.append(report)
    )
    return create_agent(
        langchain_model(provider, server), [lookup], system_prompt=SYSTEM, middleware=[middleware]
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_langchain_middleware_recovers(provider: str) -> None:
    """create_agent: one provider refusal, recovered by a refit, reported as ``recovered``."""
    reports: list[FitReport] = []
    with MockProvider(window=SERVED) as server:
        server.overflow_at = {FORCED}
        agent = _lc_agent(server, provider, reports)
        messages: list[BaseMessage] = []
        for n in range(TURNS):
            server.current_user = question(n)
            messages = agent.invoke({"messages": [*messages, HumanMessage(question(n))]})[
                "messages"
            ]
        _recovered_once(server, reports)


def test_langchain_second_refusal_raises_with_provider_numbers() -> None:
    """The retry refused too: ContextOverflowError with the provider's tokens and limit."""
    with MockProvider(window=TOLD) as server:
        agent = _lc_agent(server, "anthropic", [])
        state = agent.invoke({"messages": [HumanMessage(question(0))]})
        sent = len(server.requests)
        server.overflow_at = {sent + 1, sent + 2}
        with pytest.raises(ContextOverflowError) as info:
            agent.invoke({"messages": [*state["messages"], HumanMessage(question(1))]})
        assert len(server.requests) == sent + 2  # the request and its one retry
        assert info.value.provider_limit == TOLD
        assert info.value.provider_tokens == max(server.requests[-1].tokens, TOLD + 1)
        assert "prompt is too long" in str(info.value)


def test_llamaindex_wrapper_recovers() -> None:
    """FunctionAgent with memory.wrap(llm): one refusal in a streamed call, recovered."""
    from ctxmgr.adapters.llamaindex import ContextMemory
    from llama_index.core.agent.workflow import FunctionAgent

    reports: list[FitReport] = []
    with MockProvider(window=SERVED) as server:
        server.overflow_at = {FORCED}
        memory = ContextMemory.from_config(
            "agent", max_context_tokens=TOLD, on_fit=lambda _key, report: reports.append(report)
        )
        agent = FunctionAgent(
            tools=[plain_lookup],
            llm=memory.wrap(llamaindex_llm("openai", server)),
            system_prompt=SYSTEM,
        )

        async def run() -> None:
            for n in range(TURNS):
                server.current_user = question(n)
                await agent.run(question(n), memory=memory)

        asyncio.run(run())
        _recovered_once(server, reports)
        assert problems(server, turns=TURNS)[1:] == []  # only the one refusal


def test_autogen_wrapper_recovers() -> None:
    """AssistantAgent with context.wrap(client): one refusal, recovered."""
    from autogen_agentchat.agents import AssistantAgent
    from ctxmgr.adapters.autogen import ContextManagerContext

    reports: list[FitReport] = []
    with MockProvider(window=SERVED) as server:
        server.overflow_at = {FORCED}
        context = ContextManagerContext.from_config(
            "agent", max_context_tokens=TOLD, on_fit=reports.append
        )
        agent = AssistantAgent(
            "desk",
            context.wrap(autogen_client("anthropic", server)),
            tools=[alookup],
            model_context=context,
            system_message=SYSTEM,
        )

        async def run() -> None:
            for n in range(TURNS):
                server.current_user = question(n)
                await agent.run(task=question(n))

        asyncio.run(run())
        _recovered_once(server, reports)


def _cut_first(turns: Any, tools: Any) -> Reply:
    """Every reply is a text; the first is cut for length."""
    _cut_first.calls += 1  # type: ignore[attr-defined]
    return Reply(text="Partial answer", stop="length" if _cut_first.calls == 1 else "end")  # type: ignore[attr-defined]


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "autogen"])
def test_reply_cut_for_length_grows_the_reserve(framework: str) -> None:
    """A reply cut for length grows the reply reserve of the next fit, reported.

    Anthropic's ``stop_reason == "max_tokens"`` (LangChain) and OpenAI's
    ``finish_reason == "length"`` (LlamaIndex raw response, AutoGen ``CreateResult``).
    """
    _cut_first.calls = 0  # type: ignore[attr-defined]
    reports: list[FitReport] = []
    with MockProvider(window=TOLD, script=_cut_first) as server:
        if framework == "langchain":
            from ctxmgr.adapters.langchain import ContextRunnable

            runnable = ContextRunnable.from_config(
                "agent",
                model=langchain_model("anthropic", server),
                max_context_tokens=TOLD,
                on_fit=lambda _key, report: reports.append(report),
            )
            for n in range(2):
                runnable.invoke([("system", SYSTEM), ("user", question(n))])
        elif framework == "llamaindex":
            from ctxmgr.adapters.llamaindex import ContextMemory
            from llama_index.core.chat_engine import SimpleChatEngine

            memory = ContextMemory.from_config(
                "agent", max_context_tokens=TOLD, on_fit=lambda _key, r: reports.append(r)
            )
            engine = SimpleChatEngine.from_defaults(
                llm=memory.wrap(llamaindex_llm("openai", server)), memory=memory
            )
            for n in range(2):
                engine.chat(question(n))
        else:
            from autogen_agentchat.agents import AssistantAgent
            from ctxmgr.adapters.autogen import ContextManagerContext

            context = ContextManagerContext.from_config(
                "agent", max_context_tokens=TOLD, on_fit=reports.append
            )
            agent = AssistantAgent(
                "desk", context.wrap(autogen_client("openai", server)), model_context=context
            )

            async def run() -> None:
                for n in range(2):
                    await agent.run(task=question(n))

            asyncio.run(run())
    assert len(reports) == 2
    assert reports[1].reserve_tokens > reports[0].reserve_tokens
    assert reports[1].notes
