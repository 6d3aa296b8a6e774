"""AutoGen adapter: lossless converters and end-to-end runs with ReplayChatCompletionClient."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("autogen_agentchat")

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall, Image
from autogen_core.model_context import ChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.replay import ReplayChatCompletionClient
from ctxmgr.adapters.autogen import (
    PROVIDER,
    AutoGenSummarizer,
    ContextManagerContext,
    ContextTransform,
    UnsupportedContentWarning,
    from_messages,
    note_tools,
    to_messages,
)

from ctxmgr import ContentPart, ContextManager, Message, messages_from_openai
from ctxmgr.tokens import get_counter

SYSTEM = "You are a meticulous research agent. Always cite the tool results you used."
MAX_TOKENS = 1500
RESERVE = 200
LIMIT = MAX_TOKENS - RESERVE
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
MODEL_INFO: Any = {
    "vision": False,
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def search(query: str) -> str:
    """Search the corpus."""
    return f"Results for {query}: " + " ".join(f"doc{i} covers {query}" for i in range(40))


def lookup(key: str) -> str:
    """Look a key up."""
    return f"Record {key}: " + " ".join(f"field{i}=value{i}" for i in range(50))


def script(turns: int, start: int = 0) -> list[str | CreateResult]:
    """Replay script: per turn, two parallel tool calls, then a text answer."""
    out: list[str | CreateResult] = []
    for i in range(start, start + turns):
        calls = [
            FunctionCall(id=f"c{i}a", arguments=json.dumps({"query": f"topic{i}"}), name="search"),
            FunctionCall(id=f"c{i}b", arguments=json.dumps({"key": f"topic{i}"}), name="lookup"),
        ]
        out.append(
            CreateResult(
                finish_reason="function_calls",
                content=calls,
                usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
                cached=False,
            )
        )
        out.append(f"Answer {i}: the results look fine.")
    return out


def write_config(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / f"{preset}.toml"
    path.write_text(
        f'preset = "{preset}"\nmax_context_tokens = {MAX_TOKENS}\n'
        f"reserve_output_tokens = {RESERVE}\n"
    )
    return path


def summarizer() -> AutoGenSummarizer:
    return AutoGenSummarizer(ReplayChatCompletionClient(["SUMMARY: topics seen."] * 200))


def make_agent(
    context: ContextManagerContext, turns: int, start: int = 0
) -> tuple[AssistantAgent, ReplayChatCompletionClient]:
    client = ReplayChatCompletionClient(script(turns, start), model_info=MODEL_INFO)
    agent = AssistantAgent(
        "researcher",
        client,
        tools=[search, lookup],
        model_context=context,
        reflect_on_tool_use=True,
        system_message=None,  # the context holds the system prompt, so ctxmgr counts it
    )
    return agent, client


async def run_turns(agent: AssistantAgent, turns: int, start: int = 0) -> None:
    for i in range(start, start + turns):
        await agent.run(task=f"Turn {i}: research topic{i}")


def received(client: ReplayChatCompletionClient) -> list[list[LLMMessage]]:
    return [list(call["messages"]) for call in client.create_calls]


def assert_well_formed(call: Sequence[LLMMessage]) -> None:
    """Check one model input: system first, tool pairs whole, within the budget."""
    assert isinstance(call[0], SystemMessage) and call[0].content == SYSTEM
    neutral = to_messages(call)
    asked: set[str] = set()
    answered: set[str] = set()
    for message in neutral:
        asked.update(c.id for c in message.tool_calls)
        if message.role == "tool":
            assert message.tool_call_id in asked, f"orphan tool result {message.tool_call_id}"
            answered.add(message.tool_call_id)
    assert asked == answered, f"calls without results: {asked - answered}"
    tokens = get_counter().count_messages(neutral)
    assert tokens <= LIMIT, f"{tokens} tokens sent, limit {LIMIT}"


def image_safe(message: LLMMessage) -> Any:
    """A comparable dump (AutoGen's Image has no equality; compare its data URI)."""
    dump = message.model_dump()
    if isinstance(message, UserMessage) and isinstance(message.content, list):
        dump["content"] = [x if isinstance(x, str) else x.data_uri for x in message.content]
    return dump


# ---------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------
ROUND_TRIP: list[LLMMessage] = [
    SystemMessage(content="sys"),
    UserMessage(content="hi", source="user"),
    UserMessage(content=["look", Image.from_base64(PNG)], source="user"),
    UserMessage(content=["only text in a list"], source="user"),
    AssistantMessage(
        content=[
            FunctionCall(id="c1", arguments='{"a":1}', name="f"),
            FunctionCall(id="", arguments="{}", name="g"),
        ],
        thought="thinking",
        source="bot",
    ),
    FunctionExecutionResultMessage(
        content=[
            FunctionExecutionResult(content="r1", name="f", call_id="c1", is_error=False),
            FunctionExecutionResult(content="r2", name="g", call_id=""),
        ]
    ),
    AssistantMessage(content="done", thought="t", source="bot"),
    AssistantMessage(content=[FunctionCall(id="c3", arguments="{}", name="h")], source="bot"),
    FunctionExecutionResultMessage(
        content=[FunctionExecutionResult(content="r3", name="h", call_id="c3", is_error=True)]
    ),
    AssistantMessage(
        content=[FunctionCall(id="c4", arguments="{}", name="h")], thought="", source="b"
    ),
    FunctionExecutionResultMessage(
        content=[FunctionExecutionResult(content="r", name="h", call_id="c4")]
    ),
    FunctionExecutionResultMessage(
        content=[FunctionExecutionResult(content="r", name="h", call_id="c4")]
    ),
]


def test_round_trip_is_lossless() -> None:
    """Every LLMMessage comes back equal; result messages regroup exactly as they were."""
    back = from_messages(to_messages(ROUND_TRIP))
    assert [image_safe(m) for m in back] == [image_safe(m) for m in ROUND_TRIP]


def test_neutral_view_of_tool_calls_and_parts() -> None:
    """Calls, results (one per result), sources, thoughts and images map correctly."""
    neutral = to_messages(ROUND_TRIP)
    assert neutral[1].name == "user"
    assert [p.type for p in neutral[2].content] == ["text", "image_url"]
    assert neutral[2].content[1].data["image_url"]["url"].startswith("data:image/png;base64,")
    calls = neutral[4]
    assert calls.text == "thinking" and [c.id for c in calls.tool_calls] == ["c1", "ag-4-1"]
    assert [(m.tool_call_id, m.name) for m in neutral[5:7]] == [("c1", "f"), ("ag-4-1", "g")]
    assert len({m.id for m in neutral}) == len(neutral)


def test_foreign_parts_are_reported() -> None:
    """A part AutoGen cannot hold is left out with a warning naming its type."""
    msg = Message.user([ContentPart("text", "hear this"), ContentPart("input_audio", data={})])
    with pytest.warns(UnsupportedContentWarning, match="'input_audio'"):
        (rebuilt,) = from_messages([msg])
    assert isinstance(rebuilt, UserMessage) and rebuilt.content == ["hear this"]
    summary = Message.system("Summary", metadata={"ctxmgr": "summary"})
    assert from_messages([summary]) == [SystemMessage(content="Summary")]


# ---------------------------------------------------------------------------------------
# model context end to end
# ---------------------------------------------------------------------------------------
async def test_agent_long_conversation_stays_valid(tmp_path: Path) -> None:
    """24 turns (48 model calls) with parallel tool calls and big results stay valid.

    Every request holds the system prompt first, no orphan result or unanswered call, and
    fits the budget; the context keeps every message.
    """
    context = ContextManagerContext.from_config(
        write_config(tmp_path, "fifo"), system_message=SYSTEM
    )
    agent, client = make_agent(context, 24)
    await run_turns(agent, 24)
    calls = received(client)
    assert len(calls) == 48
    for call in calls:
        assert_well_formed(call)
    assert len(context.messages) == 24 * 4  # task, calls, results (one message), answer
    assert max(len(c) for c in calls) < len(context.messages)
    assert context.last_report is not None and context.last_report.tokens_before > LIMIT


async def test_config_file_switch_changes_strategy(tmp_path: Path) -> None:
    """Swapping fifo.toml for summary.toml changes what the model receives, no code change."""
    seen = {}
    for preset in ("fifo", "summary"):
        context = ContextManagerContext.from_config(
            write_config(tmp_path, preset), system_message=SYSTEM, summarizer=summarizer()
        )
        agent, client = make_agent(context, 12)
        await run_turns(agent, 12)
        seen[preset] = received(client)
        for call in seen[preset]:
            assert_well_formed(call)

    def summaries(calls: list[list[LLMMessage]]) -> list[LLMMessage]:
        return [m for c in calls for m in c if "SUMMARY: topics seen." in str(m.content)]

    assert summaries(seen["fifo"]) == []
    assert summaries(seen["summary"])


async def test_state_survives_save_and_load(tmp_path: Path) -> None:
    """save_state/load_state (through JSON) carry messages and ctxmgr's SessionState.

    A fresh agent loaded from the saved state has the same messages and ctxmgr state
    (running summary, turn count, archive) and keeps sending the summary, within budget.
    """
    config = write_config(tmp_path, "summary")
    original = ContextManagerContext.from_config(
        config, system_message=SYSTEM, summarizer=summarizer()
    )
    agent, _ = make_agent(original, 10)
    await run_turns(agent, 10)
    saved = json.loads(json.dumps(await agent.save_state()))
    ctxmgr_state = saved["llm_context"]["ctxmgr_state"]
    assert ctxmgr_state["summary"] == "SUMMARY: topics seen." and ctxmgr_state["turn"] == 20

    restored = ContextManagerContext.from_config(
        config, system_message=SYSTEM, summarizer=summarizer()
    )
    agent2, client2 = make_agent(restored, 3, start=10)
    await agent2.load_state(saved)
    assert restored.manager.state.to_dict() == original.manager.state.to_dict()
    assert [m.model_dump() for m in restored.messages] == [
        m.model_dump() for m in original.messages
    ]
    await run_turns(agent2, 3, start=10)
    calls = received(client2)
    assert len(calls) == 6
    for call in calls:
        assert_well_formed(call)
        assert any("SUMMARY: topics seen." in str(m.content) for m in call)
    assert restored.manager.state.turn == 26  # continued from the saved turn count

    await restored.clear()
    assert restored.messages == [] and restored.manager.state.summary is None


async def test_declarative_component_round_trip(tmp_path: Path) -> None:
    """dump_component()/load_component() rebuild the context with the same ctxmgr config."""
    context = ContextManagerContext.from_config(
        write_config(tmp_path, "summary"),
        system_message=SYSTEM,
        summarizer=summarizer(),
        initial_messages=[UserMessage(content="hello", source="user")],
    )
    model = context.dump_component()
    assert model.provider == PROVIDER == "ctxmgr.adapters.autogen.ContextManagerContext"
    assert model.component_type == "chat_completion_context"
    assert model.config["ctxmgr_config"]["max_context_tokens"] == MAX_TOKENS
    loaded = ChatCompletionContext.load_component(json.loads(model.model_dump_json()))
    assert isinstance(loaded, ContextManagerContext)
    assert loaded.manager.config == context.manager.config
    assert loaded.system_message == SYSTEM
    assert isinstance(loaded.manager.summarizer, AutoGenSummarizer)
    assert [m.model_dump() for m in await loaded.get_messages()] == [
        m.model_dump() for m in await context.get_messages()
    ]
    client = ReplayChatCompletionClient(["hi"], model_info=MODEL_INFO)
    agent = AssistantAgent("plain", client, model_context=context, system_message=None)
    again = AssistantAgent.load_component(agent.dump_component())
    assert isinstance(again.model_context, ContextManagerContext)


# ---------------------------------------------------------------------------------------
# summarizer, 0.2 transform, note tools
# ---------------------------------------------------------------------------------------
async def test_summarizer_async_and_sync() -> None:
    """The summarizer sends the transcript through client.create and returns the text."""
    client = ReplayChatCompletionClient(["S1", "S2"])
    s = AutoGenSummarizer(client)
    evicted = [Message.user("fly to Oslo"), Message.assistant("Booked OS123")]
    assert await s.asummarize("old", evicted, max_tokens=40) == "S1"
    prompt = client.create_calls[0]["messages"][0].content
    assert "Oslo" in prompt and "old" in prompt
    with pytest.raises(RuntimeError):  # blocking is refused inside a running loop
        s.summarize(None, evicted, max_tokens=40)


def test_summarizer_sync_outside_loop() -> None:
    """Outside an event loop the blocking form runs the client."""
    s = AutoGenSummarizer(ReplayChatCompletionClient(["S1"]))
    assert s.summarize(None, [Message.user("x")], max_tokens=10) == "S1"


def test_context_transform_on_openai_dicts() -> None:
    """The 0.2-style transform fits OpenAI dicts, keeps kept dicts as given, and logs."""
    transform = ContextTransform.from_config(
        "fifo", max_context_tokens=MAX_TOKENS, reserve_output_tokens=RESERVE
    )
    history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for i in range(12):
        history += [
            {"role": "user", "content": f"question {i}", "x-extra": i},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"t{i}",
                        "type": "function",
                        "function": {"name": "search", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"t{i}", "content": search(f"q{i}")},
            {"role": "assistant", "content": f"answer {i}"},
        ]
        out = transform.apply_transform(history)
        assert out[0] is history[0]
        assert get_counter().count_messages(messages_from_openai(out)) <= LIMIT
    assert len(out) < len(history)
    kept_user = [m for m in out if m.get("role") == "user"]
    assert all(any(m is h for h in history) for m in kept_user)  # originals, extras intact
    text, changed = transform.get_logs(history, out)
    assert changed and "ctxmgr" in text and f"{len(history)} -> {len(out)}" in text
    assert transform.get_logs(history[:2], history[:2]) == ("ctxmgr: no change", False)


async def test_note_tools_write_to_scratchpad() -> None:
    """The four FunctionTools act on the context's scratchpad."""
    context = ContextManagerContext.from_config("agent", max_context_tokens=MAX_TOKENS)
    tools = {t.name: t for t in note_tools(context)}
    assert sorted(tools) == ["delete_note", "read_notes", "update_note", "write_note"]
    from autogen_core import CancellationToken

    token = CancellationToken()
    await tools["write_note"].run_json({"key": "prefs", "facts": ["aisle seats"]}, token)
    await tools["update_note"].run_json({"key": "prefs", "facts": ["veg"], "append": True}, token)
    text = await tools["read_notes"].run_json({}, token)
    assert "aisle" in text and "veg" in text
    assert "deleted" in await tools["delete_note"].run_json({"key": "prefs"}, token)
    with pytest.raises(Exception, match="scratchpad"):
        note_tools(ContextManager.from_config("fifo", max_context_tokens=MAX_TOKENS))


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the framework, importing the adapter says which extra to install."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "autogen_core", None)
    monkeypatch.delitem(sys.modules, "ctxmgr.adapters.autogen")
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[autogen]"')):
        importlib.import_module("ctxmgr.adapters.autogen")
