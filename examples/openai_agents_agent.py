"""An OpenAI Agents SDK run whose every model call is fitted by ctxmgr. Runs offline.

The SDK's own ``ScriptedModel`` plays the model for a 20-turn research session: each turn
reasons, calls two tools in parallel, whose results are large, then answers. ``ContextFilter``
(``RunConfig(call_model_input_filter=...)``) fits each call into a 1,500-token window and
prints what ctxmgr kept, cleared, summarized and dropped; the session keeps every item.

    .venv/bin/python examples/openai_agents_agent.py          # the "agent" preset
    .venv/bin/python examples/openai_agents_agent.py fifo     # another preset or a .toml
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from _fitlog import fit_line
from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from ctxmgr.adapters.openai_agents import ContextFilter
from openai.types.responses import ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Summary

from ctxmgr.report import FitReport

TURNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."


def respond(call: ModelCall) -> Any:
    """Answer after tool results; otherwise reason, then call two tools in parallel."""
    items = list(call.input)
    asks = [i for i, item in enumerate(items) if str(item.get("content")).startswith("Research")]
    n = str(items[asks[-1]]["content"]).split()[1].rstrip(",")
    if any(item.get("type") == "function_call_output" for item in items[asks[-1] :]):
        return [assistant_message("Two papers and one dataset look relevant.", item_id=f"m{n}")]
    summary = [Summary(text="I need the papers and the dataset card.", type="summary_text")]
    return [
        ResponseReasoningItem(id=f"rs{n}", type="reasoning", summary=summary),
        function_call("search_papers", {"topic": n}, call_id=f"c{n}a"),
        function_call("fetch_dataset", {"name": f"ds-{n}"}, call_id=f"c{n}b"),
    ]


@function_tool
def search_papers(topic: str) -> str:
    """Search papers about a topic."""
    return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 12 for k in range(6))


@function_tool
def fetch_dataset(name: str) -> str:
    """Fetch a dataset card."""
    return f"dataset {name}: " + ", ".join(f"column_{k} (float, 0 nulls)" for k in range(40))


def show(key: str, report: FitReport) -> None:
    """Print one line per model call from ctxmgr's FitReport."""
    print(f"[{key}] call {report.turn:>2}: {fit_line(report)}")


async def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    flt = ContextFilter.from_config(
        config, on_fit=show, max_context_tokens=1500, reserve_output_tokens=200
    )
    model = ScriptedModel([ModelStep.respond(respond) for _ in range(TURNS * 2)])
    agent = Agent(
        name="researcher", instructions=SYSTEM, model=model, tools=[search_papers, fetch_dataset]
    )
    run_config = RunConfig(call_model_input_filter=flt, tracing_disabled=True)  # <- ctxmgr
    session = SQLiteSession("demo")
    for i in range(TURNS):
        await Runner.run(
            agent,
            f"Research topic-{i}, please.",
            session=session,
            run_config=run_config,
            context={"thread_id": "demo"},
        )
    stored = await session.get_items()
    print(f"\nthe session holds all {len(stored)} items; ctxmgr state per thread:")
    state = flt.manager_for("demo").state
    print(f"  summary: {state.summary!r}")
    print(f"  archived messages: {len(state.archive)}")
    session.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
