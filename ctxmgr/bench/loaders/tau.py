"""Loader for tau-bench trajectories: one transcript per run, at most one ``action`` probe."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ctxmgr.bench.loaders._common import (
    Source,
    _dataset_label,
    _first,
    _get,
    _openai_messages,
    _record,
    _transcript,
    _typename,
)
from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.messages import Message

# ---------------------------------------------------------------------------------------
# tau-bench
# ---------------------------------------------------------------------------------------
_ALNUM_BEFORE = r"(?<![A-Za-z0-9])"
_ALNUM_AFTER = r"(?![A-Za-z0-9])"


def _detect_tau(src: Source) -> bool:
    first = _first(src.data)
    return not src.is_jsonl and isinstance(first, Mapping) and "traj" in first


def _scalar_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _scalar_leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _scalar_leaves(v)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float, str)):
        text = str(value)
        if text:
            yield text


def _appears(value: str, text: str) -> bool:
    return re.search(_ALNUM_BEFORE + re.escape(value) + _ALNUM_AFTER, text) is not None


def _load_tau(src: Source) -> list[Transcript]:
    """Load tau-bench historical trajectories: one transcript per run.

    Each record is ``{task_id, trial, reward, info: {task: {actions: [{name, kwargs}]}},
    traj: [OpenAI messages]}``. Transcript ``id`` is ``"tau-bench/<task_id>-<trial>"``;
    metadata holds ``task_id``, ``trial``, ``reward`` and ``gt_actions`` (the names).

    One ``"action"`` probe is made for the final ground-truth action: its ``position`` is
    the last assistant message calling a tool of that name. When the agent never called
    it, the last ground-truth action the agent did call is used instead
    (``metadata["is_last_gt_action"]`` is then false); when it called none of them, or
    the task has no ground-truth action, there is no probe and
    ``transcript.metadata["probe_skipped"]`` says why. ``values`` are the action's
    ``kwargs`` scalar leaves (nested lists and dicts flattened; numbers as strings;
    booleans and nulls skipped) that appear in the text of tool results before
    ``position``. A value must appear as a whole token there, not glued to letters or
    digits (so ``"no"`` is not found in ``"economy"``, nor ``"0"`` in ``"2024"``), and
    must appear nowhere in the always-kept messages (system prompt, first user message)
    nor in the arguments of earlier tool calls: only values the policy can lose are
    scored. The others are in ``metadata["values_not_scored"]``.
    """
    data = src.data
    if not isinstance(data, list):
        raise src.error(f"expected a list of trajectories, got {_typename(data)}")
    out: list[Transcript] = []
    for r, raw in enumerate(data):
        rec = _record(src, raw, r)
        task_id = _get(src, rec, "task_id", (str, int), record=r)
        trial = _get(src, rec, "trial", (str, int), record=r)
        messages = _openai_messages(src, rec.get("traj"), record=r, field="traj")
        actions = _tau_actions(src, rec, r)
        metadata: dict[str, Any] = {
            "task_id": task_id,
            "trial": trial,
            "reward": rec.get("reward"),
            "gt_actions": [name for name, _ in actions],
        }
        probe = _tau_probe(messages, actions, metadata)
        out.append(
            _transcript(
                src,
                f"tau-bench/{task_id}-{trial}",
                _dataset_label(src, "tau-bench", "gpt-4o-airline.json"),
                messages,
                [probe] if probe else [],
                metadata,
            )
        )
    return out


def _tau_actions(src: Source, rec: Mapping[str, Any], r: int) -> list[tuple[str, Any]]:
    info = rec.get("info")
    task = info.get("task") if isinstance(info, Mapping) else None
    raw = task.get("actions") if isinstance(task, Mapping) else None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise src.error(f"expected list, got {_typename(raw)}", record=r, field="info.task.actions")
    actions = []
    for k, action in enumerate(raw):
        where = f"info.task.actions[{k}]."
        if not isinstance(action, Mapping):
            raise src.error(
                f"expected an action object, got {_typename(action)}",
                record=r,
                field=where.rstrip("."),
            )
        name = _get(src, action, "name", str, record=r, prefix=where)
        actions.append((name, action.get("kwargs") or {}))
    return actions


def _tau_probe(
    messages: list[Message], actions: list[tuple[str, Any]], metadata: dict[str, Any]
) -> Probe | None:
    if not actions:
        metadata["probe_skipped"] = "no ground-truth actions"
        return None
    for k in range(len(actions) - 1, -1, -1):
        name, kwargs = actions[k]
        position = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if messages[i].role == "assistant"
                and any(c.name == name for c in messages[i].tool_calls)
            ),
            None,
        )
        if position is None:
            continue
        earlier = "\n".join(m.text for m in messages[:position] if m.role == "tool")
        first_user = next((m for m in messages if m.role == "user"), None)
        always_kept = "\n".join(m.text for m in messages if m.role == "system" or m is first_user)
        earlier_args = "\n".join(c.arguments for m in messages[:position] for c in m.tool_calls)
        values = list(dict.fromkeys(_scalar_leaves(kwargs)))
        found = tuple(
            v
            for v in values
            if _appears(v, earlier)
            and not _appears(v, always_kept)
            and not _appears(v, earlier_args)
        )
        return Probe(
            kind="action",
            position=position,
            values=found,
            metadata={
                "action": name,
                "action_index": k,
                "is_last_gt_action": k == len(actions) - 1,
                "kwargs": kwargs,
                "values_not_scored": [v for v in values if v not in found],
            },
        )
    metadata["probe_skipped"] = "the agent called none of the ground-truth actions"
    return None
