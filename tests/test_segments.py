"""Tests for ctxmgr.segments: tool-exchange grouping, repair and strict policies, feed()."""

from __future__ import annotations

import pytest

from ctxmgr.errors import InvalidHistoryError
from ctxmgr.messages import Message, ToolCall
from ctxmgr.segments import (
    SYNTHETIC_RESULT,
    Repair,
    Segment,
    Segmenter,
    segment_messages,
)
from ctxmgr.testing import agent_history

SYS = Message.system("You are an agent.")
TASK = Message.user("Find the weather in Paris and Rome.")
CALLS = Message.assistant(
    "",
    [
        ToolCall("call_p", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_r", "get_weather", '{"city": "Rome"}'),
    ],
)
RES_P = Message.tool("Paris: 18C", "call_p", name="get_weather")
RES_R = Message.tool("Rome: 24C", "call_r", name="get_weather")
ANSWER = Message.assistant("Paris 18C, Rome 24C.")


def _shape(segments: list[Segment]) -> list[tuple[int, tuple[str, ...]]]:
    return [(s.start, tuple(m.role for m in s.messages)) for s in segments]


# -- grouping ----------------------------------------------------------------------------


def test_parallel_calls_and_results_form_one_segment() -> None:
    """An assistant message with parallel calls and all its results is one segment."""
    segments, repairs = segment_messages([SYS, TASK, CALLS, RES_P, RES_R, ANSWER])
    assert _shape(segments) == [
        (0, ("system",)),
        (1, ("user",)),
        (2, ("assistant", "tool", "tool")),
        (5, ("assistant",)),
    ]
    assert repairs == []
    exchange = segments[2]
    assert exchange.is_tool_exchange
    assert exchange.messages == (CALLS, RES_P, RES_R)
    assert (CALLS.id, RES_P.id, RES_R.id) == exchange.ids
    assert exchange.head == CALLS
    assert exchange.role == "assistant"


def test_results_out_of_order_are_put_in_call_order() -> None:
    """Results arriving in another order than the calls are grouped in call order."""
    segments, repairs = segment_messages([TASK, CALLS, RES_R, RES_P])
    assert segments[1].messages == (CALLS, RES_P, RES_R)
    assert repairs == []


def test_plain_messages_are_one_segment_each() -> None:
    """Messages without tool calls are single-message segments, in order, not exchanges."""
    msgs = [SYS, TASK, ANSWER]
    segments, _ = segment_messages(msgs)
    assert [(m,) for m in msgs] == [s.messages for s in segments]
    assert [s.is_tool_exchange for s in segments] == [False, False, False]


def test_segment_text_joins_search_text() -> None:
    """Segment.text joins its messages' search texts (call arguments included) by newlines."""
    segments, _ = segment_messages([TASK, CALLS, RES_P, RES_R])
    expected = "\n".join(m.search_text for m in (CALLS, RES_P, RES_R))
    assert expected == segments[1].text
    assert '{"city": "Rome"}' in segments[1].text
    assert segments[1].text.endswith("Rome: 24C")


def test_input_is_not_mutated_and_kept_messages_are_the_same_objects() -> None:
    """Segmentation does not mutate its input and reuses the given message objects."""
    msgs = [SYS, TASK, CALLS, RES_P, RES_R]
    before = list(msgs)
    segments, _ = segment_messages(msgs)
    assert before == msgs
    assert all(a is b for a, b in zip([m for s in segments for m in s.messages], msgs, strict=True))


def test_generated_agent_history_needs_no_repair() -> None:
    """A well-formed generated agent history segments with no repairs and loses no message."""
    msgs = agent_history(200, parallel=3)
    segments, repairs = segment_messages(msgs, "strict")
    assert repairs == []
    assert msgs == [m for s in segments for m in s.messages]


# -- repair policy -------------------------------------------------------------------------

# (history, expected problem, expected index, expected action)
ORPHAN = Message.tool("stray", "call_unknown")
PROBLEMS = {
    "orphan_tool_result": ([SYS, TASK, ORPHAN, ANSWER], 2, "archived"),
    "tool_first": ([Message.tool("first", "call_x"), TASK], 0, "archived"),
    "duplicate_tool_result": (
        [TASK, CALLS, RES_P, RES_R, Message.tool("again", "call_p")],
        4,
        "archived",
    ),
    "dangling_tool_call": ([TASK, CALLS, RES_P, ANSWER], 1, "synthesized_result"),
    "duplicate_tool_call_id": (
        [
            TASK,
            Message.assistant("", [ToolCall("c1", "f", "{}"), ToolCall("c1", "f", '{"x": 1}')]),
            Message.tool("r", "c1", name="f"),
        ],
        1,
        "dropped_duplicate_call",
    ),
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_repair_reports_each_problem(problem: str) -> None:
    """Under 'repair' each malformation is fixed and reported with its index and action."""
    history, index, action = PROBLEMS[problem]
    _, repairs = segment_messages(history, "repair")
    assert [(index, problem, action)] == [(r.index, r.problem, r.action) for r in repairs]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_strict_raises_on_each_problem(problem: str) -> None:
    """Under 'strict' the same inputs raise InvalidHistoryError with the index and problem."""
    history, index, _ = PROBLEMS[problem]
    with pytest.raises(InvalidHistoryError) as info:
        segment_messages(history, "strict")
    assert (index, problem) == (info.value.index, info.value.problem)
    assert str(info.value).startswith(f"message {index}: ")


def test_orphan_result_is_removed_from_segments() -> None:
    """An orphan tool result appears in no segment; the repair carries the message."""
    segments, repairs = segment_messages([SYS, TASK, ORPHAN, ANSWER])
    assert [m for s in segments for m in s.messages] == [SYS, TASK, ANSWER]
    assert ORPHAN is repairs[0].message


def test_duplicate_result_while_exchange_is_open_is_removed() -> None:
    """A second result for the same call, before the other results, is removed; the first kept."""
    dup = Message.tool("Paris again", "call_p")
    segments, repairs = segment_messages([TASK, CALLS, RES_P, dup, RES_R, ANSWER])
    assert segments[1].messages == (CALLS, RES_P, RES_R)
    assert [(r.index, r.problem) for r in repairs] == [(3, "duplicate_tool_result")]


def test_dangling_call_gets_synthetic_result() -> None:
    """A call never answered gets a synthetic tool result with the documented metadata."""
    segments, repairs = segment_messages([TASK, CALLS, RES_P, ANSWER])
    exchange = segments[1]
    synthetic = exchange.messages[2]
    assert exchange.messages[:2] == (CALLS, RES_P)
    assert (
        synthetic.role,
        synthetic.tool_call_id,
        synthetic.name,
        synthetic.content,
    ) == ("tool", "call_r", "get_weather", SYNTHETIC_RESULT)
    assert dict(synthetic.metadata) == {"ctxmgr": "synthetic_tool_result"}
    assert CALLS is repairs[0].message
    assert segments[2].head == ANSWER


def test_trailing_dangling_call_is_completed_under_repair() -> None:
    """A history ending with an unanswered call ends with that exchange, completed."""
    segments, repairs = segment_messages([TASK, CALLS, RES_R])
    assert _shape(segments) == [(0, ("user",)), (1, ("assistant", "tool", "tool"))]
    assert [m.tool_call_id for m in segments[1].messages[1:]] == ["call_p", "call_r"]
    assert segments[1].messages[1].metadata["ctxmgr"] == "synthetic_tool_result"
    assert repairs == []  # pending() renders without committing a repair


def test_trailing_dangling_call_raises_under_strict() -> None:
    """Under 'strict' an unanswered call at the end raises naming the call message."""
    with pytest.raises(InvalidHistoryError) as info:
        segment_messages([TASK, CALLS, RES_R], "strict")
    assert (info.value.index, info.value.problem) == (1, "dangling_tool_call")


def test_duplicate_call_id_is_dropped_keeping_the_message_id() -> None:
    """A duplicate call id in one message is dropped; the message keeps its id."""
    history, _, _ = PROBLEMS["duplicate_tool_call_id"]
    segments, _ = segment_messages(history)
    head = segments[1].head
    assert (ToolCall("c1", "f", "{}"),) == head.tool_calls
    assert history[1].id == head.id
    assert [(m.role, m.tool_call_id) for m in segments[1].messages] == [
        ("assistant", None),
        ("tool", "c1"),
    ]


def test_repair_str_names_index_and_problem() -> None:
    """str(Repair) is 'message <i>: <problem in words> (<action>)'."""
    repair = Repair(3, "orphan_tool_result", "archived", ORPHAN)
    assert str(repair) == "message 3: orphan tool result (archived)"


def test_unknown_policy_is_rejected() -> None:
    """Segmenter rejects a policy other than 'repair' or 'strict'."""
    with pytest.raises(ValueError, match="lenient"):
        Segmenter("lenient")  # type: ignore[arg-type]


# -- incremental segmentation ---------------------------------------------------------------


def _messy_history() -> list[Message]:
    """A history exercising every repair, plus well-formed exchanges."""
    return [
        Message.tool("first", "call_x"),
        SYS,
        TASK,
        CALLS,
        RES_R,
        Message.tool("stray", "nope"),
        RES_P,
        Message.tool("late duplicate", "call_p"),
        ANSWER,
        Message.assistant("", [ToolCall("d1", "f", "{}"), ToolCall("d2", "g", "{}")]),
        Message.tool("only d1", "d1"),
        Message.user("next question"),
        *agent_history(40, seed=3)[1:],
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7])
def test_feeding_in_pieces_equals_one_shot(chunk: int) -> None:
    """Feeding a history in pieces gives the same segments and repairs as one shot."""
    msgs = _messy_history()
    expected_segments, expected_repairs = segment_messages(msgs)
    seg = Segmenter()
    got: list[Segment] = []
    for i in range(0, len(msgs), chunk):
        got.extend(seg.feed(msgs[i : i + chunk]))
    tail = seg.pending()
    if tail is not None:
        got.append(tail)
    assert expected_segments == got
    assert expected_repairs == seg.repairs
    assert len(msgs) == seg.consumed


def test_feed_returns_only_closed_segments() -> None:
    """feed() returns what the new messages close; an open exchange waits for its results."""
    seg = Segmenter()
    assert [s.messages for s in seg.feed([TASK, CALLS])] == [(TASK,)]
    assert seg.has_open
    assert seg.feed([RES_P]) == []
    assert [s.messages for s in seg.feed([RES_R])] == [(CALLS, RES_P, RES_R)]
    assert not seg.has_open
    assert seg.pending() is None


def test_pending_synthesizes_missing_results_without_committing() -> None:
    """pending() fills missing results; when the real ones arrive they replace the synthetic."""
    seg = Segmenter()
    seg.feed([TASK, CALLS, RES_P])
    pending = seg.pending()
    assert pending is not None
    assert pending.start == 1
    assert [RES_P.content, SYNTHETIC_RESULT] == [m.content for m in pending.messages[1:]]
    assert seg.repairs == []
    closed = seg.feed([RES_R])
    assert [s.messages for s in closed] == [(CALLS, RES_P, RES_R)]
    assert seg.repairs == []


def test_pending_raises_under_strict_when_a_result_is_missing() -> None:
    """pending() under 'strict' raises naming the open call message."""
    seg = Segmenter("strict")
    seg.feed([TASK, CALLS])
    with pytest.raises(InvalidHistoryError) as info:
        seg.pending()
    assert (info.value.index, info.value.problem) == (1, "dangling_tool_call")


def test_incremental_indices_continue_across_feeds() -> None:
    """Segment starts and repair indices count from the first message ever fed."""
    seg = Segmenter()
    seg.feed([SYS, TASK])
    closed = seg.feed([ANSWER, ORPHAN, Message.user("more")])
    assert [s.start for s in closed] == [2, 4]
    assert [r.index for r in seg.repairs] == [3]
