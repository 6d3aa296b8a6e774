"""A LlamaIndex FunctionAgent whose memory is fitted by ctxmgr. Runs offline.

LlamaIndex's ``MockFunctionCallingLLM`` (the function-calling ``MockLLM``) drives a 20-run
research session: each run calls two tools in parallel, whose results are large, then
answers. ``ContextMemory`` stores everything and hands the agent the fitted view of a
1,500-token window; each fit prints what ctxmgr kept, cleared, summarized and dropped.

    .venv/bin/python examples/llamaindex_agent.py             # the "agent" preset
    .venv/bin/python examples/llamaindex_agent.py summary     # another preset
    .venv/bin/python examples/llamaindex_agent.py my.toml     # or a config file
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from _fitlog import fit_line
from ctxmgr.adapters.llamaindex import ContextMemory, LlamaIndexSummarizer
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, ToolCallBlock
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from ctxmgr.report import FitReport

RUNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."


def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    """Scripted LLM: after a user message call two tools in parallel, else answer."""
    last = messages[-1]
    if last.role == MessageRole.USER:
        topic = (last.content or "").split()[1].rstrip(",")
        return ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id=f"{topic}-a",
                    tool_name="search_papers",
                    tool_kwargs={"topic": topic},
                ),
                ToolCallBlock(
                    tool_call_id=f"{topic}-b",
                    tool_name="fetch_dataset",
                    tool_kwargs={"name": topic},
                ),
            ],
        )
    return ChatMessage(role="assistant", content="Two papers and one dataset look relevant.")


def search_papers(topic: str) -> str:
    """Search papers about a topic."""
    return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 8 for k in range(5))


def fetch_dataset(name: str) -> str:
    """Fetch a dataset card."""
    return f"dataset {name}: " + ", ".join(f"column_{k} (float)" for k in range(30))


class SummaryLLM(MockLLM):
    """A MockLLM that always answers with the same short summary."""

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Return the canned summary."""
        return ChatResponse(message=ChatMessage(role="assistant", content="Summary: topics done."))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Return the canned summary."""
        return self.chat(messages)


def show(session: str, report: FitReport) -> None:
    """Print one line per fit from ctxmgr's FitReport."""
    print(f"[{session}] fit {report.turn:>2}: {fit_line(report)}")


async def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    memory = ContextMemory.from_config(
        config,
        system_prompt=SYSTEM,  # give the system prompt to the memory so ctxmgr counts it
        headroom_tokens=450,  # room for the tool round FunctionAgent appends outside memory
        summarizer=LlamaIndexSummarizer(SummaryLLM()),
        session_id="demo",
        on_fit=show,
        max_context_tokens=1500,
        reserve_output_tokens=200,
    )
    agent = FunctionAgent(
        tools=[
            FunctionTool.from_defaults(fn=search_papers),
            FunctionTool.from_defaults(fn=fetch_dataset),
        ],
        llm=MockFunctionCallingLLM(response_generator=respond),
    )
    for i in range(RUNS):
        await agent.run(user_msg=f"Research topic-{i}, please.", memory=memory)  # <- ctxmgr
    print(f"\nchat store holds all {len(memory.get_all())} messages")
    print(f"  summary: {memory.manager.state.summary!r}")
    print(f"  archived messages: {len(memory.manager.state.archive)}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
