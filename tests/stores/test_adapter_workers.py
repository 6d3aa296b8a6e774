"""Two adapter instances ("workers") on one SQLite store continue one conversation.

For the LangGraph, OpenAI Agents SDK, pydantic-ai and AG2 adapters: the real framework
runs a scripted conversation whose turns alternate between two adapter instances built
with ``store=`` (as two stateless processes behind a load balancer would), and again on
one in-memory instance. Every model call receives the same messages, and the stored
conversation ends with the reference's running summary and archive.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ctxmgr import ContextManager, Message
from ctxmgr.stores.session import StoredContextManager
from ctxmgr.testing import bm25_agent_config

WINDOW: dict[str, Any] = {"max_context_tokens": 3000, "reserve_output_tokens": 300}
# The agent preset with BM25-only relevance (WordLlama costs time and changes nothing here).
AGENT: dict[str, Any] = bm25_agent_config()
SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
TURNS = 8


def big_result(tag: str) -> str:
    """About 1,500 tokens of tool output."""
    return f"Result {tag}: " + " ".join(f"{tag}-w{i}" for i in range(500))


def content(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """What a model call received, by role and content fingerprint (ids are per run)."""
    return [(m.role, m.fingerprint) for m in messages]


def assert_same_conversation(
    worker: StoredContextManager, reference: ContextManager, fits: int
) -> None:
    """The stored conversation has every fit, the reference's summary and archive."""
    worker.refresh()
    assert worker.store.version(worker.conversation_id) == fits
    assert reference.state.summary and worker.state.summary == reference.state.summary
    archived = {m.message.fingerprint for m in reference.state.archive}
    assert archived and {m.message.fingerprint for m in worker.state.archive} == archived


# -- LangGraph ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_langgraph_workers_share_one_thread(tmp_path: Path) -> None:
    """Two react agents (one checkpointer, one thread) with a ContextHook each."""
    pytest.importorskip("langgraph.prebuilt")
    from ctxmgr.adapters.langgraph import ContextHook, to_messages
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.prebuilt import create_react_agent
    from pydantic import Field

    class Fake(GenericFakeChatModel):
        """Parallel tool calls after a question, an answer after results; records calls."""

        messages: Any = Field(default_factory=lambda: iter(()))
        calls: list[list[BaseMessage]] = Field(default_factory=list)

        def bind_tools(self, tools: Any, **kwargs: Any) -> Fake:  # type: ignore[override]
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

    def run(hooks: list[ContextHook]) -> Fake:
        model, saver = Fake(), InMemorySaver()  # one model, one checkpointer database
        graphs = [
            create_react_agent(model, [search, lookup], pre_model_hook=h, checkpointer=saver)
            for h in hooks
        ]
        cfg: Any = {"configurable": {"thread_id": "t"}}
        for i in range(TURNS):
            graphs[i % len(graphs)].invoke({"messages": [HumanMessage(f"Turn {i}: topic{i}")]}, cfg)
        return model

    url = f"sqlite:///{tmp_path}/lg.db"
    reference = ContextHook.from_config(AGENT, system_prompt=SYSTEM, **WINDOW)
    expected = run([reference])
    workers = [
        ContextHook.from_config(AGENT, system_prompt=SYSTEM, store=url, **WINDOW) for _ in "ab"
    ]
    got = run(workers)
    assert [content(to_messages(c)) for c in got.calls] == [
        content(to_messages(c)) for c in expected.calls
    ]
    shared = workers[1].manager_for("t")
    assert isinstance(shared, StoredContextManager)
    assert_same_conversation(shared, reference.manager_for("t"), len(expected.calls))


# -- OpenAI Agents SDK --------------------------------------------------------------------------


async def test_openai_agents_filters_share_one_conversation(tmp_path: Path) -> None:
    """Two ``ContextFilter`` workers, one SDK session, alternating runs."""
    pytest.importorskip("agents")
    from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from ctxmgr.adapters.openai_agents import ContextFilter, to_messages
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )

    class Scripted(Model):
        """Parallel tool calls after a question, an answer after results; records inputs."""

        def __init__(self) -> None:
            self.calls: list[Any] = []

        async def get_response(
            self, system_instructions: str | None, input: Any, *args: Any, **kwargs: Any
        ) -> ModelResponse:
            self.calls.append(copy.deepcopy(input))
            n = len(self.calls)
            if input[-1].get("type") == "function_call_output":
                text = ResponseOutputText(
                    text=f"Answer {n}: the results agree.", type="output_text", annotations=[]
                )
                output: list[Any] = [
                    ResponseOutputMessage(
                        id=f"msg-{n}",
                        type="message",
                        role="assistant",
                        status="completed",
                        content=[text],
                    )
                ]
            else:
                topic = str(input[-1]["content"]).split()[-1]
                output = [
                    ResponseFunctionToolCall(
                        id=f"call-{n}-{name}",
                        call_id=f"call-{n}-{name}",
                        type="function_call",
                        name=name,
                        arguments=json.dumps({arg: topic}),
                    )
                    for name, arg in (("search", "query"), ("lookup", "key"))
                ]
            return ModelResponse(output=output, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    @function_tool
    def search(query: str) -> str:
        """Search the corpus."""
        return big_result(f"search-{query}")

    @function_tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return big_result(f"lookup-{key}")

    async def run(filters: list[ContextFilter]) -> Scripted:
        model = Scripted()
        agent = Agent(name="r", instructions=SYSTEM, model=model, tools=[search, lookup])
        session = SQLiteSession("t")  # the SDK's own item store, shared by the workers
        for i in range(TURNS):
            config = RunConfig(call_model_input_filter=filters[i % len(filters)])
            config.tracing_disabled = True
            await Runner.run(
                agent, f"Turn {i}: topic{i}", session=session, run_config=config,
                context={"thread_id": "t"},
            )  # fmt: skip
        session.close()
        return model

    url = f"sqlite:///{tmp_path}/oa.db"
    reference = ContextFilter.from_config(AGENT, **WINDOW)
    expected = await run([reference])
    workers = [ContextFilter.from_config(AGENT, store=url, **WINDOW) for _ in "ab"]
    got = await run(workers)
    assert [content(to_messages(c)) for c in got.calls] == [
        content(to_messages(c)) for c in expected.calls
    ]
    shared = workers[0].manager_for("t")
    assert isinstance(shared, StoredContextManager)
    assert_same_conversation(shared, reference.manager_for("t"), len(expected.calls))


# -- pydantic-ai --------------------------------------------------------------------------------


async def test_pydantic_ai_processors_share_one_conversation(tmp_path: Path) -> None:
    """Two agents with a ``ContextProcessor`` capability each, one ``conversation_id``."""
    pytest.importorskip("pydantic_ai")
    from ctxmgr.adapters.pydantic_ai import ContextProcessor, to_messages
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    calls: list[list[ModelMessage]] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(list(messages))
        n = len(calls)
        if any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
            return ModelResponse(parts=[TextPart(f"Answer {n}: the results agree.")])
        asks = [p for m in messages for p in m.parts if isinstance(p, UserPromptPart)]
        topic = str([p for p in asks if str(p.content).startswith("Turn")][-1].content).split()[-1]
        return ModelResponse(
            parts=[
                ToolCallPart("search", {"query": topic}, tool_call_id=f"c{n}a"),
                ToolCallPart("lookup", {"key": topic}, tool_call_id=f"c{n}b"),
            ]
        )

    def agent_for(processor: ContextProcessor) -> Agent[None, str]:
        agent: Agent[None, str] = Agent(
            FunctionModel(script), capabilities=[processor.capability()], system_prompt=SYSTEM
        )

        @agent.tool_plain
        def search(query: str) -> str:
            """Search the corpus."""
            return big_result(f"search-{query}")

        @agent.tool_plain
        def lookup(key: str) -> str:
            """Look a key up."""
            return big_result(f"lookup-{key}")

        return agent

    async def run(processors: list[ContextProcessor]) -> list[list[Message]]:
        calls.clear()
        agents = [agent_for(p) for p in processors]
        history: list[ModelMessage] | None = None
        for i in range(TURNS):
            result = await agents[i % len(agents)].run(
                f"Turn {i}: topic{i}", message_history=history, conversation_id="conv"
            )
            history = result.all_messages()
        return [to_messages(c) for c in calls]

    url = f"sqlite:///{tmp_path}/pa.db"
    reference = ContextProcessor.from_config(AGENT, provider="anthropic", **WINDOW)
    expected = await run([reference])
    workers = [
        ContextProcessor.from_config(AGENT, provider="anthropic", store=url, **WINDOW) for _ in "ab"
    ]
    got = await run(workers)
    assert [content(c) for c in got] == [content(c) for c in expected]
    shared = workers[1].manager_for("conv")
    assert isinstance(shared, StoredContextManager)
    assert_same_conversation(shared, reference.manager_for("conv"), len(expected))


# -- AG2 ----------------------------------------------------------------------------------------


def test_ag2_transforms_share_one_conversation(tmp_path: Path) -> None:
    """Two ``ContextTransform`` workers fit one AG2 chat (keyed by its first message).

    AG2 keeps the chat in the agent's ``chat_messages``; ``TransformMessages`` calls
    ``apply_transform`` with all of it before each model call, as done here turn by turn.
    """
    pytest.importorskip("autogen.agentchat.contrib.capabilities.transform_messages")
    from ctxmgr.adapters.ag2 import ContextTransform, from_messages, to_messages

    from ctxmgr.testing import agent_history

    chat = from_messages(agent_history(160, seed=11)[1:])  # AG2 dicts, oldest first
    cuts = list(range(20, len(chat) + 1, 14))

    def run(transforms: list[ContextTransform]) -> list[list[dict[str, Any]]]:
        return [
            transforms[i % len(transforms)].apply_transform(copy.deepcopy(chat[:cut]))
            for i, cut in enumerate(cuts)
        ]

    url = f"sqlite:///{tmp_path}/ag2.db"
    reference = ContextTransform.from_config(AGENT, system_message=SYSTEM, **WINDOW)
    expected = run([reference])
    workers = [
        ContextTransform.from_config(AGENT, system_message=SYSTEM, store=url, **WINDOW)
        for _ in "ab"
    ]
    got = run(workers)
    assert [content(to_messages(c)) for c in got] == [content(to_messages(c)) for c in expected]
    shared = workers[0].manager_for(chat)
    assert isinstance(shared, StoredContextManager)
    assert_same_conversation(shared, reference.manager_for(chat), len(cuts))
