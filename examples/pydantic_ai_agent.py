"""A pydantic-ai agent whose every model request is fitted by ctxmgr. Runs offline.

pydantic-ai's ``FunctionModel`` plays a scripted model for a 20-turn research session: each
turn calls two tools in parallel (after a thinking part), whose results are large, then
answers. ``ContextProcessor.capability()`` (a ``before_model_request`` hook) fits each
request into a 1,500-token window and prints what ctxmgr kept, cleared, summarized and
dropped; the run's history (``result.all_messages()``) keeps every message.

    .venv/bin/python examples/pydantic_ai_agent.py           # the "agent" preset
    .venv/bin/python examples/pydantic_ai_agent.py fifo      # another preset or a .toml
"""

from __future__ import annotations

import asyncio
import os
import sys

from _fitlog import fit_line
from ctxmgr.adapters.pydantic_ai import ContextProcessor
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from ctxmgr.report import FitReport

TURNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answer after tool results; otherwise think, then call two tools in parallel."""
    if any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
        return ModelResponse(parts=[TextPart("Two papers and one dataset look relevant.")])
    asks = [p for m in messages for p in m.parts if isinstance(p, UserPromptPart)]
    n = str([p for p in asks if str(p.content).startswith("Research")][-1].content).split()[1]
    return ModelResponse(
        parts=[
            ThinkingPart("I need the papers and the dataset card."),
            ToolCallPart("search_papers", {"topic": n.rstrip(",")}, tool_call_id=f"c{n}a"),
            ToolCallPart("fetch_dataset", {"name": f"ds-{n.rstrip(',')}"}, tool_call_id=f"c{n}b"),
        ]
    )


def show(conversation: str, report: FitReport) -> None:
    """Print one line per model request from ctxmgr's FitReport."""
    print(f"[{conversation[-6:]}] call {report.turn:>2}: {fit_line(report)}")


async def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    processor = ContextProcessor.from_config(
        config, on_fit=show, max_context_tokens=1500, reserve_output_tokens=200
    )
    agent = Agent(
        FunctionModel(scripted),
        instructions=SYSTEM,
        capabilities=[processor.capability()],  # <- the one line that installs ctxmgr
    )

    @agent.tool_plain
    def search_papers(topic: str) -> str:
        """Search papers about a topic."""
        return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 12 for k in range(6))

    @agent.tool_plain
    def fetch_dataset(name: str) -> str:
        """Fetch a dataset card."""
        return f"dataset {name}: " + ", ".join(f"column_{k} (float, 0 nulls)" for k in range(40))

    history: list[ModelMessage] | None = None
    for i in range(TURNS):
        result = await agent.run(f"Research topic-{i}, please.", message_history=history)
        history = result.all_messages()
    conversation = result.conversation_id
    print(f"\nthe run history holds all {len(history)} messages; ctxmgr state:")
    state = processor.manager_for(conversation).state
    print(f"  summary: {state.summary!r}")
    print(f"  archived messages: {len(state.archive)}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
