"""A LangChain agent whose every model call is fitted by ctxmgr. Runs offline.

A scripted fake chat model (LangChain's ``GenericFakeChatModel``) drives a 20-turn research
session: each turn calls two tools in parallel, whose results are large, then answers.
``ContextMiddleware`` fits each request into a 1,500-token window and prints, per model
call, what ctxmgr kept, cleared, summarized and dropped.

    .venv/bin/python examples/langchain_agent.py             # the "agent" preset
    .venv/bin/python examples/langchain_agent.py fifo        # another preset
    .venv/bin/python examples/langchain_agent.py my.toml     # or a config file
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from typing import Any

from _fitlog import fit_line
from ctxmgr.adapters.langchain import ContextMiddleware, LangChainSummarizer
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from ctxmgr.report import FitReport

TURNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."


class FakeToolModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that accepts ``bind_tools`` (the agent binds its tools)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeToolModel:  # type: ignore[override]
        """Return the model itself: a fake model needs no tool schemas."""
        return self


def script() -> Iterator[AIMessage]:
    """Per turn: two parallel tool calls, then a short answer."""
    for i in itertools.count():
        yield AIMessage(
            content="",
            tool_calls=[
                {"name": "search_papers", "args": {"topic": f"topic-{i}"}, "id": f"call_{i}_a"},
                {"name": "fetch_dataset", "args": {"name": f"ds-{i}"}, "id": f"call_{i}_b"},
            ],
        )
        yield AIMessage(content=f"Topic {i}: two papers and one dataset look relevant.")


@tool
def search_papers(topic: str) -> str:
    """Search papers about a topic."""
    return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 12 for k in range(6))


@tool
def fetch_dataset(name: str) -> str:
    """Fetch a dataset card."""
    return f"dataset {name}: " + ", ".join(f"column_{k} (float, 0 nulls)" for k in range(40))


def show(thread: str, report: FitReport) -> None:
    """Print one line per model call from ctxmgr's FitReport."""
    print(f"[{thread}] call {report.turn:>2}: {fit_line(report)}")


def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    summarizer = LangChainSummarizer(
        GenericFakeChatModel(
            messages=itertools.repeat("Summary: topics 0-N researched; see notes.")
        )
    )
    middleware = ContextMiddleware.from_config(
        config,
        summarizer=summarizer,
        on_fit=show,
        max_context_tokens=1500,
        reserve_output_tokens=200,
    )
    agent = create_agent(
        FakeToolModel(messages=script()),
        [search_papers, fetch_dataset],
        system_prompt=SYSTEM,
        middleware=[middleware],  # <- the one line that installs ctxmgr
        checkpointer=InMemorySaver(),
    )
    cfg: Any = {"configurable": {"thread_id": "demo"}}
    for i in range(TURNS):
        agent.invoke({"messages": [HumanMessage(f"Research topic-{i}, please.")]}, cfg)
    stored = agent.get_state(cfg).values["messages"]
    print(f"\ngraph state holds all {len(stored)} messages; ctxmgr state per thread:")
    state = middleware.manager_for("demo").state
    print(f"  summary: {state.summary!r}")
    print(f"  archived messages: {len(state.archive)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
