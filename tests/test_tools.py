"""Agent-facing context tools (issue #10) at the manager level.

Recall, offload, clearing options, loop detection and compaction on request; the
framework runs are in ``test_agent_tools_e2e.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ctxmgr.strategies.tool_pair_safe import ToolPairSafe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxmgr import AgentLoopError, Budget, ContextManager, Message, ToolCall, get_counter
from ctxmgr.segments import Segment, segment_messages
from ctxmgr.state import Archive, SessionState
from ctxmgr.testing import agent_history, check_tool_pairs, histories
from ctxmgr.tools import compaction_function, read_archived, recall_functions, search_archive
from ctxmgr.window import Window

COUNTER = get_counter()
FREED = re.compile(r"; (\d+) tokens freed\.")
ID_IN_TEXT = re.compile(r'get_message\("([^"]+)"')


def manager(strategies: list[dict[str, Any]], budget: int = 4000, **kw: Any) -> ContextManager:
    flat = [
        {k: v for k, v in s.items() if k != "options"} | s.get("options", {}) for s in strategies
    ]
    return ContextManager.from_config(
        {"max_context_tokens": budget, "reserve_output_tokens": budget // 10, **kw}
        | {"strategies": flat},
        counter=COUNTER,
    )


def big_text(n_chars: int, marker: str = "MIDDLE-SECRET") -> str:
    """``n_chars`` characters of distinct numbered words with ``marker`` in the middle."""
    words, size, i = [], 0, 0
    while size < n_chars:
        words.append(f"w{i}")
        size += len(words[-1]) + 1
        i += 1
    body = " ".join(words)
    half = len(body) // 2
    return (body[:half] + f" {marker} " + body[half:])[:n_chars]


def tool_step(i: int, tool: str, args: dict[str, Any], result: str) -> list[Message]:
    call = ToolCall(f"call_{i}", tool, json.dumps(args))
    return [Message.assistant("", [call]), Message.tool(result, call.id, name=tool)]


# -- recall ------------------------------------------------------------------------------------
def test_search_history_finds_evicted_evidence_with_turn_and_role() -> None:
    """Evicted evidence is found by BM25 and rendered with its id, role, name and turn."""
    mgr = manager([{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}], budget=1500)
    history = [Message.system("You are an agent."), Message.user("Find the launch code.")]
    evidence = "The launch code is ZEBRA-42. " + big_text(500, "filler")
    history += tool_step(0, "read_file", {"path": "codes.txt"}, evidence)
    for i in range(1, 30):
        history += tool_step(i, "search", {"q": f"topic {i}"}, big_text(600, f"noise{i}"))
        mgr.fit(history)
    out, _ = mgr.fit(history)
    assert all("ZEBRA-42" not in m.text for m in out), "evidence should have left the context"
    hits = search_archive(mgr.state.archive, "what is the launch code?", k=3)
    found = [h for h in hits if "ZEBRA-42" in h.entry.message.text]
    assert found and found[0].entry.message is history[3]
    line = found[0].render()
    assert f"id={history[3].id}" in line and "(tool read_file, archived at turn" in line
    assert f"archived at turn {found[0].entry.turn}" in line
    search_history, get_message = recall_functions(lambda: mgr)
    assert "ZEBRA-42" in search_history("launch code", k=3)
    assert "ZEBRA-42" in get_message(history[3].id)
    assert "no archived message" in get_message("m-nothere")
    assert search_history("qqqq zzzz") == "no archived message matches 'qqqq zzzz'"


@pytest.mark.parametrize("query", ["cat food", "support group", "bird morning park"])
def test_search_scores_equal_bm25s_lucene(query: str) -> None:
    """search_archive's scores equal bm25s.BM25(method="lucene") with k1=1.5, b=0.75."""
    import bm25s

    from ctxmgr.tools import _tokenize

    docs = [
        "the cat sat on the mat",
        "dogs chase cats in the park every morning",
        "a bird sings",
        "cat cat cat food for the hungry cat",
        "Caroline went to the LGBTQ support group yesterday",
    ]
    archive = Archive()
    for i, doc in enumerate(docs):
        archive.add(Message.user(doc), "evicted", i)
    hits = search_archive(archive, query, k=10)
    ours = {docs.index(h.entry.message.text): h.score for h in hits}
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index(_tokenize(docs), show_progress=False)
    known = [t for t in set(_tokenize([query])[0]) if t in retriever.vocab_dict]
    expected = retriever.get_scores(known)
    assert ours and all(ours[i] == pytest.approx(expected[i], rel=1e-5) for i in ours)
    assert {i for i, v in enumerate(expected) if v > 0} == set(ours)


SYNONYMS = [{"car", "automobile", "vehicle"}, {"red", "crimson"}, {"dog", "puppy"}]


def synonym_embed(texts: list[str]) -> list[list[float]]:
    """A toy embedding: one dimension per synonym group (deterministic, offline)."""
    out = []
    for text in texts:
        words = set(re.findall(r"\w+", text.lower()))
        out.append([float(len(words & group)) for group in SYNONYMS])
    return out


def test_hybrid_search_finds_synonyms_bm25_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the relevance strategy's embedder, search_history blends in cosine similarity."""
    import sys
    import types

    archive_texts = ["my car is crimson", "the puppy sleeps", "tax forms are due"]
    bm25_only = Archive()
    for i, text in enumerate(archive_texts):
        bm25_only.add(Message.user(text), "evicted", i)
    assert search_archive(bm25_only, "red automobile") == []
    hits = search_archive(bm25_only, "red automobile", embed=synonym_embed)
    assert [h.entry.message.text for h in hits] == ["my car is crimson"]
    module = types.ModuleType("ctxmgr_test_embed")
    module.embed = synonym_embed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ctxmgr_test_embed", module)
    mgr = manager([{"name": "relevance", "options": {"embedder": "ctxmgr_test_embed:embed"}}])
    for i, text in enumerate(archive_texts):
        mgr.state.archive.add(Message.user(text), "evicted", i)
    search_history, _ = recall_functions(lambda: mgr)
    assert "my car is crimson" in search_history("red automobile")
    assert "puppy" not in search_history("red automobile")


def test_get_message_pages_a_long_message() -> None:
    """A long archived text is read in pages; the footer names the next offset."""
    mgr = manager([{"name": "pin_and_slide"}])
    text = big_text(20_000)
    msg = Message.tool(text, "c1", name="read_file")
    mgr.state.archive.add(msg, "offloaded on arrival", 3, "offload")
    first = read_archived(mgr.state.archive, msg.id, max_chars=8000)
    assert text[:8000] in first and text[8000:8100] not in first
    assert f'get_message("{msg.id}", offset=8000)' in first
    pages = [read_archived(mgr.state.archive, msg.id, o, 8000) for o in (0, 8000, 16000)]
    assert "".join(p.split("\n")[2] for p in pages) == text
    assert "more characters" not in pages[-1]


# -- offload -----------------------------------------------------------------------------------
def test_offloaded_result_never_enters_the_context() -> None:
    """A 50,000-character result is replaced at arrival by a preview naming its id."""
    mgr = manager(
        [
            {"name": "offload", "options": {"offload_over_tokens": 1000}},
            {"name": "tool_pair_safe"},
            {"name": "pin_and_slide"},
        ],
        budget=16000,
    )
    huge = big_text(50_000)
    history = [Message.system("You are an agent."), Message.user("Read the log.")]
    history += tool_step(0, "read_file", {"path": "big.log"}, huge)
    out, report = mgr.fit(history)
    assert all("MIDDLE-SECRET" not in m.text and len(m.text) < 5000 for m in out)
    preview = out[-1]
    assert preview.metadata["ctxmgr"] == "offloaded_tool_result"
    assert ID_IN_TEXT.findall(preview.text) == [history[-1].id]
    assert preview.text.count(huge[:200]) == 1 and huge[-200:] in preview.text
    assert mgr.state.archive.get(history[-1].id) is history[-1]
    assert [r.ids for r in report.offloaded] == [tuple(m.id for m in history[-2:])]
    assert report.tokens_before > 10_000 > report.tokens_after
    assert json.loads(json.dumps(report.to_dict()))["offloaded"][0]["strategy"] == "offload"
    # the next fit extends this context: the preview stays, the original never comes back
    history += [Message.assistant("The log is long."), Message.user("Anything else?")]
    out2, report2 = mgr.fit(history)
    assert not report2.compacted and out2[: len(out)] == out
    _, get_message = recall_functions(lambda: mgr)
    assert huge[:1000] in get_message(history[3].id)


def test_offload_thresholds_per_tool_and_exclusions() -> None:
    """per_tool overrides the threshold; exclude_tools are never offloaded."""
    opts = {
        "offload_over_tokens": 300,
        "per_tool": {"grep*": 2000},
        "exclude_tools": ["cat", "get_message"],
    }
    mgr = manager([{"name": "offload", "options": opts}, {"name": "pin_and_slide"}], 30000)
    history = [Message.user("go")]
    for i, tool in enumerate(["grep_repo", "cat", "get_message", "ls"]):
        history += tool_step(i, tool, {}, big_text(4000, f"m{i}"))
    pinned = ToolCall("call_p", "ls", "{}")
    history += [
        Message.assistant("", [pinned]),
        Message.tool(big_text(4000, "pinned"), pinned.id, name="ls_pinned", pinned=True),
    ]
    out, report = mgr.fit(history)
    kept = {m.name: "offloaded" if m.metadata.get("ctxmgr") else "whole" for m in out[1:]}
    assert kept == {
        None: "whole",
        "grep_repo": "whole",
        "cat": "whole",
        "get_message": "whole",
        "ls": "offloaded",
        "ls_pinned": "whole",
    }
    assert len(report.offloaded) == 1


# -- clearing parity ---------------------------------------------------------------------------
@given(
    at_least=st.sampled_from([0, 300, 1200, 5000]),
    excess=st.integers(min_value=1, max_value=8000),
    seed=st.integers(min_value=0, max_value=20),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_clear_at_least_clears_a_batch_of_that_size_or_nothing(
    at_least: int, excess: int, seed: int
) -> None:
    """One shrink clears 0 tokens or at least ``clear_at_least`` (net of placeholders)."""
    opts = ToolPairSafe.Options(
        clear_at_least=at_least, keep_recent_tool_results=1, truncate_to_fit=False
    )
    segments, _ = segment_messages(agent_history(60, seed=seed, result_words=70))
    segments = [Segment(s.messages, s.start, COUNTER.count_messages(s.messages)) for s in segments]
    window = Window(list(segments), Budget(100_000), COUNTER, SessionState())
    clearable = sum(
        COUNTER.count_message(m) - 40
        for s in segments[:-1]
        for m in s.messages[1:]
        if s.is_tool_exchange
    )
    ToolPairSafe(opts).ctxmgr_shrink(window=window, excess_tokens=excess)
    freed = sum(rec.tokens - window.segments[i].tokens for i, rec in window.cleared.items())
    assert freed == 0 or freed >= at_least
    assert freed >= min(excess, at_least) or clearable < max(excess, at_least)
    placeholders = [m for s in window.segments for m in s.messages if FREED.search(m.text)]
    assert bool(placeholders) == (freed > 0)


def test_exclude_tools_and_clear_tool_inputs() -> None:
    """Excluded tools keep their results; cleared calls lose their arguments, archived."""
    opts = {"exclude_tools": ["read_*"], "clear_tool_inputs": True, "keep_recent_tool_results": 1}
    mgr = manager([{"name": "tool_pair_safe", "options": opts}, {"name": "pin_and_slide"}], 3000)
    history = [Message.system("agent"), Message.user("go")]
    for i in range(12):
        tool = "read_file" if i % 3 == 0 else "search"
        history += tool_step(i, tool, {"q": f"query number {i} " * 5}, big_text(700, f"r{i}"))
    out, report = mgr.fit(history)
    assert report.cleared
    calls = {c.id: c for m in out for c in m.tool_calls}
    results = {m.tool_call_id or "": m for m in out if m.role == "tool"}
    for cid, result in results.items():
        if result.metadata.get("ctxmgr") == "cleared_tool_result":
            assert calls[cid].name == "search"
            assert json.loads(calls[cid].arguments)["ctxmgr"].startswith("arguments cleared")
            assert "query number" not in result.text
            original = mgr.state.archive.get(result.metadata["original_id"])
            assert original is not None and "query" not in original.text
        elif calls[cid].name == "read_file":
            assert result.metadata.get("ctxmgr") is None
    heads = [m for m in out if m.metadata.get("ctxmgr") == "cleared_tool_inputs"]
    assert heads and all(mgr.state.archive.get(h.metadata["original_id"]) for h in heads)
    assert check_tool_pairs(out) == []


# -- loop guard --------------------------------------------------------------------------------
def looping(n: int, guard: dict[str, Any]) -> tuple[ContextManager, list[Any]]:
    mgr = manager([{"name": "loop_guard", "options": guard}, {"name": "pin_and_slide"}], 20000)
    history = [Message.user("fix the bug")]
    reports = []
    for i in range(n):
        history += tool_step(i, "run_tests", {"path": "tests/", "verbose": True}, "1 failed")
        reports.append(mgr.fit(history).report)
    return mgr, reports


def test_loop_guard_reports_at_the_nth_repeat() -> None:
    """Identical calls are reported from the ``repeats``-th on, with their count."""
    _, reports = looping(5, {"repeats": 3})
    same = [[d["count"] for d in r.loops if d["kind"] == "same_call"] for r in reports]
    assert same == [[], [], [3], [4], [5]]
    loop = reports[2].loops[0]
    assert loop["tool"] == "run_tests" and json.loads(loop["arguments"]) == {
        "path": "tests/",
        "verbose": True,
    }
    assert {d["kind"] for d in reports[2].loops} == {"same_call", "same_result"}
    assert json.loads(json.dumps(reports[2].to_dict()))["loops"] == reports[2].loops
    assert "loops 2" in str(reports[2])


def test_loop_guard_state_is_one_batch_per_fit_and_reads_older_rows() -> None:
    """The window's events are one JSON batch per fit; older per-event rows still load.

    A cold fit of many tool calls is then one string to checkpoint; a session stored with
    rows of [turn, kind, tool, key, event id] keeps its turns and the next repeat counts.
    """
    mgr, reports = looping(3, {"repeats": 3, "window_turns": 5})
    seen = mgr.state.extra["loop_guard"]["seen"]
    assert [batch[0] for batch in seen] == [1, 2, 3]
    assert [len(json.loads(batch[1])) for batch in seen] == [2, 2, 2]  # call + result
    rows = [[t, *event] for t, events in seen for event in json.loads(events)]
    state = mgr.state.to_dict()
    state["extra"]["loop_guard"]["seen"] = rows
    other = manager([{"name": "loop_guard", "repeats": 3, "window_turns": 5}], 20000)
    other.load_state(json.loads(json.dumps(state)))
    history = [Message.user("fix the bug")]
    for i in range(4):
        history += tool_step(i, "run_tests", {"path": "tests/", "verbose": True}, "1 failed")
    turns = {d["kind"]: d["turns"] for d in other.fit(history).report.loops}
    assert turns == {"same_call": [1, 2, 3, 4], "same_result": [1, 2, 3, 4]}
    assert reports[-1].loops[0]["turns"] == [1, 2, 3]


def test_loop_guard_cold_fit_counts_only_the_window() -> None:
    """A history loaded at once: repeats far apart are no loop, as for a warm manager.

    The same call at steps 0, 10 and 25 of 30 (other calls between) with a 5-turn window
    is reported neither by a cold fit nor step by step; the same call in the last three
    steps is reported by both, and the cold fit keeps only the window's events.
    """

    def history(repeat_at: set[int]) -> list[Message]:
        out = [Message.user("fix the bug")]
        for i in range(30):
            args = {"path": "tests/"} if i in repeat_at else {"path": f"src/{i}.py"}
            out += tool_step(i, "run_tests", args, f"result {i}")
        return out

    guard = {"name": "loop_guard", "repeats": 3, "window_turns": 5, "same_results": False}
    for repeat_at, expected in (({0, 10, 25}, []), ({27, 28, 29}, [3])):
        full = history(repeat_at)
        cold = manager([guard, {"name": "pin_and_slide"}], 20000)
        report = cold.fit(full).report
        assert [d["count"] for d in report.loops] == expected
        kept = json.loads(cold.state.extra["loop_guard"]["seen"][-1][1])
        assert len(kept) == 5  # the window's calls only
        warm = manager([guard, {"name": "pin_and_slide"}], 20000)
        for n in range(3, len(full) + 1, 2):
            last = warm.fit(full[:n]).report
        assert [d["count"] for d in last.loops] == expected


def test_loop_guard_window_note_and_error() -> None:
    """Outside the window nothing is reported; the note is appended; raise_after raises."""
    _, reports = looping(4, {"repeats": 3, "window_turns": 2})
    assert all(r.loops == [] for r in reports)
    _, reports = looping(3, {"repeats": 3, "inject_note": True, "same_results": False})
    notes = [i for i in reports[-1].injected if i.reason == "loop_note"]
    assert notes and reports[-1].loops[0]["count"] == 3
    with pytest.raises(AgentLoopError, match=r"run_tests.*3 times") as info:
        looping(3, {"repeats": 2, "raise_after": 3})
    assert info.value.count == 3 and info.value.tool == "run_tests"


@pytest.mark.parametrize(("provider", "role"), [("openai", "system"), ("anthropic", "user")])
def test_loop_note_role_follows_the_provider_profile(provider: str, role: str) -> None:
    """note_role = "auto": the profile's injection role; the context stays valid for it."""
    guard = {"name": "loop_guard", "repeats": 2, "inject_note": True, "same_results": False}
    mgr = manager([guard, {"name": "pin_and_slide"}], 20000, provider=provider)
    history = [Message.system("agent"), Message.user("fix the bug")]
    for i in range(2):
        history += tool_step(i, "run_tests", {"path": "tests/"}, f"{i} failed")
        out, report = mgr.fit(history)
    notes = [m for m in out if m.metadata.get("ctxmgr") == "loop_note"]
    assert report.loops and len(notes) == 1 and notes[0].role == role
    assert check_tool_pairs(out) == []


def test_loop_guard_error_leaves_the_manager_usable() -> None:
    """After AgentLoopError the next fit continues from the committed context."""
    mgr = manager(
        [{"name": "loop_guard", "options": {"raise_after": 2}}, {"name": "pin_and_slide"}], 20000
    )
    history = [Message.user("go")]
    history += tool_step(0, "ls", {}, "a b")
    mgr.fit(history)
    history += tool_step(1, "ls", {}, "a b")
    with pytest.raises(AgentLoopError) as info:
        mgr.fit(history)
    assert [m.id for m in info.value.result.messages] == [m.id for m in history]
    assert info.value.result.report.loops[0]["count"] == 2
    history += [Message.user("try something else")]
    out, _ = mgr.fit(history)
    assert [m.id for m in out] == [m.id for m in history]


def test_a_stored_session_saves_the_fit_that_raised_agent_loop_error() -> None:
    """Stores keep the committed fit behind AgentLoopError, so the loop is not re-raised."""
    from ctxmgr.stores import MemoryStore, StoredSession

    store = MemoryStore()
    guard = [{"name": "loop_guard", "options": {"raise_after": 2}}, {"name": "pin_and_slide"}]
    history = [Message.user("go")]
    history += tool_step(0, "ls", {}, "a b")
    StoredSession(manager(guard, 20000), store, "c").fit(history)
    history += tool_step(1, "ls", {}, "a b")
    with pytest.raises(AgentLoopError):
        StoredSession(manager(guard, 20000), store, "c").fit(history)
    history += [Message.user("try something else")]
    worker = StoredSession(manager(guard, 20000), store, "c")
    out, report = worker.fit(history)  # another worker continues: the loop is known
    assert report.loops == [] and [m.id for m in out] == [m.id for m in history]
    search_history, _ = recall_functions(lambda: worker.manager)
    assert search_history("nothing archived here") == (
        "no archived message matches 'nothing archived here'"
    )


def test_compaction_requested_on_one_worker_reaches_the_next_fit_on_another() -> None:
    """With a store, compact_context is a transaction: another worker's fit honours it."""
    from ctxmgr.stores import MemoryStore

    store = MemoryStore()
    config = {
        "max_context_tokens": 20000,
        "strategies": [{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}],
    }

    def worker() -> ContextManager:
        return ContextManager.from_config(config, store=store, conversation_id="c")

    a, b = worker(), worker()
    history = agent_history(40, seed=4, result_words=40)
    _, first = a.fit(history)
    compaction_function(lambda: b)("switching tasks")
    history += [Message.user("now the next task")]
    out, report = a.fit(history)
    assert report.compacted and report.reason == "requested: switching tasks"
    assert report.tokens_after <= first.tokens_after // 2 and check_tool_pairs(out) == []


# -- compaction on request ---------------------------------------------------------------------
def test_compaction_on_request() -> None:
    """request_compaction (and the compact_context tool) compacts the next fit, then clears."""
    mgr = manager([{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}], 20000)
    history = agent_history(40, seed=1, result_words=40)
    _, report = mgr.fit(history)
    assert not report.compacted
    with pytest.raises(ValueError, match="target_fraction"):
        mgr.request_compaction("x", target_fraction=0)
    compact_context = compaction_function(lambda: mgr)
    answer = compact_context("done exploring")
    assert "compaction requested" in answer
    history += [Message.user("now fix it")]
    out2, report2 = mgr.fit(history)
    assert report2.compacted and report2.reason == "requested: done exploring"
    assert report2.tokens_after <= report.tokens_after // 2
    assert check_tool_pairs(out2) == []
    history += [Message.assistant("ok")]
    _, report3 = mgr.fit(history)
    assert not report3.compacted
    state = mgr.state.to_dict()
    assert json.dumps(state) and "compaction_request" not in state["extra"]


def test_compaction_request_survives_a_session_store() -> None:
    """A request made on one worker is honoured by the next fit on another (state as JSON)."""
    history = agent_history(40, seed=3, result_words=40)
    first = manager([{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}], 20000)
    first.fit(history)
    first.request_compaction("handover", target_tokens=2000)
    second = manager([{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}], 20000)
    second.load_state(json.loads(json.dumps(first.state.to_dict())))
    out, report = second.fit([*history, Message.user("go on")])
    assert report.compacted and report.reason == "requested: handover"
    assert report.tokens_after <= 2000 and check_tool_pairs(out) == []


# -- invariants with the new options -----------------------------------------------------------
CONFIG: list[dict[str, Any]] = [
    {"name": "offload", "options": {"offload_over_tokens": 400, "preview_tokens": 60}},
    {"name": "loop_guard", "options": {"repeats": 2, "inject_note": True}},
    {
        "name": "tool_pair_safe",
        "options": {
            "clear_at_least": 200,
            "clear_tool_inputs": True,
            "clear_reasoning": True,
            "exclude_tools": ["read"],
            "keep_recent_tool_results": 1,
        },
    },
    {"name": "pin_and_slide"},
]


@given(
    history=histories(max_steps=30, reasoning=True),
    budget=st.integers(min_value=400, max_value=5000),
    cuts=st.lists(st.integers(min_value=1, max_value=150), min_size=1, max_size=5),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_invariants_hold_with_offload_clearing_and_loop_guard(
    history: list[Message], budget: int, cuts: list[int]
) -> None:
    """Budget, pairs, pins and nothing lost hold with the new strategies and reasoning."""
    mgr = manager(CONFIG, budget)
    for n in sorted({min(c, len(history)) for c in cuts} | {len(history)}):
        prefix = history[:n]
        try:
            out, report = mgr.fit(prefix)
        except Exception as exc:  # only an honest overflow is allowed
            assert type(exc).__name__ == "ContextOverflowError", exc
            return
        assert COUNTER.count_messages(out) <= mgr.budget.effective_limit
        assert report.tokens_after == COUNTER.count_messages(out)
        assert check_tool_pairs(out) == []
        ids = {(m.id, m.fingerprint) for m in out}
        for m in prefix:
            if m.pinned:
                assert (m.id, m.fingerprint) in ids, "pinned message missing"
            assert (m.id, m.fingerprint) in ids or m in mgr.state.archive, f"lost {m!r}"
        for m in out:  # every placeholder and preview names a message get_message can read
            original = m.metadata.get("original_id")
            if original is not None:
                assert mgr.state.archive.get(str(original)) is not None, f"unreachable {m!r}"
