"""AutoGen through the real model clients against the mock provider server.

Same workload and checks as ``test_provider_e2e_langchain.py``: 30 turns, two parallel
1,500-token tool results per turn, a 3,000-token window in the server's own count, with
autogen-ext's OpenAI and Anthropic clients and the agent's own default system message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("autogen_ext.models.openai")

import mockprovider
from autogen_agentchat.agents import AssistantAgent
from ctxmgr.adapters.autogen import ContextManagerContext
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
PROVIDERS = ("openai", "anthropic")

pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS]


lookup = mockprovider.alookup
client_of = mockprovider.autogen_client


@pytest.fixture
def server() -> Any:
    with MockProvider(window=WINDOW) as srv:
        yield srv


async def _run(
    server: MockProvider, provider: str, preset: str, **agent_kwargs: Any
) -> ContextManagerContext:
    context = ContextManagerContext.from_config(preset, max_context_tokens=WINDOW)
    agent = AssistantAgent(
        "desk",
        context.wrap(client_of(provider, server)),
        tools=[lookup],
        model_context=context,
        **agent_kwargs,
    )
    for n in range(TURNS):
        server.current_user = question(n)
        await agent.run(task=question(n))
    return context


@pytest.mark.parametrize(("provider", "preset"), [(p, s) for p in PROVIDERS for s in PRESETS])
def test_assistant_agent(server: MockProvider, provider: str, preset: str) -> None:
    """AssistantAgent with its own system message, context.wrap(client): 30 tool turns."""
    context = asyncio.run(_run(server, provider, preset, system_message=SYSTEM_PROMPT))
    assert problems(server, turns=TURNS) == []
    assert report_problems(context.manager, provider) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_default_system_message_is_counted(server: MockProvider, provider: str) -> None:
    """The agent's default system message is inside the fit (pinned and counted)."""
    context = ContextManagerContext.from_config("agent", max_context_tokens=WINDOW)
    agent = AssistantAgent("desk", context.wrap(client_of(provider, server)), model_context=context)
    asyncio.run(agent.run(task="hello"))
    report = context.last_report
    assert report is not None
    assert "helpful AI assistant" in server.requests[-1].system
    assert report.tokens_after >= 20  # the ~25-token default system message is counted
