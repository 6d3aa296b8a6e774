"""A LangGraph prebuilt ReAct agent whose every model call is fitted by ctxmgr. Runs offline.

A scripted fake chat model drives a 20-turn research session through
``create_react_agent``: each turn calls two tools in parallel, whose results are large, then
answers. ``ContextHook`` (the ``pre_model_hook``) fits each model input into a 1,500-token
window and prints, per model call, what ctxmgr kept, cleared, summarized and dropped; the
graph state keeps every message.

    .venv/bin/python examples/langgraph_agent.py             # the "agent" preset
    .venv/bin/python examples/langgraph_agent.py fifo        # another preset or a .toml
"""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from _fitlog import fit_line
from ctxmgr.adapters.langgraph import ContextHook
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent

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
    hook = ContextHook.from_config(
        config,
        system_prompt=SYSTEM,
        on_fit=show,
        max_context_tokens=1500,
        reserve_output_tokens=200,
    )
    with warnings.catch_warnings():  # create_react_agent is deprecated for create_agent
        warnings.simplefilter("ignore")
        agent = create_react_agent(
            FakeToolModel(messages=script()),
            [search_papers, fetch_dataset],
            pre_model_hook=hook,  # <- the one line that installs ctxmgr
            checkpointer=InMemorySaver(),
        )
    cfg: Any = {"configurable": {"thread_id": "demo"}}
    for i in range(TURNS):
        agent.invoke({"messages": [HumanMessage(f"Research topic-{i}, please.")]}, cfg)
    stored = agent.get_state(cfg).values["messages"]
    print(f"\ngraph state holds all {len(stored)} messages; ctxmgr state per thread:")
    state = hook.manager_for("demo").state
    print(f"  summary: {state.summary!r}")
    print(f"  archived messages: {len(state.archive)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
