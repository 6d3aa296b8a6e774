"""Shared pieces of the transcript loaders: :class:`Source` and the JSON/message helpers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.errors import InvalidHistoryError, TranscriptError
from ctxmgr.messages import Message, messages_from_openai

_JSONL_SUFFIXES = (".jsonl", ".ndjson")


# ---------------------------------------------------------------------------------------
# Source: a file read and parsed at most once
# ---------------------------------------------------------------------------------------
class Source:
    """A transcript file handed to detectors and loaders; read and parsed at most once.

    Attributes:
        path: the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(
        self, message: str, *, record: int | str | None = None, field: str | None = None
    ) -> TranscriptError:
        """Return (not raise) a :class:`TranscriptError` about this file."""
        return TranscriptError(message, path=str(self.path), record=record, field=field)

    @cached_property
    def text(self) -> str:
        """The file's text (UTF-8, a BOM is dropped).

        Raises:
            TranscriptError: the file cannot be read or is not UTF-8.
        """
        try:
            return self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise self.error(f"not UTF-8 text (bad byte at offset {e.start})") from e
        except OSError as e:
            raise self.error(f"cannot read file: {e.strerror or e}") from e

    @cached_property
    def _parsed(self) -> tuple[Any, tuple[int, ...] | None]:
        text = self.text
        if self.path.suffix.lower() in _JSONL_SUFFIXES:
            return self._parse_lines(text)
        try:
            return json.loads(text), None
        except json.JSONDecodeError as e:
            # JSON Lines saved as .json: "Extra data" after a first line that is valid JSON.
            if e.msg == "Extra data" and self._first_line_is_json(text):
                return self._parse_lines(text)
            raise self.error(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e

    @staticmethod
    def _first_line_is_json(text: str) -> bool:
        for line in text.splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    return False
                return True
        return False

    def _parse_lines(self, text: str) -> tuple[list[Any], tuple[int, ...]]:
        values: list[Any] = []
        lines: list[int] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise self.error(f"invalid JSON at line {lineno}, column {e.colno}: {e.msg}") from e
            lines.append(lineno)
        return values, tuple(lines)

    @property
    def data(self) -> Any:
        """The parsed JSON document; for JSON Lines, the list of the lines' values.

        Raises:
            TranscriptError: the file is not valid JSON (the message gives line and column).
        """
        return self._parsed[0]

    @property
    def is_jsonl(self) -> bool:
        """Whether the file is JSON Lines (by extension, or a ``.json`` file holding lines)."""
        return self._parsed[1] is not None

    @property
    def line_numbers(self) -> tuple[int, ...]:
        """For JSON Lines, the 1-based line number of each value in :attr:`data`; else ``()``."""
        return self._parsed[1] or ()


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------
_TYPE_NAMES: dict[type, str] = {
    Mapping: "object",
    dict: "object",
    list: "list",
    str: "string",
    int: "integer",
}


def _typename(value: Any) -> str:
    """Name a JSON value's type the JSON way (``object``, ``list``, ``string``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    for t, name in _TYPE_NAMES.items():
        if isinstance(value, t):
            return name
    return type(value).__name__


def _get(
    src: Source,
    obj: Mapping[str, Any],
    key: str,
    types: type | tuple[type, ...],
    *,
    record: int | str | None,
    prefix: str = "",
    required: bool = True,
    empty_ok: bool = True,
) -> Any:
    """Return ``obj[key]`` checked against ``types`` (``None`` when optional and absent)."""
    value = obj.get(key)
    if value is None and not required:
        return None
    if (
        value is None
        or not isinstance(value, types)
        or isinstance(value, bool)
        or (not empty_ok and not value)
    ):
        names = (types,) if isinstance(types, type) else types
        expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in names)
        got = "missing" if key not in obj else f"got {_typename(value)} {value!r}"[:80]
        raise src.error(f"expected {expected} ({got})", record=record, field=prefix + key)
    return value


def _record(src: Source, value: Any, record: int | str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise src.error(f"expected an object, got {_typename(value)}", record=record)
    return value


def _openai_messages(
    src: Source,
    items: Any,
    *,
    record: int | str | None,
    field: str,
    origin: Sequence[int] | None = None,
    lines: Sequence[int] = (),
    prefix: str = "",
) -> list[Message]:
    """Convert OpenAI message dicts, mapping errors to ``field[i]`` (``origin[i]`` if given).

    ``lines`` (JSON Lines: the line of each item) or ``prefix`` locate the error further.
    """
    if not isinstance(items, list):
        raise src.error(
            f"{prefix}expected a list of messages, got {_typename(items)}",
            record=record,
            field=field,
        )
    try:
        return messages_from_openai(items)
    except InvalidHistoryError as e:
        index = e.index
        if index is not None and origin is not None:
            index = origin[index]
        message = str(e).removeprefix(f"message {e.index}: ")
        if lines and index is not None:
            message = f"line {lines[index]}: {message}"
        message = prefix + message
        where = f"{field}[{index}]" if index is not None else field
        raise src.error(message, record=record, field=where) from e


def _unique_ids(messages: list[Message]) -> list[Message]:
    seen: set[str] = set()
    out: list[Message] = []
    for m in messages:
        new_id, n = m.id, 1
        while new_id in seen:
            n += 1
            new_id = f"{m.id}#{n}"
        seen.add(new_id)
        out.append(m if new_id == m.id else m.evolve(id=new_id))
    return out


def _is_derived_id(m: Message) -> bool:
    return m.id == "m-" + m.fingerprint


def _unique_call_ids(messages: list[Message]) -> list[Message]:
    """Rename tool-call ids re-issued within one conversation, and their results.

    Some recordings reuse a call id for a later, different call (tau-bench, SWE-agent);
    the later call becomes ``"<id>#2"`` (``#3``...) and the tool results after it that
    answer ``<id>`` follow, so every call id is unique and results stay with their call.
    Renamed messages keep the original ids in ``metadata["original_tool_call_ids"]`` /
    ``metadata["original_tool_call_id"]``.
    """
    issued: dict[str, int] = {}
    alias: dict[str, str] = {}
    out: list[Message] = []
    for m in messages:
        changes: dict[str, Any] = {}
        if m.tool_calls:
            calls = []
            for call in m.tool_calls:
                n = issued.get(call.id, 0) + 1
                issued[call.id] = n
                alias[call.id] = call.id if n == 1 else f"{call.id}#{n}"
                calls.append(replace(call, id=alias[call.id]))
            if any(c.id != o.id for c, o in zip(calls, m.tool_calls, strict=True)):
                changes["tool_calls"] = tuple(calls)
                changes["metadata"] = {
                    **m.metadata,
                    "original_tool_call_ids": [c.id for c in m.tool_calls],
                }
        if m.tool_call_id is not None and alias.get(m.tool_call_id, m.tool_call_id) != (
            m.tool_call_id
        ):
            changes["tool_call_id"] = alias[m.tool_call_id]
            changes["metadata"] = {**m.metadata, "original_tool_call_id": m.tool_call_id}
        if changes:
            if not _is_derived_id(m):
                changes["id"] = m.id
            m = m.evolve(**changes)
        out.append(m)
    return out


def _transcript(
    src: Source,
    id: str,
    dataset: str,
    messages: list[Message],
    probes: list[Probe] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transcript:
    return Transcript(
        id=id,
        dataset=dataset,
        source=str(src.path),
        messages=_unique_ids(_unique_call_ids(messages)),
        probes=probes or [],
        metadata=metadata or {},
    )


def _dataset_label(src: Source, name: str, builtin_file: str) -> str:
    """``name`` for the built-in dataset's own file (``builtin_file``), else the file's stem.

    Results are grouped by this label, so another file in the same format (a held-out set)
    gets its own rows instead of being pooled with the public dataset.
    """
    return name if src.path.name == builtin_file else src.path.stem


def _first(data: Any) -> Any:
    return data[0] if isinstance(data, list) and data else None
