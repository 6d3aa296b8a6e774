"""An AG2 ConversableAgent whose every reply is fitted by ctxmgr. Runs offline.

A scripted AG2 model client plays the model for a 20-turn research session between a user
proxy (which executes the tools) and an assistant: each turn the assistant calls two tools
in parallel, whose results are large, then answers. ``ContextTransform`` (AG2's
``TransformMessages`` capability) fits each request into a 1,500-token window and prints what
ctxmgr kept, cleared, summarized and dropped; ``chat_messages`` keep every message.

    .venv/bin/python examples/ag2_agent.py                    # the "agent" preset
    .venv/bin/python examples/ag2_agent.py fifo               # another preset or a .toml
"""

from __future__ import annotations

import os
import sys
from typing import Any

from _fitlog import fit_line
from autogen import ConversableAgent, register_function
from ctxmgr.adapters.ag2 import ContextTransform
from openai.types.chat import ChatCompletion

from ctxmgr.report import FitReport

TURNS = 20
SYSTEM = "You are a research agent. Use the tools, then answer in one sentence."


class ScriptedClient:
    """An AG2 ``ModelClient``: answer after tool results, else two parallel tool calls."""

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        self.model = config.get("model", "scripted")

    def create(self, params: dict[str, Any]) -> ChatCompletion:
        """Return the scripted reply to ``params["messages"]``."""
        messages = params["messages"]
        asks = [i for i, m in enumerate(messages) if str(m.get("content")).startswith("Research")]
        n = str(messages[asks[-1]]["content"]).split()[1].rstrip(",")
        if any(m.get("role") == "tool" for m in messages[asks[-1] :]):
            message: dict[str, Any] = {"role": "assistant", "content": "Two papers look relevant."}
        else:
            calls = [("search_papers", "topic", n), ("fetch_dataset", "name", f"ds-{n}")]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{n}{k}",
                        "type": "function",
                        "function": {"name": name, "arguments": f'{{"{arg}": "{value}"}}'},
                    }
                    for k, (name, arg, value) in enumerate(calls)
                ],
            }
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        response = {"id": "r", "object": "chat.completion", "created": 0, "model": self.model}
        return ChatCompletion.model_validate({**response, "choices": [choice]})

    def message_retrieval(self, response: ChatCompletion) -> list[Any]:
        """The reply messages."""
        return [choice.message for choice in response.choices]

    def cost(self, response: ChatCompletion) -> float:
        """A scripted reply costs nothing."""
        return 0.0

    @staticmethod
    def get_usage(response: ChatCompletion) -> dict[str, Any]:
        """Zero usage."""
        keys = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")
        return {**dict.fromkeys(keys, 0), "model": response.model}


def search_papers(topic: str) -> str:
    """Search papers about a topic."""
    return "\n".join(f"[{topic}] paper {k}: abstract " + "lorem ipsum " * 12 for k in range(6))


def fetch_dataset(name: str) -> str:
    """Fetch a dataset card."""
    return f"dataset {name}: " + ", ".join(f"column_{k} (float, 0 nulls)" for k in range(40))


def show(key: str, report: FitReport) -> None:
    """Print one line per model call from ctxmgr's FitReport."""
    print(f"[{key[:6]}] call {report.turn:>2}: {fit_line(report)}")


def main(config: str = "agent") -> None:
    os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")  # count tokens without downloads
    llm_config = {"config_list": [{"model": "scripted", "model_client_cls": "ScriptedClient"}]}
    assistant = ConversableAgent(
        "assistant", system_message=SYSTEM, llm_config=llm_config, human_input_mode="NEVER"
    )
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
    for fn in (search_papers, fetch_dataset):
        register_function(fn, caller=assistant, executor=user, description=fn.__doc__ or "")
    assistant.register_model_client(ScriptedClient)
    transform = ContextTransform.from_config(
        config, on_fit=show, max_context_tokens=1500, reserve_output_tokens=200
    )
    transform.add_to_agent(assistant)  # <- the one line that installs ctxmgr
    for i in range(TURNS):
        message = f"Research topic-{i}, please."
        user.initiate_chat(
            assistant, message=message, max_turns=2, clear_history=False, silent=True
        )
    stored = assistant.chat_messages[user]
    print(f"\nchat_messages hold all {len(stored)} messages; ctxmgr state:")
    state = transform.manager_for(stored).state
    print(f"  summary: {state.summary!r}")
    print(f"  archived messages: {len(state.archive)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
