"""An AutoGen AssistantAgent whose model context is fitted by ctxmgr. Runs offline.

AutoGen's ``ReplayChatCompletionClient`` replays a 20-turn research session: each turn calls
two tools in parallel, whose results are large, then answers (``reflect_on_tool_use``).
``ContextManagerContext`` keeps every message and gives the model the fitted view of a
1,500-token window; each model call prints what ctxmgr kept, cleared, summarized and
dropped. At the end the agent's state is saved and loaded into a fresh agent.

    .venv/bin/python examples/autogen_agent.py             # the "agent" preset
    .venv/bin/python examples/autogen_agent.py summary     # another preset
    .venv/bin/python examples/autogen_agent.py my.toml     # or a config file
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from _fitlog import fit_line
from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient
from ctxmgr.adapters.autogen import AutoGenSummarizer, ContextManagerContext

from ctxmgr.report import FitReport

TURNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."
MODEL_INFO: Any = {
    "vision": False,
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
}


def script(turns: int) -> list[str | CreateResult]:
    """Per turn: two parallel tool calls, then a short answer."""
    out: list[str | CreateResult] = []
    for i in range(turns):
        calls = [
            FunctionCall(
                id=f"call_{i}_a",
                arguments=json.dumps({"topic": f"topic-{i}"}),
                name="search_papers",
            ),
            FunctionCall(
                id=f"call_{i}_b", arguments=json.dumps({"name": f"ds-{i}"}), name="fetch_dataset"
            ),
        ]
        usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        out.append(
            CreateResult(finish_reason="function_calls", content=calls, usage=usage, cached=False)
        )
        out.append(f"Topic {i}: two papers and one dataset look relevant.")
    return out


def search_papers(topic: str) -> str:
    """Search papers about a topic."""
    return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 12 for k in range(6))


def fetch_dataset(name: str) -> str:
    """Fetch a dataset card."""
    return f"dataset {name}: " + ", ".join(f"column_{k} (float, 0 nulls)" for k in range(40))


def show(report: FitReport) -> None:
    """Print one line per model call from ctxmgr's FitReport."""
    print(f"call {report.turn:>2}: {fit_line(report)}")


async def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    logging.getLogger("autogen_core.events").setLevel(logging.ERROR)  # replay-client chatter
    summarizer = AutoGenSummarizer(ReplayChatCompletionClient(["Summary: topics researched."] * 99))
    context = ContextManagerContext.from_config(
        config,
        system_message=SYSTEM,  # give the system prompt to the context so ctxmgr counts it
        summarizer=summarizer,
        on_fit=show,
        max_context_tokens=1500,
        reserve_output_tokens=200,
    )
    agent = AssistantAgent(
        "researcher",
        ReplayChatCompletionClient(script(TURNS), model_info=MODEL_INFO),
        tools=[search_papers, fetch_dataset],
        model_context=context,  # <- the one line that installs ctxmgr
        reflect_on_tool_use=True,
        system_message=None,
    )
    for i in range(TURNS):
        await agent.run(task=f"Research topic-{i}, please.")

    print(f"\nthe context holds all {len(context.messages)} messages")
    saved = json.dumps(await agent.save_state())
    fresh = ContextManagerContext.load_component(context.dump_component())
    await fresh.load_state(json.loads(saved)["llm_context"])
    print(f"saved {len(saved)} bytes of state; a fresh context loaded from it has")
    print(f"  {len(fresh.messages)} messages, summary {fresh.manager.state.summary!r},")
    print(
        f"  {len(fresh.manager.state.archive)} archived messages, turn {fresh.manager.state.turn}"
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
