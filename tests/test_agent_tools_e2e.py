"""Agent-facing context tools end to end (issue #10), through the real frameworks.

LangChain ``create_agent`` with a scripted ``GenericFakeChatModel``, LlamaIndex
``FunctionAgent`` with ``MockFunctionCallingLLM``, AutoGen ``AssistantAgent`` with
``ReplayChatCompletionClient``: the agent recalls evicted evidence with ``search_history``
/ ``get_message``, a 50,000-character tool result is offloaded before any request carries
it, and a loop of identical calls is reported at the Nth repeat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ctxmgr import FitReport, get_counter

SYSTEM = "You are a careful agent."
EVIDENCE = "The launch code is ZEBRA-42. It rotates weekly. "
HIT_ID = re.compile(r"- id=(\S+) \(tool[ ,]")  # the first archived tool result listed
PREVIEW_ID = re.compile(r'get_message\("([^"]+)"\)')


def filler(n_words: int, tag: str) -> str:
    """Distinct words (no repetition), ``tag`` first."""
    return tag + " " + " ".join(f"{tag}w{i}" for i in range(n_words))


def huge_file() -> str:
    """50,000 characters with a marker in the middle that must never be sent."""
    body = filler(9000, "log")
    half = len(body) // 2
    return (body[:half] + " MIDDLE-SECRET " + body[half:])[:50_000]


def config(*strategies: dict[str, Any], budget: int = 2500) -> dict[str, Any]:
    return {
        "max_context_tokens": budget,
        "reserve_output_tokens": 300,
        "strategies": list(strategies),
    }


RECALL = config(
    {"name": "tool_pair_safe", "keep_recent_tool_results": 1},
    {"name": "pin_and_slide"},
)
OFFLOAD = config(
    {"name": "offload", "offload_over_tokens": 1000},
    {"name": "tool_pair_safe"},
    {"name": "pin_and_slide"},
    budget=16000,
)
LOOP = config({"name": "loop_guard", "repeats": 3}, {"name": "pin_and_slide"}, budget=16000)


def read_file(path: str) -> str:
    """Read a file.

    Args:
        path: the file's path.
    """
    if path == "codes.txt":
        return EVIDENCE + filler(200, "codes")
    return huge_file()


def search(q: str) -> str:
    """Search the corpus.

    Args:
        q: the query.
    """
    return filler(260, q.replace(" ", ""))


def run_tests(path: str) -> str:
    """Run the tests.

    Args:
        path: the test directory.
    """
    return "1 failed: test_launch"


# =========================================================================================
# LangChain create_agent
# =========================================================================================
lc = pytest.importorskip("langchain.agents")


def langchain_agent(
    cfg: dict[str, Any],
    script: Callable[[list[Any], int], Any],
    reports: list[FitReport],
) -> tuple[Any, list[list[Any]]]:
    from ctxmgr.adapters.langchain import ContextMiddleware
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import StructuredTool
    from pydantic import Field

    class ScriptedModel(GenericFakeChatModel):
        messages: Any = Field(default_factory=lambda: iter(()))
        calls: list[list[Any]] = Field(default_factory=list)

        def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
            return self

        def _generate(
            self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            self.calls.append(list(messages))
            reply = script(messages, len(self.calls))
            return ChatResult(generations=[ChatGeneration(message=reply)])

    model = ScriptedModel()
    middleware = ContextMiddleware.from_config(
        cfg,
        register_context_tools=True,
        on_fit=lambda thread, report: reports.append(report),
    )
    tools = [
        StructuredTool.from_function(f, parse_docstring=True)
        for f in (read_file, search, run_tests)
    ]
    agent = lc.create_agent(model, tools, system_prompt=SYSTEM, middleware=[middleware])
    return agent, model.calls


def lc_call(name: str, args: dict[str, Any], n: int) -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{n}"}])


def text_of(messages: Sequence[Any]) -> str:
    return "\n".join(str(m.content) for m in messages)


def test_langchain_agent_recalls_evicted_evidence() -> None:
    """create_agent: evidence evicted by step 10 comes back through search_history + get_message."""
    from langchain_core.messages import AIMessage

    def script(messages: list[Any], n: int) -> Any:
        if n == 1:
            return lc_call("read_file", {"path": "codes.txt"}, n)
        if n <= 9:
            return lc_call("search", {"q": f"topic {n}"}, n)
        if n == 10:
            return lc_call("search_history", {"query": "launch code", "k": 3}, n)
        if n == 11:
            (found,) = HIT_ID.findall(str(messages[-1].content))[:1]
            return lc_call("get_message", {"id": found}, n)
        answer = re.search(r"ZEBRA-\d+", str(messages[-1].content))
        return AIMessage(content=f"The code is {answer.group(0) if answer else 'unknown'}.")

    reports: list[FitReport] = []
    agent, calls = langchain_agent(RECALL, script, reports)
    result = agent.invoke({"messages": [{"role": "user", "content": "Find the launch code."}]})
    assert len(calls) == 12
    assert "ZEBRA-42" in text_of(calls[1]), "the model saw the evidence at first"
    assert "ZEBRA-42" not in text_of(calls[9]), "the evidence must have left the context"
    assert any(r.cleared or r.dropped for r in reports)
    assert "ZEBRA-42" in str(calls[11][-1].content)  # the get_message result
    assert result["messages"][-1].content == "The code is ZEBRA-42."


def test_langchain_offloaded_result_never_enters_a_request() -> None:
    """create_agent: a 50,000-character result is sent only as a preview naming its id."""
    from langchain_core.messages import AIMessage

    previews: list[str] = []

    def script(messages: list[Any], n: int) -> Any:
        if n == 1:
            return lc_call("read_file", {"path": "big.log"}, n)
        if n == 2:
            previews.append(str(messages[-1].content))
            (found,) = PREVIEW_ID.findall(previews[0])
            return lc_call("get_message", {"id": found}, n)
        return AIMessage(content="read it")

    reports: list[FitReport] = []
    agent, calls = langchain_agent(OFFLOAD, script, reports)
    agent.invoke({"messages": [{"role": "user", "content": "Read big.log"}]})
    assert len(calls) == 3
    for request in calls:
        assert "MIDDLE-SECRET" not in text_of(request)
        assert max(len(str(m.content)) for m in request) < 10_000
    assert previews[0].startswith("[ctxmgr: the result of read_file was offloaded")
    assert huge_file()[:2000] in str(calls[2][-1].content)  # first page via get_message
    assert any(r.offloaded for r in reports)


def test_langchain_clear_at_least_clears_one_big_batch_or_nothing() -> None:
    """create_agent: every request that clears old results frees at least clear_at_least."""
    from langchain_core.messages import AIMessage

    at_least = 1200
    cfg = config(
        {"name": "tool_pair_safe", "keep_recent_tool_results": 1, "clear_at_least": at_least},
        {"name": "pin_and_slide"},
        budget=4000,
    )

    def script(messages: list[Any], n: int) -> Any:
        if n <= 14:
            return lc_call("search", {"q": f"topic {n}"}, n)
        return AIMessage(content="done")

    reports: list[FitReport] = []
    agent, calls = langchain_agent(cfg, script, reports)
    agent.invoke({"messages": [{"role": "user", "content": "Survey the topics."}]})
    from ctxmgr.adapters.langchain import to_messages

    counter = get_counter()
    batches = []
    for report, request in zip(reports, calls, strict=True):
        sent = {m.id: m for m in to_messages(request)}
        new = [r for r in report.cleared if r.strategy == "tool_pair_safe"]
        if not new:
            continue
        # the head (the call message) is unchanged; its results follow it in the request
        neutral = to_messages(request)
        freed = 0
        for rec in new:
            start = next(i for i, m in enumerate(neutral) if m.id == rec.ids[0])
            after = neutral[start : start + len(rec.ids)]
            assert all(m.id in sent for m in after)
            freed += rec.tokens - sum(counter.count_message(m) for m in after)
        batches.append(freed)
    assert batches, "the scenario must clear at least once"
    assert all(freed >= at_least for freed in batches)


def test_langchain_loop_of_identical_calls_is_reported_at_the_nth() -> None:
    """create_agent: the fit after the 3rd identical run_tests call reports the loop."""
    from langchain_core.messages import AIMessage

    def script(messages: list[Any], n: int) -> Any:
        if n <= 4:
            return lc_call("run_tests", {"path": "tests/"}, n)
        return AIMessage(content="giving up")

    reports: list[FitReport] = []
    agent, _ = langchain_agent(LOOP, script, reports)
    agent.invoke({"messages": [{"role": "user", "content": "Make the tests pass."}]})
    counts = [[d["count"] for d in r.loops if d["kind"] == "same_call"] for r in reports]
    assert counts == [[], [], [], [3], [4]]
    assert reports[3].loops[0]["tool"] == "run_tests"


# =========================================================================================
# LlamaIndex FunctionAgent
# =========================================================================================
pytestmark = pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance is deprecated"
    ":pydantic.warnings.PydanticDeprecatedSince211"
)


async def test_llamaindex_function_agent_recalls_evicted_evidence() -> None:
    """FunctionAgent: after later runs evict the evidence, the agent recalls it by id."""
    pytest.importorskip("llama_index.core")
    from ctxmgr.adapters.llamaindex import ContextMemory, context_tools
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    calls: list[list[ChatMessage]] = []

    def call(name: str, kwargs: dict[str, Any]) -> ChatMessage:
        block = ToolCallBlock(tool_call_id=f"c{len(calls)}", tool_name=name, tool_kwargs=kwargs)
        return ChatMessage(role="assistant", blocks=[block])

    def script(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        calls.append(list(messages))
        last = messages[-1]
        if last.role == MessageRole.USER:
            text = last.content or ""
            if text.startswith("Find"):
                return call("read_file", {"path": "codes.txt"})
            if text.startswith("What"):
                return call("search_history", {"query": "launch code"})
            return call("search", {"q": text.split()[-1]})
        if "archived messages match" in (last.content or ""):
            (found,) = HIT_ID.findall(last.content or "")[:1]
            return call("get_message", {"id": found})
        answer = re.search(r"ZEBRA-\d+", last.content or "")
        return ChatMessage(role="assistant", content=f"Done: {answer.group(0) if answer else ''}")

    memory = ContextMemory.from_config(RECALL, system_prompt=SYSTEM, headroom_tokens=600)
    tools = [FunctionTool.from_defaults(fn=f) for f in (read_file, search)]
    agent = FunctionAgent(
        tools=[*tools, *context_tools(memory)],
        llm=MockFunctionCallingLLM(response_generator=script),
    )
    await agent.run(user_msg="Find the launch code.", memory=memory)
    for i in range(6):
        await agent.run(user_msg=f"Research topic{i}", memory=memory)
    before = len(calls)
    result = await agent.run(user_msg="What was the launch code?", memory=memory)
    assert "ZEBRA-42" in "\n".join(m.content or "" for m in calls[1])
    assert "ZEBRA-42" not in "\n".join(m.content or "" for m in calls[before])
    assert "ZEBRA-42" in (calls[-1][-1].content or "")
    assert "ZEBRA-42" in str(result)


# =========================================================================================
# AutoGen AssistantAgent
# =========================================================================================
def autogen_setup(cfg: dict[str, Any], plan: list[tuple[str, dict[str, Any]] | str]) -> Any:
    pytest.importorskip("autogen_agentchat")
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_core.tools import FunctionTool
    from autogen_ext.models.replay import ReplayChatCompletionClient
    from ctxmgr.adapters.autogen import ContextManagerContext, context_tools

    script: list[Any] = []
    for i, step in enumerate(plan):
        if isinstance(step, str):
            script.append(step)
        else:
            fc = FunctionCall(id=f"c{i}", arguments=json.dumps(step[1]), name=step[0])
            usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
            script.append(
                CreateResult(
                    finish_reason="function_calls", content=[fc], usage=usage, cached=False
                )
            )
    info: Any = {
        "vision": False,
        "function_calling": True,
        "json_output": False,
        "family": "unknown",
        "structured_output": False,
    }
    client = ReplayChatCompletionClient(script, model_info=info)
    context = ContextManagerContext.from_config(cfg, system_message=SYSTEM)
    tools = [
        FunctionTool(f, (f.__doc__ or "").splitlines()[0]) for f in (read_file, search, run_tests)
    ]
    agent = AssistantAgent(
        "agent",
        client,
        tools=[*tools, *context_tools(context)],
        model_context=context,
        reflect_on_tool_use=True,
        system_message=None,
    )
    return agent, client, context


def requests_of(client: Any) -> list[str]:
    return ["\n".join(str(m.content) for m in c["messages"]) for c in client.create_calls]


async def test_autogen_agent_recalls_evicted_evidence() -> None:
    """AssistantAgent: search_history returns the evicted evidence with its id."""
    plan: list[Any] = [("read_file", {"path": "codes.txt"}), "noted"]
    for i in range(6):
        plan += [("search", {"q": f"topic{i}"}), f"answer {i}"]
    plan += [("search_history", {"query": "launch code"}), "found it"]
    agent, client, context = autogen_setup(RECALL, plan)
    await agent.run(task="Find the launch code.")
    for i in range(6):
        await agent.run(task=f"Research topic{i}")
    await agent.run(task="What was the launch code?")
    sent = requests_of(client)
    assert "ZEBRA-42" in sent[1]
    assert "ZEBRA-42" not in sent[-2], "evicted before the recall call"
    assert "ZEBRA-42" in sent[-1]  # the search_history result, sent for reflection
    evidence = next(e for e in context.manager.state.archive if "ZEBRA" in e.message.text)
    assert f"id={evidence.message.id}" in sent[-1]


async def test_autogen_offloaded_result_never_enters_a_request() -> None:
    """AssistantAgent: the reflection request carries the preview, never the 50,000 characters."""
    agent, client, context = autogen_setup(OFFLOAD, [("read_file", {"path": "big.log"}), "ok"])
    await agent.run(task="Read big.log")
    sent = requests_of(client)
    assert len(sent) == 2
    assert all("MIDDLE-SECRET" not in s and len(s) < 10_000 for s in sent)
    (found,) = PREVIEW_ID.findall(sent[1])
    archived = context.manager.state.archive.get(found)
    assert archived is not None and archived.text == huge_file()


async def test_autogen_loop_of_identical_calls_is_reported_at_the_nth() -> None:
    """AssistantAgent: the fit after the 3rd identical run_tests result reports the loop."""
    plan: list[Any] = [("run_tests", {"path": "tests/"}), "still failing"] * 4
    agent, _, context = autogen_setup(LOOP, plan)
    reports: list[FitReport] = []
    context.on_fit = reports.append
    for _ in range(4):
        await agent.run(task="Make the tests pass.")
    counts = [[d["count"] for d in r.loops if d["kind"] == "same_call"] for r in reports]
    # two fits per run: the request that calls the tool, then the reflection on its result
    assert counts == [[], [], [], [], [], [3], [], [4]]
    assert reports[5].loops[0]["tool"] == "run_tests"


async def test_llamaindex_offload_applies_from_the_next_run() -> None:
    """FunctionAgent: later runs see only the preview (the in-run scratchpad bypasses memory).

    The 50,000 characters reach the LLM once, in their own run, as documented.
    """
    pytest.importorskip("llama_index.core")
    from ctxmgr.adapters.llamaindex import ContextMemory
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    calls: list[list[ChatMessage]] = []

    def script(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        calls.append(list(messages))
        if messages[-1].role == MessageRole.USER and "big.log" in (messages[-1].content or ""):
            block = ToolCallBlock(
                tool_call_id="c1", tool_name="read_file", tool_kwargs={"path": "big.log"}
            )
            return ChatMessage(role="assistant", blocks=[block])
        return ChatMessage(role="assistant", content="ok")

    memory = ContextMemory.from_config(OFFLOAD, system_prompt=SYSTEM)
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=read_file)],
        llm=MockFunctionCallingLLM(response_generator=script),
    )
    await agent.run(user_msg="Read big.log", memory=memory)
    first_run = len(calls)
    await agent.run(user_msg="Summarize what you read", memory=memory)
    text = ["\n".join(m.content or "" for m in c) for c in calls]
    assert "MIDDLE-SECRET" in text[first_run - 1]  # the documented in-run limitation
    assert all("MIDDLE-SECRET" not in t for t in text[first_run:])
    assert PREVIEW_ID.findall(text[first_run])


# =========================================================================================
# pydantic-ai, OpenAI Agents SDK, AG2
# =========================================================================================
def evicted_manager_history() -> list[Any]:
    """A history whose fit at RECALL's budget evicts (or clears) the launch code."""
    from ctxmgr import Message, ToolCall

    history = [Message.system(SYSTEM), Message.user("Find the launch code.")]
    for i, (tool, result) in enumerate(
        [("read_file", read_file("codes.txt"))]
        + [("search", search(f"topic {j}")) for j in range(8)]
    ):
        call = ToolCall(f"k{i}", tool, "{}")
        history += [Message.assistant("", [call]), Message.tool(result, call.id, name=tool)]
    return history


async def test_pydantic_ai_agent_recalls_through_context_tools() -> None:
    """pydantic-ai: search_history and get_message act on the run's conversation archive."""
    pytest.importorskip("pydantic_ai")
    from ctxmgr.adapters.pydantic_ai import ContextProcessor, context_tools
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    processor = ContextProcessor.from_config(RECALL)
    out, _ = processor.manager_for("conv").fit(evicted_manager_history())
    assert all("ZEBRA-42" not in m.text for m in out)
    returns: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert [t.name for t in info.function_tools] == [
            "search_history", "get_message", "compact_context",
        ]  # fmt: skip
        last = messages[-1].parts[-1]
        content = str(getattr(last, "content", ""))
        if not returns:
            returns.append("")
            return ModelResponse(parts=[ToolCallPart("search_history", {"query": "launch code"})])
        if len(returns) == 1:
            returns.append(content)
            (found,) = HIT_ID.findall(content)[:1]
            return ModelResponse(parts=[ToolCallPart("get_message", {"id": found})])
        returns.append(content)
        return ModelResponse(parts=[TextPart("done")])

    agent: Agent[None, str] = Agent(FunctionModel(model), tools=context_tools(processor))
    result = await agent.run("What was the launch code?", conversation_id="conv")
    assert result.output == "done"
    assert "ZEBRA-42" in returns[2]


async def test_openai_agents_and_ag2_context_tools() -> None:
    """Agents SDK FunctionTools and AG2 Tools reach the archive of their conversation."""
    pytest.importorskip("agents")
    pytest.importorskip("autogen")
    from agents.tool_context import ToolContext
    from ctxmgr.adapters import ag2, openai_agents

    flt = openai_agents.ContextFilter.from_config(RECALL)
    flt.manager_for("k").fit(evicted_manager_history())
    tools = {t.name: t for t in openai_agents.context_tools(flt, key="k")}
    assert list(tools) == ["search_history", "get_message", "compact_context"]
    args = json.dumps({"query": "launch code"})
    ctx = ToolContext(None, tool_name="search_history", tool_call_id="t1", tool_arguments=args)
    found = await tools["search_history"].on_invoke_tool(ctx, args)
    assert "ZEBRA-42" in str(found)
    with pytest.raises(ValueError, match="needs the conversation key"):
        openai_agents.context_tools(flt)

    transform = ag2.ContextTransform.from_config(RECALL)
    mgr = transform.manager
    mgr.fit(evicted_manager_history())
    ag2_tools = {t.name: t for t in ag2.context_tools(mgr)}
    assert "ZEBRA-42" in ag2_tools["search_history"].func(query="launch code")
    assert "compaction requested" in ag2_tools["compact_context"].func(reason="done")
    assert mgr.state.extra["compaction_request"]["reason"] == "done"
