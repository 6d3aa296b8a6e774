"""Loader for OpenAI Chat Completions messages (JSON or JSON Lines)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxmgr.bench.loaders._common import Source, _openai_messages, _transcript, _typename
from ctxmgr.bench.transcript import Transcript


# ---------------------------------------------------------------------------------------
# openai
# ---------------------------------------------------------------------------------------
def _is_message(value: Any) -> bool:
    return isinstance(value, Mapping) and "role" in value


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, Mapping) and "messages" in value)


def _detect_openai(src: Source) -> bool:
    data = src.data
    if isinstance(data, Mapping):
        return not src.is_jsonl and "messages" in data
    if isinstance(data, list):
        return not data or _is_message(data[0]) or _is_conversation(data[0])
    return False


def _load_openai(src: Source) -> list[Transcript]:
    """Load OpenAI chat messages (see the module docstring for the accepted shapes).

    Transcript ids are ``"openai/<id>"`` when a conversation object has an ``id``, else
    ``"openai/<file stem>"`` (``"openai/<file stem>/<n>"`` when the file holds several).
    Keys of a conversation object other than ``messages`` and ``id`` go to metadata.
    For JSON Lines, error messages also give the line number.
    """
    data = src.data
    lines = src.line_numbers
    if isinstance(data, Mapping) and not src.is_jsonl:
        conversations: list[Any] = [data]
        single = True
    elif isinstance(data, list):
        if not data:
            return []
        if _is_message(data[0]):  # one conversation: a message list, or one message a line
            conversations, single = [data], True
        else:
            conversations, single = data, False
    else:
        raise src.error(
            "expected a list of messages, an object with 'messages', or a list of those; "
            f"got {_typename(data)}"
        )
    out: list[Transcript] = []
    for r, conv in enumerate(conversations):
        line = lines[r] if lines and not single else None
        msg_lines = lines if lines and single else ()
        where = f"line {line}: " if line else ""
        metadata: dict[str, Any] = {}
        conv_id: Any = None
        if isinstance(conv, Mapping):
            if "messages" not in conv:
                raise src.error(f"{where}object has no 'messages'", record=r, field="messages")
            items = conv["messages"]
            conv_id = conv.get("id")
            metadata = {k: v for k, v in conv.items() if k not in ("messages", "id")}
        elif isinstance(conv, list):
            items = conv
        else:
            raise src.error(
                f"{where}expected a conversation (a list of messages or an object with "
                f"'messages'), got {_typename(conv)}",
                record=r,
            )
        if line:
            metadata["line"] = line
        messages = _openai_messages(
            src, items, record=r, field="messages", lines=msg_lines, prefix=where
        )
        if isinstance(conv_id, (str, int)) and not isinstance(conv_id, bool):
            tid = f"openai/{conv_id}"
        else:
            tid = f"openai/{src.path.stem}" if single else f"openai/{src.path.stem}/{r}"
        out.append(_transcript(src, tid, "openai", messages, metadata=metadata))
    return out
