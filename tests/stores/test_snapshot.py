"""Tests of ctxmgr.stores.snapshot: the window snapshot's message codec."""

from __future__ import annotations

import json
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from ctxmgr import ContextManager, Message
from ctxmgr.messages import ToolCall
from ctxmgr.stores.snapshot import CODEC, HistoryDigest, _decode, _encoder, export_window
from ctxmgr.testing import agent_history, histories


def _fields(msg: Message) -> list[object]:
    return [getattr(msg, f.name) for f in fields(msg)]


@settings(max_examples=25, deadline=None)
@given(history=histories(max_steps=20, reasoning=True), trusted=st.booleans())
def test_decode_rebuilds_every_field(history: list[Message], trusted: bool) -> None:
    """Encoded with its fingerprint and decoded (trusted or not), a message is unchanged.

    Covers tool calls (content ``None`` on the wire), metadata, pinned and content parts
    (which take the validating path).
    """
    encode, _ = _encoder(None)
    extra = [
        Message.tool(
            "[ctxmgr: cleared]",
            "call_1",
            name="read_file",
            metadata={"ctxmgr": "cleared_tool_result", "original_id": "m-1"},
        ),
        Message.assistant("", [ToolCall("call_1", "read_file", '{"q": 1}')], pinned=True),
    ]
    for msg in [*history, *extra]:
        data = json.loads(json.dumps(encode(msg)))  # as a store returns it
        assert data["fp"] == msg.fingerprint
        got = _decode(data, trusted)
        assert _fields(got) == _fields(msg)
        assert got == msg


def test_shrunk_messages_left_as_they_were_are_references() -> None:
    """Only the messages a shrink changed are stored in full; the rest name their index."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=8000)
    history = agent_history(400, seed=3)
    mgr.fit(history)
    assert mgr._shrunk, "the fixture must clear some tool results"
    doc = export_window(mgr, HistoryDigest.of(mgr._history).hexdigest())
    assert doc["codec"] == CODEC
    refs = full = 0
    for key, item in doc["shrunk"].items():
        whole = mgr._segments[int(key)].messages
        shrunk = mgr._shrunk[int(key)].messages
        for j, entry in enumerate(item["messages"]):
            if "h" in entry:
                refs += 1
                assert shrunk[j] is whole[entry["h"]]
            else:
                full += 1
                assert shrunk[j] is not whole[j]
                assert entry["id"] == shrunk[j].id
    assert refs > 0 and full > 0
