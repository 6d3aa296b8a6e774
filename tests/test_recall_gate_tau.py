"""On a real tau-bench trajectory the gated recall block uses the room a held question leaves.

tau-bench airline task 9, trial 2 (``gpt-4o-airline.json``): the final booking names a
saved passenger (last name ``Wilson``, born ``1980-03-27``) who appears only in the early
``get_user_details`` result. The first customer message came while the whole history fit,
so its recall block was empty; later questions all matched turns the context held, so the
gate kept that empty block and the 8,000-token window stayed a third unused while the
result was compacted away. Replacing an empty block removes nothing, so a held question
now recalls into the free room. The run also goes through LangChain's real provider
clients and the mock provider server, which enforces each provider's wire rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mockprovider import UNCLOSED_CLIENT_SOCKETS

from ctxmgr import ContextManager
from ctxmgr.bench.loaders import load_transcripts


@pytest.mark.data
def test_agent_recalls_the_saved_passenger_into_free_room(data_dir: Path) -> None:
    """Fit turn by turn at 8,000 tokens; the last action's values are all in the context."""
    path = data_dir / "tau-bench" / "gpt-4o-airline.json"
    run = next(t for t in load_transcripts(path) if t.id == "tau-bench/9-2")
    probe = [p for p in run.probes if p.kind == "action"][-1]
    assert {"Wilson", "1980-03-27"} <= set(probe.values)
    history = run.messages[: probe.position]
    source = next(m for m in history if m.role == "tool" and "Wilson" in m.text)
    manager = ContextManager.from_config("agent", max_context_tokens=8000, reserve_output_tokens=0)
    previous: list[str] = []
    extended = fits = 0
    for k in range(1, len(history) + 1):  # each point where the model would be called
        if history[k - 1].role in ("user", "tool") and (
            k == len(history) or history[k].role == "assistant"
        ):
            out, _ = manager.fit(history[:k])
            fits += 1
            ids = [m.id for m in out]
            extended += ids[: len(previous)] == previous
            previous = ids
    summary = next(m.text for m in out if m.metadata.get("ctxmgr") == "summary")
    assert "Wilson" not in summary  # not kept by the summary: the recall block brought it
    assert source.id in {m.id for m in out}
    sent = " ".join(m.text for m in out)
    assert all(v in sent for v in probe.values), probe.values
    assert extended >= 0.8 * fits  # and the prompt cache still holds on most calls (27 of 30)


@pytest.mark.data
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.filterwarnings(*UNCLOSED_CLIENT_SOCKETS)
def test_recalled_tool_result_goes_through_the_real_client(data_dir: Path, provider: str) -> None:
    """The same run through LangChain's real ChatOpenAI / ChatAnthropic and the mock server.

    The recalled ``get_user_details`` exchange sits in a block in the middle of a tool
    loop; the server checks every request against the provider's wire rules and the
    window, and the last request carries the saved passenger.
    """
    pytest.importorskip("langchain_openai")
    pytest.importorskip("langchain_anthropic")
    import mockprovider
    from ctxmgr.adapters.langchain import ContextRunnable, from_messages
    from langchain_core.messages import SystemMessage
    from mockprovider import SYSTEM_PROMPT, MockProvider, problems

    path = data_dir / "tau-bench" / "gpt-4o-airline.json"
    run = next(t for t in load_transcripts(path) if t.id == "tau-bench/9-2")
    probe = [p for p in run.probes if p.kind == "action"][-1]
    history = run.messages[: probe.position]
    policy = history[0].text
    chat = [SystemMessage(f"{SYSTEM_PROMPT}\n\n{policy}"), *from_messages(history[1:])]
    with MockProvider(window=8000) as server:
        model = mockprovider.langchain_model(provider, server)
        runnable = ContextRunnable.from_config("agent", model=model, max_context_tokens=8000)
        asked = set()
        for k in range(1, len(chat) + 1):
            if chat[k - 1].type in ("human", "tool") and (k == len(chat) or chat[k].type == "ai"):
                latest = next(m for m in reversed(chat[:k]) if m.type == "human")
                server.current_user = str(latest.content)
                asked.add(server.current_user)
                runnable.invoke(chat[:k])
    assert problems(server, turns=len(asked)) == []
    assert all(v in server.requests[-1].text for v in ("Wilson", "1980-03-27"))
