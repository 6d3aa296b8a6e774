"""Tests for ctxmgr.state: SessionState JSON round trip, notes and the archive."""

from __future__ import annotations

import json

import pytest

from ctxmgr.messages import ContentPart, Message, ToolCall
from ctxmgr.state import (
    Archive,
    ArchivedMessage,
    Note,
    SessionState,
    message_from_dict,
    message_to_dict,
)

CALL = Message.assistant("", [ToolCall("call_1", "get_order", '{"id": "A12"}')])
RESULT = Message.tool(
    "Order A12 shipped on 2024-05-02.", "call_1", name="get_order", metadata={"src": "api"}
)
PINNED = Message.user("Always answer in French.", pinned=True, id="u-7")
IMAGE = Message.user(
    [ContentPart("text", "see"), ContentPart("image_url", data={"image_url": {"url": "u"}})]
)


# -- message serialization --------------------------------------------------------------------


@pytest.mark.parametrize("message", [CALL, RESULT, PINNED, IMAGE, Message.system("sys")])
def test_message_dict_round_trip_is_lossless(message: Message) -> None:
    """message_from_dict(message_to_dict(m)) keeps id, content, calls, metadata and pinned."""
    back = message_from_dict(json.loads(json.dumps(message_to_dict(message))))
    assert message == back
    assert message.id == back.id
    assert dict(message.metadata) == dict(back.metadata)
    assert message.pinned == back.pinned


def test_message_to_dict_adds_id_metadata_and_pinned() -> None:
    """The serialized form is the OpenAI dict plus id, metadata (if any) and pinned (if set)."""
    assert message_to_dict(PINNED) == {
        "role": "user",
        "content": "Always answer in French.",
        "id": "u-7",
        "pinned": True,
    }
    assert message_to_dict(RESULT)["metadata"] == {"src": "api"}


# -- SessionState ---------------------------------------------------------------------------


def _populated_state() -> SessionState:
    state = SessionState(
        summary="- user asked about order A12",
        summary_covers=[CALL.id, RESULT.id],
        turn=7,
        last_fit={"turn": 7, "tokens_after": 900, "compacted": True, "reason": "over trigger"},
        extra={"summarize": {"calls": 2, "failures": 1}},
    )
    state.notes["order"] = Note("order", ["A12 shipped"], ["tool result m-1"], turn=5)
    state.notes["user.prefs"] = Note("user.prefs", ["French"], [], turn=6)
    state.archive.add(CALL, "evicted", 3)
    state.archive.add(RESULT, "cleared: old tool result cleared", 3, "tool_pair_safe")
    state.archive.add(PINNED, "orphan_tool_result", 4)
    return state


def test_session_state_json_round_trip() -> None:
    """to_dict -> json.dumps -> json.loads -> from_dict -> to_dict gives the same dict."""
    state = _populated_state()
    data = state.to_dict()
    back = SessionState.from_dict(json.loads(json.dumps(data)))
    assert data == back.to_dict()


def test_session_state_round_trip_restores_fields() -> None:
    """The rebuilt state has the summary, notes in order, turn, archive entries and extra."""
    state = _populated_state()
    back = SessionState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert (state.summary, state.summary_covers, state.turn) == (
        back.summary,
        back.summary_covers,
        back.turn,
    )
    assert list(state.notes.values()) == list(back.notes.values())
    assert list(back.notes) == ["order", "user.prefs"]
    assert [(e.message, e.reason, e.turn, e.strategy) for e in state.archive] == [
        (e.message, e.reason, e.turn, e.strategy) for e in back.archive
    ]
    assert back.archive.get(RESULT.id) is not None
    assert dict(back.archive.get(RESULT.id).metadata) == {"src": "api"}  # type: ignore[union-attr]
    assert state.extra == back.extra
    assert state.last_fit == back.last_fit


def test_empty_state_round_trip() -> None:
    """A fresh state round-trips to a fresh state."""
    data = SessionState().to_dict()
    assert data["version"] == 1
    back = SessionState.from_dict(json.loads(json.dumps(data)))
    assert (
        back.summary,
        back.summary_covers,
        back.notes,
        back.turn,
        len(back.archive),
    ) == (None, [], {}, 0, 0)


def test_from_dict_is_independent_of_its_input() -> None:
    """Changing the rebuilt state does not change the dict it came from."""
    data = _populated_state().to_dict()
    snapshot = json.loads(json.dumps(data))
    back = SessionState.from_dict(data)
    back.summary_covers.append("x")
    back.notes["order"].facts.append("new fact")
    assert snapshot == data


# -- notes ------------------------------------------------------------------------------------


def test_covered_follows_summary_covers_through_growth_rollback_and_replacement() -> None:
    """``covered()`` equals ``set(summary_covers)`` through appends, rollback, a new list.

    The rolled-back ids are replaced by as many others (same length as before the
    rollback), which a length check alone would not notice.
    """
    state = SessionState(summary_covers=["a", "b"])
    seen = state.covered()
    assert seen == {"a", "b"}
    state.summary_covers.append("c")
    assert state.covered() is seen and seen == {"a", "b", "c"}
    mark = state.checkpoint()
    state.summary_covers += ["d", "e"]
    assert state.covered() == {"a", "b", "c", "d", "e"}
    state.rollback(mark)
    state.summary_covers += ["x", "y"]  # the same length as before the rollback
    assert state.covered() == {"a", "b", "c", "x", "y"}
    state.summary_covers = ["z"]
    assert state.covered() == {"z"}


def test_note_render_with_and_without_pointers() -> None:
    """Note.render is '- key: fact; fact (see: pointer, pointer)'."""
    assert Note("k", ["a", "b"], ["f.py:1", "url"]).render() == "- k: a; b (see: f.py:1, url)"
    assert Note("k", ["a"]).render() == "- k: a"


# -- archive ----------------------------------------------------------------------------------


def test_archive_add_is_idempotent_and_keeps_first_reason() -> None:
    """Adding the same message twice stores it once, with the first reason and turn."""
    arc = Archive()
    arc.add(RESULT, "evicted", 2)
    arc.add(RESULT, "evicted again", 9, "relevance")
    assert [ArchivedMessage(RESULT, "evicted", 2, None)] == list(arc)
    assert len(arc) == 1


def test_archive_distinguishes_same_id_different_content() -> None:
    """Two messages with the same explicit id but different content are both kept."""
    arc = Archive()
    arc.add(Message.user("one", id="x"), "evicted", 1)
    arc.add(Message.user("two", id="x"), "evicted", 2)
    assert len(arc) == 2


def test_archive_contains_and_get() -> None:
    """`in` and get() find archived messages by identity and id; misses give False/None."""
    arc = Archive()
    arc.add(CALL, "evicted", 1)
    assert CALL in arc
    assert RESULT not in arc
    assert "not a message" not in arc
    assert CALL is arc.get(CALL.id)
    assert arc.get("missing") is None


def test_archive_search_ranks_by_overlap_then_recency() -> None:
    """search() ranks by words shared with the query, ties broken newest first, up to k."""
    arc = Archive()
    old = Message.user("refund for order A12")
    mid = Message.user("weather in Paris")
    new = Message.user("order A12 refund status")
    newest = Message.user("order tracking")
    for turn, msg in enumerate([old, mid, new, newest]):
        arc.add(msg, "evicted", turn)
    hits = arc.search("Refund ORDER a12")
    assert [new, old, newest] == [e.message for e in hits]
    assert [new] == [e.message for e in arc.search("refund order a12", k=1)]


def test_archive_search_misses() -> None:
    """search() returns nothing for a query without words or without matches."""
    arc = Archive()
    arc.add(Message.user("hello"), "evicted", 1)
    assert arc.search("   ...  ") == []
    assert arc.search("goodbye") == []


def test_archive_search_includes_tool_arguments() -> None:
    """search() looks at tool names and arguments, not only content."""
    arc = Archive()
    arc.add(CALL, "evicted", 1)
    assert [e.message for e in arc.search("get_order")] == [CALL]


def test_archive_search_matches_whole_words() -> None:
    """search() counts shared words: a query word inside a longer word is not a match."""
    arc = Archive()
    arc.add(Message.user("we start at noon"), "evicted", 1)
    assert arc.search("art") == []


def test_archive_list_round_trip() -> None:
    """Archive.from_list(to_list()) keeps entries, order, reasons and strategies."""
    arc = Archive()
    arc.add(CALL, "evicted", 1)
    arc.add(RESULT, "cleared", 2, "tool_pair_safe")
    back = Archive.from_list(json.loads(json.dumps(arc.to_list())))
    assert list(arc) == list(back)
