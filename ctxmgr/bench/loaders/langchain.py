"""Loader for JSON lists made by ``langchain_core.messages.messages_to_dict``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ctxmgr.bench.loaders._common import Source, _first, _openai_messages, _transcript, _typename
from ctxmgr.bench.transcript import Transcript


# ---------------------------------------------------------------------------------------
# LangChain
# ---------------------------------------------------------------------------------------
def _detect_langchain(src: Source) -> bool:
    first = _first(src.data)
    return (
        not src.is_jsonl
        and isinstance(first, Mapping)
        and "type" in first
        and isinstance(first.get("data"), Mapping)
    )


def _load_langchain(src: Source) -> list[Transcript]:
    """Load a ``messages_to_dict`` dump as one transcript ``"langchain/<file stem>"``.

    Each item is rebuilt with ``langchain_core.messages.messages_from_dict`` and mapped:
    ``HumanMessage`` to ``user``, ``AIMessage`` to ``assistant`` (``tool_calls`` become
    :class:`~ctxmgr.messages.ToolCall` with JSON arguments; ``invalid_tool_calls`` that
    have a name keep their raw argument text), ``SystemMessage`` to ``system``,
    ``ToolMessage`` to ``tool``, ``FunctionMessage`` to a legacy function reply and
    ``ChatMessage`` by its role. Message ids are the LangChain ids when set; non-empty
    ``additional_kwargs`` / ``response_metadata``, a non-success tool ``status`` and the
    LangChain type (``lc_type``) go to metadata.

    Raises:
        ImportError: langchain-core is not installed.
    """
    try:
        from langchain_core import messages as lc
    except ImportError as e:
        raise ImportError(
            'the "langchain" transcript format needs langchain-core: '
            'pip install "ctxmgr-llm[langchain]"'
        ) from e
    data = src.data
    if not isinstance(data, list):
        raise src.error(f"expected a list of LangChain message dicts, got {_typename(data)}")
    items: list[dict[str, Any]] = []
    for i, raw in enumerate(data):
        try:
            (msg,) = lc.messages_from_dict([raw])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise src.error(
                f"not a LangChain message dict: {type(e).__name__}: {e}",
                record=0,
                field=f"messages[{i}]",
            ) from e
        items.append(_openai_from_langchain(src, lc, msg, i))
    messages = _openai_messages(src, items, record=0, field="messages")
    return [_transcript(src, f"langchain/{src.path.stem}", "langchain", messages)]


def _openai_from_langchain(src: Source, lc: Any, msg: Any, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"content": msg.content, "lc_type": msg.type}
    extra = dict(msg.additional_kwargs or {})
    if isinstance(msg, lc.HumanMessage):
        out["role"] = "user"
    elif isinstance(msg, lc.AIMessage):
        out["role"] = "assistant"
        calls = [
            {
                "id": tc.get("id"),
                "type": "function",
                "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args") or {})},
            }
            for tc in msg.tool_calls
        ]
        calls += [
            {
                "id": tc.get("id"),
                "type": "function",
                "function": {"name": tc["name"], "arguments": tc.get("args") or ""},
            }
            for tc in msg.invalid_tool_calls
            if tc.get("name")
        ]
        if calls:
            out["tool_calls"] = calls
        extra.pop("tool_calls", None)
        if "function_call" in extra and not calls:
            out["function_call"] = extra.pop("function_call")
    elif isinstance(msg, lc.SystemMessage):
        out["role"] = "system"
    elif isinstance(msg, lc.ToolMessage):
        out["role"] = "tool"
        out["tool_call_id"] = msg.tool_call_id
        if getattr(msg, "status", "success") != "success":
            out["status"] = msg.status
    elif isinstance(msg, lc.FunctionMessage):
        out["role"] = "function"
    elif isinstance(msg, lc.ChatMessage):
        out["role"] = {"human": "user", "ai": "assistant"}.get(msg.role, msg.role)
    else:
        raise src.error(
            f"unsupported LangChain message type {type(msg).__name__}",
            record=0,
            field=f"messages[{i}]",
        )
    if msg.name:
        out["name"] = msg.name
    if msg.id:
        out["id"] = msg.id
    if extra:
        out["additional_kwargs"] = extra
    if msg.response_metadata:
        out["response_metadata"] = dict(msg.response_metadata)
    return out
