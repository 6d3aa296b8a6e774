"""Peer baselines (ctxmgr.bench.peers): every peer runs, maps back to original messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ctxmgr.bench import peers
from ctxmgr.bench.fitter import FitSession, Fitter
from ctxmgr.bench.peers import PEERS, make_peers
from ctxmgr.bench.transcript import Transcript
from ctxmgr.errors import ConfigError
from ctxmgr.messages import Message, ToolCall, messages_from_openai
from ctxmgr.tokens import ApproxCounter, TokenCounter, get_counter

ALL_PEERS = [
    "langchain.trim_messages",
    "langchain.summarization",
    "llamaindex.ChatMemoryBuffer",
    "llamaindex.Memory",
    "autogen.BufferedChatCompletionContext",
    "autogen.HeadAndTailChatCompletionContext",
    "autogen.TokenLimitedChatCompletionContext",
    "ag2.MessageHistoryLimiter",
    "pydantic_ai.keep_recent",
    "openai_agents.SessionSettings.limit",
]


# ---------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return get_counter("tiktoken")


def tool_history(rounds: int = 4) -> list[Message]:
    """System, then rounds of: user, assistant with 2 parallel calls, 2 results, answer."""
    out = [Message.system("You are a travel agent. Follow the policy and use the tools.")]
    for r in range(rounds):
        out.append(Message.user(f"Round {r}: what is the status of flights HAT{r}1 and HAT{r}2?"))
        calls = [
            ToolCall(f"call_{r}_a", "get_flight_status", json.dumps({"flight": f"HAT{r}1"})),
            ToolCall(f"call_{r}_b", "get_flight_status", json.dumps({"flight": f"HAT{r}2"})),
        ]
        out.append(Message.assistant("", calls))
        for call in calls:
            status = " ".join(f"seat {i} available at ${100 + i} on {call.id}" for i in range(12))
            out.append(Message.tool(status, call.id, name="get_flight_status"))
        out.append(Message.assistant(f"Both flights of round {r} are on time."))
    out.append(Message.user("yes"))  # equal-content turns must still map to the right object
    out.append(Message.assistant("Anything else?"))
    out.append(Message.user("yes"))
    return out


def transcript(messages: list[Message], tid: str = "synthetic/1") -> Transcript:
    return Transcript(tid, "synthetic", "test", messages)


def check_sublist_or_peer(
    out: Sequence[Message], history: Sequence[Message], peer: str
) -> tuple[int, int]:
    """Assert ``out`` holds originals (by identity, in history order) or peer-made messages.

    Returns:
        (originals, peer-made) counts.
    """
    position = {id(m): i for i, m in enumerate(history)}
    last = -1
    originals = made = 0
    for message in out:
        index = position.get(id(message))
        if index is None:
            assert message.metadata.get("peer") == peer, f"{peer}: foreign message {message!r}"
            made += 1
        else:
            assert index > last, f"{peer}: original messages out of order"
            last = index
            originals += 1
    return originals, made


def signature(out: Sequence[Message], history: Sequence[Message]) -> list[Any]:
    """Compare outputs across sessions: originals by position, peer-made ones by text."""
    position = {id(m): i for i, m in enumerate(history)}
    return [position.get(id(m), ("peer", m.role, m.text)) for m in out]


def fit_points(history: Sequence[Message]) -> list[int]:
    """Prefix lengths where the replay would fit: before every assistant message, and the end."""
    points = [i for i, m in enumerate(history) if m.role == "assistant" and i > 0]
    return [*points, len(history)]


def tool_pair_violations(out: Sequence[Message], history: Sequence[Message]) -> int:
    """Tool results without their call earlier in ``out``, plus answered calls without result."""
    answered = {m.tool_call_id for m in history if m.role == "tool"}
    violations = 0
    open_calls: set[str] = set()
    for message in out:
        if message.role == "tool":
            if message.tool_call_id in open_calls:
                open_calls.discard(message.tool_call_id)
            else:
                violations += 1
        for call in message.tool_calls:
            open_calls.add(call.id)
    return violations + len(open_calls & answered)


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------
def test_make_peers_all_lists_every_peer() -> None:
    fitters = make_peers("all")
    assert [f.name for f in fitters] == ALL_PEERS == list(PEERS)
    for fitter in fitters:
        assert isinstance(fitter, Fitter)
        assert fitter.kind == "peer"
        assert fitter.notes


def test_make_peers_none_and_names() -> None:
    assert make_peers("none") == []
    assert make_peers("") == []
    chosen = make_peers(" autogen.BufferedChatCompletionContext , langchain.trim_messages,")
    assert [f.name for f in chosen] == [
        "autogen.BufferedChatCompletionContext",
        "langchain.trim_messages",
    ]
    assert len(make_peers("langchain.trim_messages,langchain.trim_messages")) == 1


def test_make_peers_unknown_name_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        make_peers("langchain.trim_messages,mem0")
    assert "'mem0'" in str(info.value)
    assert set(ALL_PEERS) <= set(info.value.allowed)
    assert "langchain.summarization" in str(info.value)


def test_missing_framework_names_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(peers._EXTRA_MODULES, "llamaindex", ("ctxmgr_no_such_module_x",))
    with pytest.raises(ImportError, match=r'pip install "ctxmgr-llm\[llamaindex\]"'):
        make_peers("llamaindex.Memory")


@pytest.mark.parametrize("budget", [0, -5, 2.5, True])
def test_bad_budget(budget: Any, counter: TokenCounter) -> None:
    fitter = make_peers("langchain.trim_messages")[0]
    with pytest.raises(ConfigError, match="budget"):
        fitter.start(transcript(tool_history()), budget, counter)


# ---------------------------------------------------------------------------------------
# every peer on a synthetic tool-using history
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_PEERS)
def test_peer_returns_originals_or_marked_messages(name: str, counter: TokenCounter) -> None:
    history = tool_history()
    fitter = PEERS[name]()
    session = fitter.start(transcript(history), 300, counter)
    assert isinstance(session, FitSession)
    dropped = False
    for k in range(1, len(history) + 1):
        out = session.fit(history[:k])
        originals, _ = check_sublist_or_peer(out, history[:k], name)
        dropped = dropped or originals < k
    assert dropped, f"{name} never dropped anything at a 300-token budget"
    # a large budget keeps everything (the FunctionExecutionResultMessage expands to 2 tools)
    roomy = fitter.start(transcript(history), 100_000, counter)
    out = roomy.fit(history)
    assert [id(m) for m in out] == [id(m) for m in history]


@pytest.mark.parametrize("name", ALL_PEERS)
def test_fork_isolates_state(name: str, counter: TokenCounter) -> None:
    history = tool_history(rounds=6)
    cut = 17
    fitter = PEERS[name]()
    session = fitter.start(transcript(history), 350, counter)
    for k in range(1, cut + 1):
        session.fit(history[:k])
    fork = session.fork()
    assert isinstance(fork, FitSession)
    # the fork answers a probe question and goes its own way ...
    probe = [*history[:cut], Message.user("Which flights did we discuss?")]
    probe_out = fork.fit(probe)
    check_sublist_or_peer(probe_out, probe, name)
    fork.fit(history[: cut + 3])
    fork.fit(history[:5])  # not an extension: rebuilt from scratch
    # ... while the original continues exactly like an undisturbed session
    reference = fitter.start(transcript(history), 350, counter)
    for k in range(1, len(history) + 1):
        expected = reference.fit(history[:k])
        if k > cut:
            got = session.fit(history[:k])
            assert signature(got, history) == signature(expected, history), f"{name} at {k}"
    assert session.summarizer_calls == reference.summarizer_calls


@pytest.mark.parametrize("name", ALL_PEERS)
def test_non_extension_rebuilds(name: str, counter: TokenCounter) -> None:
    history = tool_history()
    other = [*tool_history(rounds=3)[:-1], Message.user("something else entirely")]
    fitter = PEERS[name]()
    session = fitter.start(transcript(history), 300, counter)
    for k in range(1, len(history) + 1):
        session.fit(history[:k])
    fresh = fitter.start(transcript(history), 300, counter)
    for k in range(1, len(other) + 1):
        expected = fresh.fit(other[:k])
    assert signature(session.fit(other), other) == signature(expected, other)


def test_trim_messages_keeps_system(counter: TokenCounter) -> None:
    history = tool_history()
    session = PEERS["langchain.trim_messages"]().start(transcript(history), 200, counter)
    for k in range(1, len(history) + 1):
        out = session.fit(history[:k])
        assert out[0] is history[0]
        assert counter.count_messages(out) <= 200
        if len(out) > 1:
            assert out[1].role == "user"  # start_on="human"


def test_summarization_marks_summaries_and_counts_calls(counter: TokenCounter) -> None:
    history = tool_history(rounds=6)
    name = "langchain.summarization"
    session = PEERS[name]().start(transcript(history), 400, counter)
    for k in range(1, len(history) + 1):
        out = session.fit(history[:k])
        assert out[0] is history[0]  # the system prompt stays outside the summarized state
    assert session.summarizer_calls > 0
    summaries = [m for m in out if m.metadata.get("peer") == name]
    assert len(summaries) == 1
    assert summaries[0].role == "user"
    assert peers.CANNED_SUMMARY in summaries[0].text
    # the same state maps to the same Message objects; a repeated fit re-runs the hook (one
    # model call each), which summarizes again only while the state is still over the trigger
    calls = session.summarizer_calls
    again = session.fit(history)
    if session.summarizer_calls == calls:
        assert again[1] is summaries[0]
    else:
        assert again[1] is not summaries[0]
        assert again[1].metadata["peer"] == name


@pytest.mark.parametrize("name", [n for n in ALL_PEERS if n != "langchain.summarization"])
def test_no_summarizer_calls(name: str, counter: TokenCounter) -> None:
    history = tool_history()
    session = PEERS[name]().start(transcript(history), 200, counter)
    session.fit(history)
    assert session.summarizer_calls == 0


@pytest.mark.parametrize(
    "name", ["langchain.summarization", "llamaindex.ChatMemoryBuffer", "llamaindex.Memory"]
)
def test_system_prompt_is_kept_outside_the_memory(name: str, counter: TokenCounter) -> None:
    history = tool_history(rounds=6)
    system = Message.system("Policy. " * 60)  # larger than the budget's share of history
    history = [system, *history[1:]]
    session = PEERS[name]().start(transcript(history), 250, counter)
    assert session.fit(history[:1]) == [system]
    for k in range(2, len(history) + 1):
        out = session.fit(history[:k])
        assert out[0] is system
        assert system not in out[1:]


def test_head_and_tail_placeholder_is_marked(counter: TokenCounter) -> None:
    history = tool_history(rounds=6)
    name = "autogen.HeadAndTailChatCompletionContext"
    out = PEERS[name]().start(transcript(history), 1000, counter).fit(history)  # tail of 5
    made = [m for m in out if id(m) not in {id(h) for h in history}]
    assert len(made) == 1
    assert made[0].metadata["peer"] == name
    assert made[0].text.startswith("Skipped ")
    assert out[0] is history[0]


@pytest.mark.parametrize("name", [n for n in ALL_PEERS if n.startswith("autogen.")])
def test_autogen_tool_results_split_across_fits(name: str, counter: TokenCounter) -> None:
    history = tool_history()
    first_tool = next(i for i, m in enumerate(history) if m.role == "tool")
    split = PEERS[name]().start(transcript(history), 100_000, counter)
    split.fit(history[: first_tool + 1])  # the second parallel result arrives in the next fit
    whole = PEERS[name]().start(transcript(history), 100_000, counter)
    for budget_session in (split, whole):
        out = budget_session.fit(history)
        assert [id(m) for m in out] == [id(m) for m in history]
    # both sessions hold one FunctionExecutionResultMessage per step
    assert len(split._objs) == len(whole._objs)  # type: ignore[attr-defined]


def test_chat_memory_buffer_counts_match_llamaindex(counter: TokenCounter) -> None:
    """Same results as ChatMemoryBuffer's own loop, used the way LlamaIndex chat engines do."""
    from llama_index.core.memory import ChatMemoryBuffer

    history = tool_history(rounds=6)
    history[3:3] = [Message.user("  spaces around \n"), Message.user(""), Message.user("\nx")]
    system, rest = history[0], history[1:]
    for budget in (150, 400, 900):
        session = PEERS["llamaindex.ChatMemoryBuffer"]().start(transcript(history), budget, counter)
        reference = ChatMemoryBuffer.from_defaults(
            token_limit=budget, tokenizer_fn=lambda text: [0] * counter.count_text(text)
        )
        initial = len(reference.tokenizer_fn(system.text))  # prefix messages, as chat engines
        position = {id(m): i for i, m in enumerate(rest)}
        for k, message in enumerate(rest, start=1):
            reference.put(peers._to_llama(message))
            chats = reference.get_all()
            got = session.fit(history[: k + 1])
            assert got[0] is system
            expected = [
                next(i for i, c in enumerate(chats) if c is x)
                for x in reference.get(initial_token_count=initial)
            ]
            assert [position[id(m)] for m in got[1:]] == expected, f"budget {budget}, {k}"


def test_chat_memory_buffer_other_counters_use_llamaindex_loop() -> None:
    history = tool_history()
    session = PEERS["llamaindex.ChatMemoryBuffer"]().start(
        transcript(history), 200, ApproxCounter()
    )
    out = session.fit(history)
    check_sublist_or_peer(out, history, "llamaindex.ChatMemoryBuffer")
    assert session._joined is None  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# a real tau-bench transcript
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tau(data_dir: Path) -> Transcript:
    with open(data_dir / "tau-bench" / "gpt-4o-airline.json", encoding="utf-8") as fh:
        records = json.load(fh)
    longest = max(records, key=lambda r: len(r["traj"]))
    messages = messages_from_openai(longest["traj"])
    return Transcript(f"tau/{longest['task_id']}", "tau-bench", "gpt-4o-airline.json", messages)


@pytest.mark.data
@pytest.mark.parametrize("name", ALL_PEERS)
def test_peer_on_tau_bench(name: str, tau: Transcript, counter: TokenCounter) -> None:
    history = tau.messages
    session = PEERS[name]().start(tau, 2000, counter)
    points = fit_points(history)
    for k in [*points[:: max(1, len(points) // 6)], len(history)]:
        out = session.fit(history[:k])
        check_sublist_or_peer(out, history[:k], name)
        assert out
    probe = [*history, Message.user("What is my reservation id?")]
    out = session.fork().fit(probe)
    check_sublist_or_peer(out, probe, name)


@pytest.mark.data
def test_trim_messages_tool_pair_violations_on_tau(tau: Transcript, counter: TokenCounter) -> None:
    """Count (not judge) broken tool pairs; run with -s to see the numbers."""
    history = tau.messages
    for budget in (1000, 2000):
        session = PEERS["langchain.trim_messages"]().start(tau, budget, counter)
        violations = fits = only_system = 0
        for k in fit_points(history):
            out = session.fit(history[:k])
            violations += tool_pair_violations(out, history[:k])
            only_system += out == [history[0]]
            fits += 1
        print(
            f"\nlangchain.trim_messages on {tau.id} at budget {budget}: {violations} tool-pair "
            f"violations in {fits} fits ({only_system} fits kept only the system message)"
        )
        assert violations >= 0
