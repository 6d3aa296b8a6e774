"""Tests for ctxmgr.messages: the immutable Message type and the OpenAI converters."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from ctxmgr.errors import InvalidHistoryError
from ctxmgr.messages import (
    ContentPart,
    Message,
    ToolCall,
    from_openai,
    messages_from_openai,
    messages_to_openai,
    to_openai,
)

# -- construction and validation --------------------------------------------------------


def test_unknown_role_is_rejected_naming_the_role() -> None:
    """A role outside system/user/assistant/tool raises ValueError naming it."""
    with pytest.raises(ValueError, match="'robot'"):
        Message("robot", "hi")  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_the_four_roles_are_accepted(role: str) -> None:
    """Each of the four neutral roles builds a message with that role."""
    assert role == Message(role, "x").role  # type: ignore[arg-type]


def test_convenience_constructors_set_role_and_fields() -> None:
    """Message.system/user/assistant/tool set the role, content and tool fields."""
    call = ToolCall("call_1", "search", '{"q": "x"}')
    built = [
        Message.system("s"),
        Message.user("u"),
        Message.assistant("a", [call]),
        Message.tool("r", "call_1", name="search"),
    ]
    expected = [
        ("system", "s", (), None, None),
        ("user", "u", (), None, None),
        ("assistant", "a", (call,), None, None),
        ("tool", "r", (), "call_1", "search"),
    ]
    assert expected == [(m.role, m.content, m.tool_calls, m.tool_call_id, m.name) for m in built]


def test_lists_are_stored_as_tuples() -> None:
    """List content and list tool_calls are converted to tuples (so the message is hashable)."""
    msg = Message("assistant", [ContentPart("text", "a")], tool_calls=[ToolCall("c", "f")])
    assert (tuple, tuple) == (type(msg.content), type(msg.tool_calls))
    assert isinstance(hash(msg), int)


# -- ids ------------------------------------------------------------------------------------


def test_equal_content_gives_equal_ids() -> None:
    """Two messages built separately from the same content get the same derived id."""
    a = Message.user("What is the refund policy?")
    b = Message.user("What is the refund policy?")
    assert a.id == b.id
    assert a == b
    assert hash(a) == hash(b)


def test_derived_id_has_documented_shape() -> None:
    """A derived id is 'm-' followed by 16 hex digits."""
    msg_id = Message.user("hello").id
    assert msg_id[:2] == "m-"
    assert len(msg_id) == 18
    int(msg_id[2:], 16)


@pytest.mark.parametrize(
    "other",
    [
        Message.user("hello!"),
        Message.assistant("hello"),
        Message.user("hello", name="bob"),
        Message.user("hello", pinned=True),
        Message.tool("hello", "call_1"),
    ],
)
def test_different_content_gives_different_ids(other: Message) -> None:
    """Changing content, role, name, pinned or tool_call_id changes the derived id."""
    assert Message.user("hello").id != other.id


def test_metadata_does_not_change_the_id() -> None:
    """Metadata is not part of the fingerprint: the id and equality ignore it."""
    a = Message.user("hello", metadata={"source": "a"})
    b = Message.user("hello", metadata={"source": "b"})
    assert a.id == b.id
    assert a == b


def test_explicit_id_is_kept() -> None:
    """A given id is kept verbatim, and messages with different ids are not equal."""
    a = Message.user("hello", id="lc-123")
    b = Message.user("hello")
    assert a.id == "lc-123"
    assert a != b


def test_evolve_derives_a_new_id_unless_given() -> None:
    """evolve() re-derives the id from the new content, or keeps an id passed explicitly."""
    msg = Message.user("hello", id="given")
    changed = msg.evolve(content="bye")
    assert Message.user("bye").id == changed.id
    assert msg.evolve(content="bye", id="given").id == "given"


# -- immutability -------------------------------------------------------------------------


def test_message_fields_cannot_be_assigned() -> None:
    """A Message is frozen: assigning a field raises."""
    msg = Message.user("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.content = "changed"  # type: ignore[misc]


def test_metadata_is_read_only_and_copied() -> None:
    """Metadata is a read-only copy: the caller's dict can change without affecting it."""
    source: dict[str, Any] = {"k": 1}
    msg = Message.user("hello", metadata=source)
    source["k"] = 2
    assert msg.metadata["k"] == 1
    with pytest.raises(TypeError):
        msg.metadata["k"] = 3  # type: ignore[index]


def test_content_part_data_is_read_only() -> None:
    """ContentPart.data is read-only."""
    part = ContentPart("image_url", data={"image_url": {"url": "https://x/y.png"}})
    with pytest.raises(TypeError):
        part.data["image_url"] = {}  # type: ignore[index]


# -- derived views ----------------------------------------------------------------------------


def test_text_joins_text_parts_only() -> None:
    """`text` is the string content, or the text parts joined by newlines (images skipped)."""
    msg = Message.user(
        [
            ContentPart("text", "look at this"),
            ContentPart("image_url", data={"image_url": {"url": "https://x/y.png"}}),
            ContentPart("text", "and this"),
        ]
    )
    assert msg.text == "look at this\nand this"
    assert Message.user("plain").text == "plain"


def test_search_text_adds_tool_names_and_arguments() -> None:
    """`search_text` is the text plus each call's name and arguments."""
    msg = Message.assistant(
        "checking",
        [ToolCall("c1", "get_weather", '{"city": "Paris"}'), ToolCall("c2", "get_time", "{}")],
    )
    assert msg.search_text == 'checking get_weather {"city": "Paris"} get_time {}'
    assert Message.assistant("no calls").search_text == "no calls"


def test_search_text_of_call_without_content_has_no_leading_space() -> None:
    """A tool-call message with empty content has search text starting with the tool name."""
    msg = Message.assistant("", [ToolCall("c1", "search", '{"q": 1}')])
    assert msg.search_text == 'search {"q": 1}'


def test_parsed_arguments_decodes_json_or_returns_raw_text() -> None:
    """ToolCall.parsed_arguments decodes JSON, and returns invalid JSON unchanged."""
    assert ToolCall("c", "f", '{"a": 1}').parsed_arguments() == {"a": 1}
    assert ToolCall("c", "f", "{not json").parsed_arguments() == "{not json"
    assert ToolCall("c", "f", "").parsed_arguments() == {}


# -- OpenAI round trips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi", "name": "alice"},
        {"role": "assistant", "content": "hello"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "let me check",
            "tool_calls": [
                {"id": "call_c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_a"},
        {"role": "tool", "content": "21C", "tool_call_id": "call_b", "name": "get_weather"},
    ],
    ids=[
        "system",
        "user-name",
        "assistant",
        "multimodal",
        "parallel-calls",
        "calls-text",
        "tool",
        "tool-name",
    ],
)
def test_openai_round_trip(data: dict[str, Any]) -> None:
    """to_openai(from_openai(d)) == d for text, multimodal, parallel tool calls and results."""
    assert data == to_openai(from_openai(data))


def test_multimodal_parts_are_read_as_content_parts() -> None:
    """Each OpenAI content part becomes a ContentPart keeping its type, text and data."""
    msg = from_openai(
        {
            "role": "user",
            "content": [
                "bare string part",
                {"type": "text", "text": "caption"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        }
    )
    assert [(p.type, p.text, dict(p.data)) for p in msg.content] == [
        ("text", "bare string part", {}),
        ("text", "caption", {}),
        ("image_url", "", {"image_url": {"url": "https://x/y.png"}}),
    ]


def test_parallel_tool_calls_are_read_in_order() -> None:
    """Parallel tool calls keep their ids, names and argument text, in order."""
    msg = from_openai(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": {"x": 1}}},
            ],
        }
    )
    assert (ToolCall("c1", "a", "{}"), ToolCall("c2", "b", '{"x": 1}')) == msg.tool_calls
    assert msg.content == ""


def test_tool_call_without_id_gets_positional_id() -> None:
    """A tool call with no id gets 'call-<index>-<position>'."""
    msg = from_openai({"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}, index=4)
    assert ToolCall("call-4-0", "f", "{}") == msg.tool_calls[0]


def test_developer_role_is_read_as_system() -> None:
    """The OpenAI 'developer' role becomes 'system'."""
    assert from_openai({"role": "developer", "content": "be brief"}).role == "system"


def test_unknown_keys_go_to_metadata_and_are_not_sent_back() -> None:
    """Unknown OpenAI keys are kept in metadata; id and pinned are read; to_openai drops them."""
    msg = from_openai(
        {"role": "assistant", "content": "x", "refusal": None, "id": "msg_9", "pinned": True}
    )
    assert dict(msg.metadata) == {"refusal": None}
    assert (msg.id, msg.pinned) == ("msg_9", True)
    assert to_openai(msg) == {"role": "assistant", "content": "x"}


def test_messages_to_openai_converts_a_list() -> None:
    """messages_to_openai maps to_openai over a list, keeping order."""
    msgs = [Message.system("s"), Message.user("u")]
    assert (messages_to_openai(msgs)) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
    ]


def test_to_openai_output_is_json_serializable() -> None:
    """to_openai output of a multimodal message with tool data survives json.dumps."""
    msg = Message.user([ContentPart("image_url", data={"image_url": {"url": "u"}})])
    assert json.loads(json.dumps(to_openai(msg)))["content"] == [
        {"type": "image_url", "image_url": {"url": "u"}}
    ]


# -- legacy function calling -----------------------------------------------------------------


def _legacy_call(name: str, args: str = "{}") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "function_call": {"name": name, "arguments": args},
    }


def test_legacy_function_call_becomes_a_tool_call_with_index_id() -> None:
    """A legacy function_call becomes one tool call with id 'fc-<index>'."""
    msgs = messages_from_openai(
        [{"role": "user", "content": "q"}, _legacy_call("lookup", '{"k": 1}')]
    )
    assert (ToolCall("fc-1", "lookup", '{"k": 1}'),) == msgs[1].tool_calls


def test_legacy_function_reply_pairs_with_its_call() -> None:
    """A role 'function' reply becomes a tool message answering the function_call."""
    msgs = messages_from_openai(
        [
            {"role": "user", "content": "q"},
            _legacy_call("lookup"),
            {"role": "function", "name": "lookup", "content": "42"},
        ]
    )
    reply = msgs[2]
    assert (
        reply.role,
        reply.tool_call_id,
        reply.name,
        reply.content,
    ) == ("tool", "fc-1", "lookup", "42")
    assert reply.metadata["openai_legacy_function"] is True


def test_legacy_reply_pairs_with_nearest_unanswered_call_of_same_name() -> None:
    """Replies pair with the nearest earlier unanswered call of the same name."""
    msgs = messages_from_openai(
        [
            _legacy_call("a"),  # fc-0
            _legacy_call("b"),  # fc-1
            _legacy_call("a"),  # fc-2
            {"role": "function", "name": "a", "content": "r1"},
            {"role": "function", "name": "b", "content": "r2"},
            {"role": "function", "name": "a", "content": "r3"},
        ]
    )
    assert [m.tool_call_id for m in msgs[3:]] == ["fc-2", "fc-1", "fc-0"]


def test_legacy_reply_with_other_name_pairs_with_any_unanswered_call() -> None:
    """A reply whose name matches no call pairs with the nearest unanswered one."""
    msgs = messages_from_openai(
        [_legacy_call("a"), _legacy_call("b"), {"role": "function", "name": "zzz", "content": "r"}]
    )
    assert msgs[2].tool_call_id == "fc-1"


def test_legacy_reply_without_any_call_stays_unpaired() -> None:
    """A function reply with no open call keeps tool_call_id None (segmentation repairs it)."""
    msgs = messages_from_openai(
        [{"role": "user", "content": "q"}, {"role": "function", "name": "f", "content": "r"}]
    )
    assert msgs[1].tool_call_id is None


# -- errors name the index ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"role": "robot", "content": "x"}, "bad_role"),
        ({"content": "x"}, "bad_role"),
        ({"role": "user", "content": 42}, "bad_content"),
        ({"role": "user", "content": [{"text": "no type"}]}, "bad_content"),
        ({"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}, "bad_tool_call"),
        ({"role": "assistant", "tool_calls": ["not a dict"]}, "bad_tool_call"),
        ("not a dict", "bad"),
    ],
)
def test_malformed_message_names_its_index(bad: Any, problem: str) -> None:
    """messages_from_openai raises InvalidHistoryError with the bad message's index and code."""
    items = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, bad]
    with pytest.raises(InvalidHistoryError) as info:
        messages_from_openai(items)
    assert (2, problem) == (info.value.index, info.value.problem)
    assert str(info.value).startswith("message 2: ")


def test_unknown_role_error_lists_allowed_roles() -> None:
    """The bad-role error lists the accepted roles, legacy ones included."""
    with pytest.raises(InvalidHistoryError, match="developer, function"):
        from_openai({"role": "robot"})
