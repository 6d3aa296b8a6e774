"""The agent preset's recall gate through real provider clients, on a real LoCoMo chat.

The gate is what makes the agent preset's context an exact-prefix extension of the
previous request most of the time (a provider prompt-cache hit): a new question recalls a
new block only when one of its 2 best matches is outside the context. Fitting, block
anchoring and the provider's own normalization (Anthropic merges consecutive user turns,
drops message names) all sit between the strategy and the wire, so stability is measured
here on what the mock server received from the real LangChain clients, next to the
wire rules and the window (:func:`mockprovider.problems`).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

import mockprovider
from ctxmgr.adapters.langchain import ContextRunnable, from_messages
from langchain_core.messages import SystemMessage
from mockprovider import SYSTEM_PROMPT, UNCLOSED_CLIENT_SOCKETS, MockProvider, problems

from ctxmgr.bench.loaders import load_transcripts
from ctxmgr.config import load_config

WINDOW = 2000
MESSAGES = 160  # the first 160 turns of LoCoMo conversation 0 (sessions 1-6)

pytestmark = [pytest.mark.data, *(pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS)]


def _agent(gate: bool) -> dict[str, Any]:
    """The agent preset as a config dict, with or without its recall gate."""
    config = load_config("agent").model_dump()
    if not gate:
        for entry in config["strategies"]:
            if entry["name"] == "relevance":
                entry.update(recall_gate=None, recall_share=None, block_headroom=0.0)
    return config


def _chat(data_dir: Path) -> list[Any]:
    run = load_transcripts(data_dir / "locomo" / "locomo10.json")[0]
    return [SystemMessage(SYSTEM_PROMPT), *from_messages(run.messages[:MESSAGES])]


def _run(provider: str, gate: bool, chat: list[Any]) -> tuple[MockProvider, float]:
    """Ask at every user turn of ``chat``; return the server and its exact-prefix share."""
    with MockProvider(window=WINDOW) as server:
        model = mockprovider.langchain_model(provider, server)
        runnable = ContextRunnable.from_config(_agent(gate), model=model, max_context_tokens=WINDOW)
        for k in range(1, len(chat) + 1):
            if chat[k - 1].type == "human" and (k == len(chat) or chat[k].type != "human"):
                server.current_user = str(chat[k - 1].content)
                runnable.invoke(chat[:k])
    sent = [r.turns for r in server.requests]
    extends = sum(b[: len(a)] == a for a, b in itertools.pairwise(sent))
    return server, extends / max(1, len(sent) - 1)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_gate_keeps_the_prefix_through_the_real_client(data_dir: Path, provider: str) -> None:
    """Nothing rejected or over the window, and most requests extend the previous one.

    Without the gate every user turn replaces the recall block, so the previous request is
    almost never a prefix of the next; the same run with the gate off shows the difference.
    """
    chat = _chat(data_dir)
    server, stability = _run(provider, True, chat)
    assert problems(server, turns=40) == []
    _, without = _run(provider, False, chat)
    assert stability >= 0.4, (stability, without)
    assert stability >= without + 0.25, (stability, without)
