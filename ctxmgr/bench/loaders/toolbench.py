"""Loader for ToolBench answer files (``answer_generation.train_messages``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxmgr.bench.loaders._common import Source, _get, _openai_messages, _transcript, _typename
from ctxmgr.bench.transcript import Transcript

# ---------------------------------------------------------------------------------------
# ToolBench
# ---------------------------------------------------------------------------------------
_TOOLBENCH_META = ("query", "finish_type", "valid_data", "query_count", "total_tokens")


def _detect_toolbench(src: Source) -> bool:
    data = src.data
    return not src.is_jsonl and isinstance(data, Mapping) and "answer_generation" in data


def _load_toolbench(src: Source) -> list[Transcript]:
    """Load a ToolBench answer file as one transcript ``"toolbench/<dir>/<file stem>"``.

    ``answer_generation.train_messages`` is a list of message lists, one per search step,
    each the context of that step (later ones extend earlier ones, sometimes with a
    "previous trials failed" prompt in between); the longest (the last on ties) is the
    whole run and is loaded. Messages use the legacy ``function_call`` / role
    ``function`` format, paired by :func:`ctxmgr.messages.messages_from_openai`.

    A file without messages (no, null or empty ``train_messages``, as in two of the
    published examples, whose ``valid_data`` is ``"False"``) is valid and yields ``[]``.
    Metadata: ``train_messages_index`` and ``query``, ``finish_type``, ``valid_data``,
    ``query_count``, ``total_tokens`` and ``win`` as given.
    """
    data = src.data
    if not isinstance(data, Mapping):
        raise src.error(f"expected a ToolBench answer object, got {_typename(data)}")
    ag = _get(src, data, "answer_generation", Mapping, record=0)
    steps = ag.get("train_messages")
    if not steps:
        return []
    where = "answer_generation.train_messages"
    if not isinstance(steps, list):
        raise src.error(f"expected list, got {_typename(steps)}", record=0, field=where)
    for k, step in enumerate(steps):
        if not isinstance(step, list):
            raise src.error(
                f"expected a list of messages, got {_typename(step)}",
                record=0,
                field=f"{where}[{k}]",
            )
    k = max(range(len(steps)), key=lambda j: (len(steps[j]), j))
    if not steps[k]:
        return []
    messages = _openai_messages(src, steps[k], record=0, field=f"{where}[{k}]")
    metadata: dict[str, Any] = {"train_messages_index": k}
    metadata.update({key: ag[key] for key in _TOOLBENCH_META if key in ag})
    if "win" in data:
        metadata["win"] = data["win"]
    tid = "/".join(p for p in ("toolbench", src.path.parent.name, src.path.stem) if p)
    return [_transcript(src, tid, "toolbench", messages, None, metadata)]
