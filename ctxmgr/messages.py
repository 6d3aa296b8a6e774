"""The neutral, immutable message type and its OpenAI converters.

Every adapter converts its framework's messages to :class:`Message` and back; the core
never sees framework types. Message lists are always oldest first.

The OpenAI formats handled are the Chat Completions ``messages`` array with
``tool_calls`` / role ``tool`` and the legacy ``function_call`` / role ``function``
(https://platform.openai.com/docs/api-reference/chat/create).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ctxmgr.errors import InvalidHistoryError

__all__ = [
    "REASONING_TYPES",
    "ContentPart",
    "Message",
    "Role",
    "ToolCall",
    "from_openai",
    "messages_from_openai",
    "messages_to_openai",
    "to_openai",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

#: Content-part types holding model reasoning: Anthropic ``thinking`` (with its
#: ``signature``) and ``redacted_thinking`` (``data``) blocks
#: (https://docs.claude.com/en/docs/build-with-claude/extended-thinking), OpenAI
#: Responses ``reasoning`` items and LangChain ``reasoning`` content blocks. They are kept
#: verbatim (every key, in ``ContentPart.data``) so a provider can verify signatures.
REASONING_TYPES: frozenset[str] = frozenset({"thinking", "redacted_thinking", "reasoning"})
#: Keys of a reasoning part that hold readable reasoning text.
REASONING_TEXT_KEYS: tuple[str, ...] = ("thinking", "reasoning", "content", "text")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not mapping:
        return _EMPTY
    if isinstance(mapping, MappingProxyType):
        return mapping
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool (function) call requested by an assistant message.

    Attributes:
        id: the provider's call id (``call_...``); tool results refer to it.
        name: the tool's name.
        arguments: the arguments as the JSON text the model produced (not parsed, so
            nothing is lost when the model emits invalid JSON).
    """

    id: str
    name: str
    arguments: str = "{}"

    def __post_init__(self) -> None:
        for field_name, value in (
            ("id", self.id),
            ("name", self.name),
            ("arguments", self.arguments),
        ):
            if not isinstance(value, str):
                raise InvalidHistoryError(
                    f"ToolCall.{field_name} must be a str, got {type(value).__name__} {value!r}",
                    problem="bad_tool_call",
                )
        if not self.name:
            raise InvalidHistoryError(
                f"ToolCall {self.id!r} has an empty name", problem="bad_tool_call"
            )

    def parsed_arguments(self) -> Any:
        """Return the arguments decoded from JSON, or the raw text when it is not JSON."""
        try:
            return json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            return self.arguments


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a multimodal message.

    Attributes:
        type: the part type as OpenAI names it: ``"text"``, ``"image_url"``,
            ``"input_audio"``, ``"file"``, or any other string (kept verbatim).
        text: the text for ``type == "text"``; empty otherwise.
        data: the rest of the part as given (e.g. ``{"image_url": {"url": ...}}``), read-only.
    """

    type: str
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not isinstance(self.text, str):
            raise InvalidHistoryError(
                f"ContentPart type and text must be str, got {self.type!r}, "
                f"{type(self.text).__name__}",
                problem="bad_content",
            )
        if not isinstance(self.data, Mapping):
            raise InvalidHistoryError(
                f"ContentPart.data must be a mapping, got {type(self.data).__name__}",
                problem="bad_content",
            )
        object.__setattr__(self, "data", _freeze(self.data))

    def __copy__(self) -> ContentPart:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ContentPart:
        return self  # immutable

    @property
    def is_reasoning(self) -> bool:
        """True for a reasoning part (a type in :data:`REASONING_TYPES`)."""
        return self.type in REASONING_TYPES

    def to_openai(self) -> dict[str, Any]:
        """Return the part as an OpenAI content-part dict."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "text":
            out["text"] = self.text
        out.update({k: v for k, v in self.data.items() if k not in ("type", "text")})
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Message:
    """A chat message, independent of any framework. Immutable.

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
        content: plain text, or a tuple of :class:`ContentPart` for multimodal content.
        tool_calls: calls requested by an assistant message (parallel calls allowed).
        tool_call_id: for a ``tool`` message, the id of the call it answers.
        name: optional participant or tool name.
        id: a stable id. Given ids are kept; otherwise one is derived from the content
            (``"m-"`` + 16 hex digits of BLAKE2b), so equal messages get equal ids and a
            message rebuilt by an adapter keeps its id.
        metadata: free-form, read-only extra data (framework ids, LoCoMo ``dia_id``...).
        pinned: when true, strategies never evict this message.

    Equality compares every field except ``metadata``; the hash is the content
    fingerprint. Both are O(1) after construction.
    """

    role: Role
    content: str | tuple[ContentPart, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    pinned: bool = False
    fingerprint: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidHistoryError(
                f"Message.role must be one of {', '.join(ROLES)}; got {self.role!r}",
                problem="bad_role",
            )
        if isinstance(self.content, list):
            object.__setattr__(self, "content", tuple(self.content))
        if isinstance(self.tool_calls, list):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        _check_fields(self)
        object.__setattr__(self, "metadata", _freeze(self.metadata))
        digest = hashlib.blake2b(self._canonical().encode("utf-8"), digest_size=8).hexdigest()
        object.__setattr__(self, "fingerprint", digest)
        if not self.id:
            object.__setattr__(self, "id", "m-" + digest)

    def _canonical(self) -> str:
        content: Any = self.content
        if not isinstance(content, str):
            content = [p.to_openai() for p in content]
        calls = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        return json.dumps(
            [self.role, content, calls, self.tool_call_id, self.name, self.pinned],
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )

    # -- identity -------------------------------------------------------------------------
    def __copy__(self) -> Message:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Message:
        return self  # immutable: copies share the object

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Message):
            return NotImplemented
        return self.fingerprint == other.fingerprint and self.id == other.id

    def __hash__(self) -> int:
        return hash((self.fingerprint, self.id))

    # -- convenience constructors ----------------------------------------------------------
    @classmethod
    def system(cls, content: str, **kw: Any) -> Message:
        """Build a system message."""
        return cls("system", content, **kw)

    @classmethod
    def user(cls, content: str | Sequence[ContentPart], **kw: Any) -> Message:
        """Build a user message."""
        return cls("user", content if isinstance(content, str) else tuple(content), **kw)

    @classmethod
    def assistant(
        cls, content: str = "", tool_calls: Iterable[ToolCall] = (), **kw: Any
    ) -> Message:
        """Build an assistant message, optionally with tool calls."""
        return cls("assistant", content, tool_calls=tuple(tool_calls), **kw)

    @classmethod
    def tool(cls, content: str, tool_call_id: str, **kw: Any) -> Message:
        """Build a tool-result message answering ``tool_call_id``."""
        return cls("tool", content, tool_call_id=tool_call_id, **kw)

    # -- derived views ------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The text content: the string, or the text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text")

    @property
    def search_text(self) -> str:
        """Text used for relevance scoring: name, content, tool names and arguments."""
        parts = [self.name or "", self.text]
        parts.extend(f"{c.name} {c.arguments}" for c in self.tool_calls)
        return " ".join(p for p in parts if p)

    @property
    def reasoning(self) -> tuple[ContentPart, ...]:
        """The reasoning parts of the content (thinking, redacted thinking, reasoning)."""
        if isinstance(self.content, str):
            return ()
        return tuple(p for p in self.content if p.is_reasoning)

    def evolve(self, **changes: Any) -> Message:
        """Return a copy with ``changes`` applied (a new id is derived unless given)."""
        if "id" not in changes:
            changes["id"] = ""
        return replace(self, **changes)


def _bad(field_name: str, expected: str, value: Any, hint: str = "") -> InvalidHistoryError:
    got = type(value).__name__
    return InvalidHistoryError(
        f"Message.{field_name} must be {expected}, got {got} {value!r:.60}{hint}",
        problem="bad_field",
    )


def _check_fields(msg: Message) -> None:
    """Reject wrong field types at construction (nothing is coerced: 'false' is no bool).

    Raises:
        InvalidHistoryError: naming the field, the expected and the given type.
    """
    content = msg.content
    if not isinstance(content, str) and not (
        type(content) is tuple and all(isinstance(p, ContentPart) for p in content)
    ):
        raise _bad(
            "content",
            "a str or a sequence of ContentPart",
            content,
            " (convert OpenAI dicts with messages_from_openai)",
        )
    calls = msg.tool_calls
    if type(calls) is not tuple or not all(isinstance(c, ToolCall) for c in calls):
        raise _bad("tool_calls", "a sequence of ToolCall", calls)
    if msg.tool_call_id is not None and not isinstance(msg.tool_call_id, str):
        raise _bad("tool_call_id", "a str (the id of the call answered) or None", msg.tool_call_id)
    if msg.name is not None and not isinstance(msg.name, str):
        raise _bad("name", "a str or None", msg.name)
    if not isinstance(msg.id, str):
        raise _bad("id", "a str", msg.id)
    if type(msg.pinned) is not bool:
        raise _bad("pinned", "True or False", msg.pinned)
    if msg.metadata is not None and not isinstance(msg.metadata, Mapping):
        raise _bad("metadata", "a mapping", msg.metadata)


# ---------------------------------------------------------------------------------------
# OpenAI converters
# ---------------------------------------------------------------------------------------
def _content_from_openai(raw: Any, index: int | None) -> str | tuple[ContentPart, ...]:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = []
        for part in raw:
            if isinstance(part, str):
                parts.append(ContentPart("text", part))
            elif isinstance(part, Mapping) and isinstance(part.get("type"), str):
                ptype = part["type"]
                text = part.get("text", "") if ptype == "text" else ""
                if not isinstance(text, str):
                    raise InvalidHistoryError(
                        f"field 'content[{len(parts)}].text' must be a string, "
                        f"got {type(text).__name__}",
                        index=index,
                        problem="bad_content",
                    )
                data = {k: v for k, v in part.items() if k not in ("type", "text")}
                parts.append(ContentPart(ptype, text, data))
            else:
                raise InvalidHistoryError(
                    f"field 'content[{len(parts)}]' has no string 'type': {part!r:.60}",
                    index=index,
                    problem="bad_content",
                )
        return tuple(parts)
    raise InvalidHistoryError(
        f"field 'content' must be a string or a list of parts, got {type(raw).__name__}",
        index=index,
        problem="bad_content",
    )


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def from_openai(data: Mapping[str, Any], *, index: int | None = None) -> Message:
    """Convert one OpenAI chat message dict to a :class:`Message`.

    Handles ``tool_calls`` and role ``tool``. A legacy ``function_call`` becomes one
    tool call whose id is ``"fc-<index>"``; pairing a role ``function`` reply with it needs
    the whole list, so use :func:`messages_from_openai` for legacy histories. Unknown
    keys are kept in ``metadata``. The ``developer`` role is read as ``system``.

    Args:
        data: the message dict (not mutated).
        index: position in the history, used in error messages.

    Raises:
        InvalidHistoryError: the dict has no valid role, or a malformed field.
    """
    if not isinstance(data, Mapping):
        raise InvalidHistoryError(
            f"expected a message object, got {type(data).__name__}", index=index, problem="bad"
        )
    role = data.get("role")
    if "role" not in data:
        raise InvalidHistoryError(
            f"missing 'role' (keys: {', '.join(map(str, data)) or 'none'})",
            index=index,
            problem="bad_role",
        )
    if role == "developer":
        role = "system"
    if role == "function":
        role = "tool"
    if role not in ROLES:
        raise InvalidHistoryError(
            f"unknown role {role!r} (allowed: {', '.join(ROLES)}, developer, function)",
            index=index,
            problem="bad_role",
        )
    calls: list[ToolCall] = []
    raw_calls = data.get("tool_calls") or ()
    if not isinstance(raw_calls, (list, tuple)):
        raise InvalidHistoryError(
            f"field 'tool_calls' must be a list, got {type(raw_calls).__name__}",
            index=index,
            problem="bad_tool_call",
        )
    for j, call in enumerate(raw_calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not fn.get("name"):
            raise InvalidHistoryError(
                f"field 'tool_calls[{j}]' has no function name",
                index=index,
                problem="bad_tool_call",
            )
        call_id = call.get("id") or f"call-{index}-{j}"
        for key, value in (("id", call_id), ("function.name", fn["name"])):
            if not isinstance(value, str):
                raise InvalidHistoryError(
                    f"field 'tool_calls[{j}].{key}' must be a string, got "
                    f"{type(value).__name__} {value!r:.40}",
                    index=index,
                    problem="bad_tool_call",
                )
        calls.append(ToolCall(call_id, fn["name"], _arguments_text(fn.get("arguments"))))
    fc = data.get("function_call")
    if isinstance(fc, Mapping) and fc.get("name"):
        calls.append(ToolCall(f"fc-{index}", str(fc["name"]), _arguments_text(fc.get("arguments"))))
    known = {
        "role",
        "content",
        "tool_calls",
        "tool_call_id",
        "name",
        "function_call",
        "id",
        "pinned",
    }
    metadata = {k: v for k, v in data.items() if k not in known}
    if data.get("role") == "function":
        metadata["openai_legacy_function"] = True
    for key, expected in (("tool_call_id", str), ("name", str), ("pinned", bool)):
        value = data.get(key)
        if value is not None and not isinstance(value, expected):
            raise InvalidHistoryError(
                f"field {key!r} must be {'true or false' if expected is bool else 'a string'}, "
                f"got {type(value).__name__} {value!r:.40}",
                index=index,
                problem="bad_field",
            )
    try:
        return Message(
            role=role,
            content=_content_from_openai(data.get("content"), index),
            tool_calls=tuple(calls),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            id=str(data.get("id") or ""),
            metadata=metadata,
            pinned=bool(data.get("pinned", False)),
        )
    except InvalidHistoryError as exc:
        if exc.index is not None:
            raise
        raise InvalidHistoryError(str(exc), index=index, problem=exc.problem) from None


def messages_from_openai(items: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Convert an OpenAI messages array (oldest first) to a list of :class:`Message`.

    Legacy ``function`` replies are paired with the nearest earlier unanswered
    ``function_call`` of the same name (or, failing that, any unanswered one).

    Raises:
        InvalidHistoryError: naming the index of the first malformed message.
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidHistoryError(
            "messages_from_openai() takes a list of OpenAI message dicts (oldest first), "
            f"got {type(items).__name__}",
            problem="bad_argument",
        )
    out: list[Message] = []
    open_calls: list[ToolCall] = []
    for index, item in enumerate(items):
        msg = from_openai(item, index=index)
        if msg.role == "assistant":
            open_calls.extend(c for c in msg.tool_calls if c.id.startswith("fc-"))
        elif (
            msg.role == "tool"
            and msg.tool_call_id is None
            and msg.metadata.get("openai_legacy_function")
        ):
            match = next((c for c in reversed(open_calls) if c.name == msg.name), None)
            if match is None and open_calls:
                match = open_calls[-1]
            if match is not None:
                open_calls.remove(match)
                msg = msg.evolve(tool_call_id=match.id, id=msg.id)
        out.append(msg)
    return out


def to_openai(message: Message) -> dict[str, Any]:
    """Convert a :class:`Message` to an OpenAI Chat Completions message dict.

    The result has ``role`` and ``content`` always; ``tool_calls``, ``tool_call_id``
    and ``name`` when set. ``id``, ``metadata`` and ``pinned`` are not sent to providers
    and are left out.
    """
    content: Any = message.content
    if not isinstance(content, str):
        content = [p.to_openai() for p in content]
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        if out["content"] == "":
            out["content"] = None
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    reasoning = message.metadata.get("reasoning_content")
    if isinstance(reasoning, str):  # OpenAI-compatible reasoning field (DeepSeek, vLLM...)
        out["reasoning_content"] = reasoning
    return out


def messages_to_openai(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Convert messages (oldest first) to an OpenAI messages array."""
    return [to_openai(m) for m in messages]
