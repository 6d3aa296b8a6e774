"""LlamaIndex through the real provider clients against the mock provider server.

Same workload and checks as ``test_provider_e2e_langchain.py``: 30 turns, two parallel
1,500-token tool results per turn, a 3,000-token window in the server's own count.
LlamaIndex's OpenAI and Anthropic LLMs are exercised (no Gemini LLM package is installed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("llama_index.llms.openai")

import mockprovider
from ctxmgr.adapters.llamaindex import ContextMemory
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.chat_engine import SimpleChatEngine
from mockprovider import (
    SYSTEM_PROMPT,
    UNCLOSED_CLIENT_SOCKETS,
    MockProvider,
    Reply,
    Turn,
    big_result,
    problems,
    question,
    report_problems,
)

from ctxmgr.config import PRESETS

TURNS = 30
WINDOW = 3000
PROVIDERS = ("openai", "anthropic")

pytestmark = [
    *(pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS),
    # llama-index-workflows inspects agent instances with inspect.getmembers(), which
    # touches pydantic's deprecated instance attributes (as in test_adapters_llamaindex.py)
    pytest.mark.filterwarnings(
        "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance is "
        "deprecated:pydantic.warnings.PydanticDeprecatedSince211"
    ),
]


lookup = mockprovider.lookup
llm_of = mockprovider.llamaindex_llm


@pytest.fixture
def server() -> Any:
    with MockProvider(window=WINDOW) as srv:
        yield srv


async def _run_agent(server: MockProvider, agent: Any, memory: ContextMemory) -> None:
    for n in range(TURNS):
        server.current_user = question(n)
        await agent.run(question(n), memory=memory)


@pytest.mark.parametrize(("provider", "preset"), [(p, s) for p in PROVIDERS for s in PRESETS])
def test_function_agent(server: MockProvider, provider: str, preset: str) -> None:
    """FunctionAgent (streaming, the default) with llm=memory.wrap(llm): 30 tool turns."""
    memory = ContextMemory.from_config(preset, max_context_tokens=WINDOW)
    agent = FunctionAgent(
        tools=[lookup], llm=memory.wrap(llm_of(provider, server)), system_prompt=SYSTEM_PROMPT
    )
    asyncio.run(_run_agent(server, agent, memory))
    assert problems(server, turns=TURNS) == []
    # llama-index's OpenAI LLM streams without usage (no stream_options.include_usage)
    assert report_problems(memory.manager, provider, usage=provider != "openai") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_agent_workflow(server: MockProvider, provider: str) -> None:
    """AgentWorkflow of one FunctionAgent (non-streaming) with the wrapped LLM."""
    memory = ContextMemory.from_config("agent", max_context_tokens=WINDOW)
    agent = FunctionAgent(
        name="desk",
        description="Answers shipping questions.",
        tools=[lookup],
        llm=memory.wrap(llm_of(provider, server)),
        system_prompt=SYSTEM_PROMPT,
        streaming=False,
    )
    workflow = AgentWorkflow(agents=[agent], root_agent="desk")
    asyncio.run(_run_agent(server, workflow, memory))
    assert problems(server, turns=TURNS) == []
    assert report_problems(memory.manager, provider) == []


class _ReActScript:
    """ReAct text protocol: an Action line first, then an Answer after the Observation."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, turns: list[Turn], tool_names: list[str]) -> Reply:
        last = turns[-1].text if turns else ""
        if "Observation:" in last.rsplit("Question", 1)[-1] or "Observation" in turns[-1].role:
            return Reply(text="Thought: I can answer.\nAnswer: Answer.", stop="end")
        self.n += 1
        return Reply(
            text=(
                "Thought: I need the record.\nAction: lookup\n"
                f'Action Input: {{"query": "q{self.n}"}}'
            ),
            stop="end",
        )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_react_agent(provider: str) -> None:
    """ReActAgent (text tool protocol) with the wrapped LLM: the tool round is inside the fit."""
    with MockProvider(window=WINDOW, script=_ReActScript()) as server:
        memory = ContextMemory.from_config("agent", max_context_tokens=WINDOW)
        agent = ReActAgent(
            tools=[lookup], llm=memory.wrap(llm_of(provider, server)), system_prompt=SYSTEM_PROMPT
        )
        asyncio.run(_run_agent(server, agent, memory))
        assert problems(server, turns=TURNS) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_simple_chat_engine(server: MockProvider, provider: str) -> None:
    """SimpleChatEngine with llm=memory.wrap(llm): 30 turns of 600-token user messages.

    (The first user message is pinned as the task: with 1,500-token messages the pinned one
    plus the latest would not fit a 3,000-token window at all.)
    """
    memory = ContextMemory.from_config("agent", max_context_tokens=WINDOW)
    engine = SimpleChatEngine.from_defaults(
        llm=memory.wrap(llm_of(provider, server)), memory=memory, system_prompt=SYSTEM_PROMPT
    )
    for n in range(TURNS):
        server.current_user = question(n)
        engine.chat(f"{question(n)}\n{big_result(f'u{n}', 600)}")
    assert problems(server, turns=TURNS) == []
    assert report_problems(memory.manager, provider, tools=False) == []
