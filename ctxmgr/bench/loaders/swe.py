"""Loader for SWE-agent ``.traj`` files (function-calling demonstrations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxmgr.bench.loaders._common import Source, _openai_messages, _transcript, _typename
from ctxmgr.bench.transcript import Transcript


# ---------------------------------------------------------------------------------------
# SWE-agent
# ---------------------------------------------------------------------------------------
def _detect_swe(src: Source) -> bool:
    data = src.data
    return (
        not src.is_jsonl
        and isinstance(data, Mapping)
        and (isinstance(data.get("history"), list) or isinstance(data.get("trajectory"), list))
    )


def _load_swe(src: Source) -> list[Transcript]:
    """Load a SWE-agent ``.traj`` file as one transcript ``"swe-agent/<file stem>"``.

    Messages come from ``history`` (the full conversation); when it is absent or empty,
    from the last ``trajectory[-1].messages`` (SWE-agent's own view, in which old
    observations may be elided). A tool message answers the calls in its
    ``tool_call_ids`` list: with one id it becomes one tool message; with several, one
    tool message per id with the same content, each with
    ``metadata["split_from_tool_call_ids"]``. SWE-agent's extra keys (``agent``,
    ``message_type``, ``thought``, ``action``...) are kept in message metadata.
    Transcript metadata: ``messages_field``, and ``exit_status`` / ``environment`` when
    present.
    """
    data = src.data
    if not isinstance(data, Mapping):
        raise src.error(f"expected a .traj object, got {_typename(data)}")
    history: Any = data.get("history")
    field = "history"
    if not (isinstance(history, list) and history):
        traj = data.get("trajectory")
        last = traj[-1] if isinstance(traj, list) and traj else None
        steps = last.get("messages") if isinstance(last, Mapping) else None
        if isinstance(steps, list) and steps:
            history, field = steps, f"trajectory[{len(traj) - 1}].messages"  # type: ignore[arg-type]
    if not isinstance(history, list):
        raise src.error(
            "no 'history' list (nor 'trajectory[-1].messages')", record=0, field="history"
        )
    expanded: list[Any] = []
    origin: list[int] = []
    for i, item in enumerate(history):
        if isinstance(item, Mapping) and "tool_call_ids" in item:
            ids = item["tool_call_ids"]
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                raise src.error(
                    f"expected a list of call ids, got {ids!r}",
                    record=0,
                    field=f"{field}[{i}].tool_call_ids",
                )
            base = {k: v for k, v in item.items() if k != "tool_call_ids"}
            if len(ids) <= 1:
                if ids:
                    base["tool_call_id"] = ids[0]
                expanded.append(base)
                origin.append(i)
            else:
                for call_id in ids:
                    expanded.append(
                        {**base, "tool_call_id": call_id, "split_from_tool_call_ids": list(ids)}
                    )
                    origin.append(i)
        else:
            expanded.append(item)
            origin.append(i)
    messages = _openai_messages(src, expanded, record=0, field=field, origin=origin)
    metadata: dict[str, Any] = {"messages_field": field}
    info = data.get("info")
    if isinstance(info, Mapping) and info.get("exit_status") is not None:
        metadata["exit_status"] = info["exit_status"]
    if data.get("environment") is not None:
        metadata["environment"] = data["environment"]
    return [_transcript(src, f"swe-agent/{src.path.stem}", "swe-agent", messages, None, metadata)]
