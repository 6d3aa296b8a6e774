"""Replay: exact per-transcript numbers on tiny synthetic transcripts with fake fitters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ctxmgr.bench.replay import Replay, TranscriptResult, replay_transcript
from ctxmgr.bench.results import ROW_KEYS, aggregate, write_results
from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.messages import Message, ToolCall


class WordCounter:
    """One token per whitespace word, 3 per message, 3 per request (reply priming)."""

    name = "words"
    reply_priming = 3

    def count_text(self, text: str) -> int:
        """Words in ``text``."""
        return len(text.split())

    def count_message(self, message: Message) -> int:
        """3 + words of the message text."""
        return 3 + self.count_text(message.text)

    def count_messages(self, messages: Sequence[Message]) -> int:
        """Sum of message counts plus 3."""
        return sum(self.count_message(m) for m in messages) + 3


class FifoSession:
    """Keeps the system messages plus the longest suffix that fits the budget (stateless).

    Logs the history length of every fit (negative on forks).
    """

    def __init__(self, budget: int, counter: WordCounter, log: list[int], sign: int = 1):
        self.budget = budget
        self.counter = counter
        self.summarizer_calls = 0
        self.log = log
        self.sign = sign

    def fit(self, history: Sequence[Message]) -> list[Message]:
        """Return system messages + newest messages within the budget."""
        self.log.append(self.sign * len(history))
        system = [m for m in history if m.role == "system"]
        rest = [m for m in history if m.role != "system"]
        kept: list[Message] = []
        for message in reversed(rest):
            if self.counter.count_messages([*system, message, *kept]) > self.budget:
                break
            kept.insert(0, message)
        return [*system, *kept]

    def fork(self) -> FifoSession:
        """A copy whose fits are logged as negative history lengths."""
        return FifoSession(self.budget, self.counter, self.log, sign=-1)


class Fifo:
    """Fake FIFO fitter; records the history length of every fit in ``log``."""

    name = "fake-fifo"
    kind = "ctxmgr"
    notes = "test fake"

    def __init__(self) -> None:
        self.log: list[int] = []

    def start(self, transcript: Transcript, budget: int, counter: WordCounter) -> FifoSession:
        """Open a stateless session."""
        return FifoSession(budget, counter, self.log)


class KeepAllSession:
    """Sends the history untouched; counts one summarizer call per fit."""

    summarizer_calls = 0

    def fit(self, history: Sequence[Message]) -> list[Message]:
        """Return the history as is."""
        self.summarizer_calls += 1
        return list(history)

    def fork(self) -> KeepAllSession:
        """A fresh copy."""
        return KeepAllSession()


class KeepAll:
    """Fake fitter that never trims."""

    name = "keep-all"
    kind = "peer"
    notes = ""

    def start(self, transcript: Transcript, budget: int, counter: WordCounter) -> KeepAllSession:
        """Open a session."""
        return KeepAllSession()


class Broken:
    """Fake fitter that raises on transcripts whose id contains 'qa'."""

    name = "broken"
    kind = "peer"
    notes = ""

    def start(self, transcript: Transcript, budget: int, counter: WordCounter) -> KeepAllSession:
        """Raise for qa transcripts, else behave like KeepAll."""
        if "qa" in transcript.id:
            raise RuntimeError("boom\nsecond line")
        return KeepAllSession()


def tools_transcript() -> Transcript:
    """System, user, tool call + result, answer, user, answer; one action probe at 2.

    Message tokens (WordCounter): S 5, U 5, call 3, result 5, A 5, U2 5, A2 5.
    """
    messages = [
        Message.system("sys prompt", id="S"),
        Message.user("book flight", id="U"),
        Message.assistant("", [ToolCall("c1", "book", "{}")], id="Ac"),
        Message.tool("result JFK", "c1", id="T"),
        Message.assistant("booked JFK", id="A"),
        Message.user("thanks bye", id="U2"),
        Message.assistant("goodbye now", id="A2"),
    ]
    probe = Probe(kind="action", position=2, values=("flight", "JFK"))
    return Transcript("toy/tools", "toy-tools", "mem", messages, [probe])


def qa_transcript() -> Transcript:
    """Four LoCoMo-like turns (no system) and three qa probes (one adversarial)."""

    def turn(role: str, dia: str, text: str) -> Message:
        return Message(role, text, id=f"qa/{dia}", metadata={"dia_id": dia})  # type: ignore[arg-type]

    messages = [
        turn("user", "D1:1", "I moved Paris"),  # 6 tokens
        turn("assistant", "D1:2", "nice city"),  # 5
        turn("user", "D1:3", "adopted cat"),  # 5
        turn("assistant", "D1:4", "cute cat"),  # 5
    ]
    probes = [
        Probe(
            kind="qa", question="where moved", answer="Paris", evidence_ids=("D1:1",), category=1
        ),
        Probe(
            kind="qa", question="what pet", answer="cat", evidence_ids=("D1:3", "D1:4"), category=1
        ),
        Probe(kind="qa", question="who else", answer="nobody", evidence_ids=("D1:2",), category=5),
    ]
    return Transcript("toy/qa", "toy-qa", "mem", messages, probes)


def test_fifo_on_tool_transcript_exact() -> None:
    """Budget 14: contexts [S,U], [S,T] (orphan result), [S,U2]; action probe reuses turn 2."""
    fitter = Fifo()
    res = replay_transcript(fitter, tools_transcript(), 14, WordCounter(), trace=True)
    assert res.error is None
    assert fitter.log == [2, 4, 6]  # one fit per assistant message, none for the probe
    assert (res.fits, res.turn_fits, res.probe_fits) == (3, 3, 0)
    assert res.turn_tokens == [13, 13, 13]
    assert res.budget_violations == 0
    assert (res.tool_pair_violation_fits, res.broken_tool_pairs) == (1, 1)
    assert (res.system_kept, res.system_fits) == (3, 3)
    assert (res.latest_user_kept, res.latest_user_fits) == (2, 3)  # U lost at turn 2
    assert (res.prefix_extends, res.prefix_pairs) == (0, 2)
    assert (res.action_found, res.action_total) == (1, 2)  # "flight" yes, "JFK" not yet
    assert res.cached_tokens == 0
    assert len(res.overhead_ms) == 3 and all(ms >= 0 for ms in res.overhead_ms)
    assert res.trace is not None and res.trace.history_len == [2, 4, 6]
    assert res.trace.tokens == [13, 13, 13]


def test_keep_all_on_tool_transcript_counts_violations() -> None:
    """Never trimming: 2 of 3 fits over budget 14, prefix always extends, 3 summarizer calls."""
    res = replay_transcript(KeepAll(), tools_transcript(), 14, WordCounter())
    assert res.turn_tokens == [13, 21, 31]
    assert res.budget_violations == 2
    assert res.tool_pair_violation_fits == 0
    assert (res.prefix_extends, res.prefix_pairs) == (2, 2)
    assert (res.latest_user_kept, res.latest_user_fits) == (3, 3)
    assert res.summarizer_calls == 3
    assert res.trace is None


def test_fifo_on_qa_transcript_exact() -> None:
    """Budget 14: probes keep only the last turn + question; evidence and answers exact."""
    fitter = Fifo()
    res = replay_transcript(fitter, qa_transcript(), 14, WordCounter())
    assert fitter.log == [1, 3, -5, -5, -5]  # probes run on forks with the question appended
    assert (res.fits, res.turn_fits, res.probe_fits) == (5, 2, 3)
    assert res.turn_tokens == [9, 13]
    assert res.evidence == [(0, 1), (1, 2)]  # adversarial probe excluded
    assert (res.answer_hits, res.answer_total) == (1, 2)  # "cat" kept, "Paris" lost
    assert (res.system_fits, res.latest_user_kept, res.latest_user_fits) == (0, 5, 5)
    assert res.budget_violations == 0


def test_action_probe_between_turns_uses_a_fork_in_order() -> None:
    """A probe at a non-assistant position is fitted on a fork at that point of the walk."""
    t = tools_transcript()
    t.probes = [Probe(kind="action", position=3, values=("JFK",))]
    fitter = Fifo()
    res = replay_transcript(fitter, t, 14, WordCounter())
    assert fitter.log == [2, -3, 4, 6]
    assert (res.fits, res.turn_fits, res.probe_fits) == (4, 3, 1)
    # messages[:3] = S, U, call (3 tokens): S + call + U = 16 > 14 -> [S, call]: dangling call
    assert res.tool_pair_violation_fits == 2
    assert (res.action_found, res.action_total) == (0, 1)


def test_failing_fitter_is_a_result_not_a_crash() -> None:
    """An exception becomes ``error`` (first line only) and no measurements; others go on."""
    replay = Replay(
        [Broken(), KeepAll()], [14], [qa_transcript(), tools_transcript()], WordCounter()
    )
    results = replay.run()
    assert [(r.config, r.transcript_id) for r in results] == [
        ("broken", "toy/qa"),
        ("broken", "toy/tools"),
        ("keep-all", "toy/qa"),
        ("keep-all", "toy/tools"),
    ]
    assert results[0].error == "toy/qa: RuntimeError: boom"
    assert results[0].fits == 0 and results[0].turn_tokens == []
    assert results[1].error is None and results[1].fits == 3


def test_aggregate_rows_exact(tmp_path: Path) -> None:
    """Rows pool the units per config x budget x dataset; nulls where a metric does not apply."""
    replay = Replay(
        [Fifo(), KeepAll(), Broken()],
        [14, 100],
        [qa_transcript(), tools_transcript()],
        WordCounter(),
    )
    rows = aggregate(replay.run())
    assert all(tuple(r) == ROW_KEYS for r in rows)
    by = {(r["config"], r["dataset"], r["budget"]): r for r in rows}
    fifo_qa = by[("fake-fifo", "toy-qa", 14)]
    assert fifo_qa["transcripts"] == 1 and fifo_qa["fits"] == 5
    assert fifo_qa["evidence_probes"] == 2
    assert fifo_qa["evidence_recall_all"] == 0.0
    assert fifo_qa["evidence_turn_recall"] == pytest.approx(0.3333)
    assert fifo_qa["answer_in_context"] == 0.5
    assert fifo_qa["system_retention"] is None  # no system message in toy-qa
    assert fifo_qa["action_arg_recall"] is None
    assert (fifo_qa["tokens_mean"], fifo_qa["tokens_p95"], fifo_qa["tokens_max"]) == (11.0, 13, 13)
    assert fifo_qa["cost_usd"] == pytest.approx(22 * 0.15 / 1e6, abs=1e-6)
    assert fifo_qa["notes"] == "test fake"
    fifo_tools = by[("fake-fifo", "toy-tools", 14)]
    assert fifo_tools["tool_pair_violations"] == 1
    assert fifo_tools["latest_user_retention"] == pytest.approx(0.6667)
    assert fifo_tools["action_arg_recall"] == 0.5
    assert fifo_tools["evidence_recall_all"] is None
    keep = by[("keep-all", "toy-qa", 14)]
    assert keep["budget_violations"] == 4  # turn 2 (19) and the three probes (29)
    assert keep["evidence_recall_all"] == 1.0 and keep["answer_in_context"] == 1.0
    assert keep["prefix_stability"] == 1.0
    assert by[("keep-all", "toy-qa", 100)]["budget_violations"] == 0
    broken = by[("broken", "toy-qa", 14)]
    assert broken["errors"] == 1 and broken["first_error"] == "toy/qa: RuntimeError: boom"
    assert broken["transcripts"] == 0 and broken["tokens_mean"] is None
    # an errored transcript still counts: its probes score 0, rows stay comparable
    assert broken["evidence_probes"] == fifo_qa["evidence_probes"] == 2
    assert broken["evidence_recall_all"] == 0.0 and broken["evidence_turn_recall"] == 0.0
    assert broken["answer_probes"] == fifo_qa["answer_probes"]
    assert broken["answer_in_context"] == 0.0
    broken_tools = by[("broken", "toy-tools", 14)]
    assert broken_tools["errors"] == 0  # Broken only fails on toy/qa
    assert keep["fill_ratio"] == pytest.approx(keep["tokens_mean"] / 14, abs=1e-4)
    assert keep["prefix_reuse"] == 1.0
    assert fifo_qa["evidence_by_category"] is not None
    assert sum(c["probes"] for c in fifo_qa["evidence_by_category"].values()) == 2
    # ordering: dataset (first seen), then budget, then config
    assert [(r["dataset"], r["budget"], r["config"]) for r in rows[:3]] == [
        ("toy-qa", 14, "fake-fifo"),
        ("toy-qa", 14, "keep-all"),
        ("toy-qa", 14, "broken"),
    ]
    json_path, csv_path = write_results(rows, {"command": "test"}, tmp_path)
    flat = [k for k in ROW_KEYS if k != "evidence_by_category"]  # nested, JSON only
    assert csv_path.read_text().splitlines()[0] == ",".join(flat)
    assert '"meta"' in json_path.read_text()


def test_parallel_matches_serial() -> None:
    """jobs=2 (spawned workers) gives the same measurements, in the same order, as jobs=1."""
    from ctxmgr.bench.ctxmgr_fitter import CtxmgrFitter
    from ctxmgr.tokens import get_counter

    transcripts = [tools_transcript(), tools_transcript()]
    transcripts[1].id = "toy/tools-2"
    fitters = [CtxmgrFitter("fifo")]
    counter = get_counter("approx")
    serial = Replay(fitters, [60, 100], transcripts, counter, jobs=1).run()
    parallel = Replay(fitters, [60, 100], transcripts, counter, jobs=2).run()

    def key(r: TranscriptResult) -> tuple[object, ...]:
        return (r.config, r.budget, r.transcript_id, r.error, r.fits, r.turn_tokens, r.evidence)

    assert [key(r) for r in parallel] == [key(r) for r in serial]
    assert [r.transcript_id for r in serial] == ["toy/tools", "toy/tools-2"] * 2


def test_ctxmgr_fitter_budget_is_the_effective_limit_and_counts_summaries() -> None:
    """CtxmgrFitter: limit == budget (no output reserve), summarizer calls, independent forks."""
    from ctxmgr.bench.ctxmgr_fitter import CtxmgrFitter, CtxmgrSession
    from ctxmgr.testing import chat_history
    from ctxmgr.tokens import get_counter

    counter = get_counter("approx")
    history = chat_history(40)
    transcript = Transcript("toy/chat", "toy", "mem", history)
    session = CtxmgrFitter("summary").start(transcript, 600, counter)
    assert isinstance(session, CtxmgrSession)
    assert session.manager.budget.effective_limit == 600
    for i in range(2, len(history), 2):
        context = session.fit(history[:i])
        assert counter.count_messages(context) <= 600
    calls = session.summarizer_calls
    assert calls > 0
    assert calls == session.manager.state.extra["summarize"]["calls"]
    turn = session.manager.state.turn
    fork = session.fork()
    fork.fit([*history, Message.user("one more question")])
    assert session.manager.state.turn == turn  # the fork did not touch the session
    assert fork.summarizer_calls >= calls
