"""Load recorded transcripts from files: one registry of loaders, format auto-detected.

Built-in formats (:data:`FORMATS`):

* ``"openai"``: OpenAI Chat Completions messages (``tool_calls`` / role ``tool`` or the
  legacy ``function_call`` / role ``function``) as JSON or JSON Lines: a list of messages,
  an object with ``messages``, a list of such objects (or of message lists), or JSON Lines
  where each line is one conversation (object or list), or each line is one message (the
  whole file is then one conversation).
* ``"locomo"``: LoCoMo (``locomo10.json``): one transcript per sample plus one ``"qa"``
  probe per QA item.
* ``"tau-bench"``: tau-bench historical trajectories: one transcript per run plus at most
  one ``"action"`` probe.
* ``"swe-agent"``: SWE-agent ``.traj`` files (function-calling demonstrations).
* ``"toolbench"``: ToolBench answer files (``answer_generation.train_messages``).
* ``"langchain"``: a JSON list made by ``langchain_core.messages.messages_to_dict``.

Detection: the extension first (``.traj`` is ``"swe-agent"``; ``.jsonl`` / ``.ndjson`` are
``"openai"``), then the shape of the JSON content; anything that looks like OpenAI
messages is ``"openai"``. More formats can be added with :func:`register_loader`.

Loading is all-or-nothing per file: a bad file or record raises :class:`TranscriptError`
naming the file, the record index and the field, and nothing from that file is returned.
Message ids are made unique within each transcript (a repeated id gets ``"#2"``,
``"#3"``... appended) so metrics can trace every message by id, and so are tool-call ids
(some recordings reuse a call id for a later call; see ``_unique_call_ids``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, overload

from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.errors import InvalidHistoryError, TranscriptError
from ctxmgr.messages import Message, messages_from_openai

__all__ = [
    "FORMATS",
    "Detector",
    "LoadFunction",
    "Source",
    "detect_format",
    "load_many",
    "load_transcripts",
    "register_loader",
    "supported_suffixes",
]

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
# Registry
# ---------------------------------------------------------------------------------------
Detector = Callable[[Source], bool]
"""Returns whether a :class:`Source` has the format (may read ``source.data``)."""

LoadFunction = Callable[[Source], list[Transcript]]
"""Loads every transcript of a :class:`Source`; raises :class:`TranscriptError`."""


@dataclass(frozen=True)
class _Entry:
    name: str
    detect: Detector | None
    load: LoadFunction
    extensions: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}
_FALLBACK = "openai"

FORMATS: tuple[str, ...] = ()
"""Names of the registered formats (rebound by :func:`register_loader`)."""


@overload
def register_loader(
    name: str,
    detect: Detector | None,
    load: LoadFunction,
    *,
    extensions: Sequence[str] = (),
) -> LoadFunction: ...


@overload
def register_loader(
    name: str,
    detect: Detector | None = None,
    load: None = None,
    *,
    extensions: Sequence[str] = (),
) -> Callable[[LoadFunction], LoadFunction]: ...


def register_loader(
    name: str,
    detect: Detector | None = None,
    load: LoadFunction | None = None,
    *,
    extensions: Sequence[str] = (),
) -> LoadFunction | Callable[[LoadFunction], LoadFunction]:
    """Register a transcript format; usable as a call or as a decorator.

    Example::

        @register_loader("mine", detect=lambda src: isinstance(src.data, dict)
                         and "my_turns" in src.data, extensions=[".mine"])
        def load_mine(src: Source) -> list[Transcript]: ...

    A name already registered is replaced. Files with one of ``extensions`` are given this
    format without looking at their content (later registrations win); otherwise formats
    registered later are tried first, and ``"openai"`` is always tried last.

    Args:
        name: the format name (what ``format=`` and :data:`FORMATS` use).
        detect: ``detect(source) -> bool``, or ``None`` to detect by extension only.
        load: ``load(source) -> list[Transcript]``; omitted when used as a decorator.
        extensions: file suffixes (``".traj"``) that imply this format; also added to the
            suffixes a directory is expanded to by :func:`load_many`.

    Returns:
        ``load`` itself, or a decorator registering the function it decorates.
    """
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)

    def add(func: LoadFunction) -> LoadFunction:
        global FORMATS
        _REGISTRY.pop(name, None)
        _REGISTRY[name] = _Entry(name, detect, func, exts)
        FORMATS = tuple(_REGISTRY)
        return func

    if load is not None:
        return add(load)
    return add


def supported_suffixes() -> tuple[str, ...]:
    """Return the suffixes :func:`load_many` expands directories to, sorted.

    That is ``.json`` plus every registered extension (``.jsonl``, ``.ndjson``, ``.traj``).
    """
    suffixes = {".json"}
    for entry in _REGISTRY.values():
        suffixes.update(entry.extensions)
    return tuple(sorted(suffixes))


def _detect(src: Source) -> str:
    suffix = src.path.suffix.lower()
    by_ext = [e.name for e in _REGISTRY.values() if suffix in e.extensions]
    if by_ext:
        return by_ext[-1]
    order = [e for e in reversed(_REGISTRY.values()) if e.name != _FALLBACK]
    if _FALLBACK in _REGISTRY:
        order.append(_REGISTRY[_FALLBACK])
    for entry in order:
        if entry.detect is not None and entry.detect(src):
            return entry.name
    raise src.error(
        f"unrecognised transcript format (known formats: {', '.join(FORMATS)}); "
        "pass the format explicitly"
    )


def detect_format(path: str | Path) -> str:
    """Return the format name of a transcript file.

    Args:
        path: the file.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        TranscriptError: the file cannot be read, is not valid JSON (naming the line), or
            matches no known format (listing :data:`FORMATS`).
    """
    path = Path(path)
    if not path.is_file():
        raise TranscriptError("no such file", path=str(path))
    return _detect(Source(path))


def load_transcripts(path: str | Path, *, format: str | None = None) -> list[Transcript]:
    """Load every transcript in one file, all or nothing.

    Args:
        path: the file.
        format: one of :data:`FORMATS`, or ``None`` to detect it (see :func:`detect_format`).

    Returns:
        The transcripts in file order; ``[]`` for a valid file holding no conversation
        (e.g. a ToolBench answer without messages).

    Raises:
        TranscriptError: the file is missing, unreadable, invalid JSON (naming the line),
            of an unknown format, or a record is malformed (naming record and field).
        ImportError: the ``"langchain"`` format is used without langchain-core installed.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory (use load_many)" if p.is_dir() else "no such file"
        raise TranscriptError(what, path=str(p))
    src = Source(p)
    if format is None:
        format = _detect(src)
    entry = _REGISTRY.get(format)
    if entry is None:
        raise src.error(f"unknown format {format!r} (known formats: {', '.join(FORMATS)})")
    try:
        return list(entry.load(src))
    except TranscriptError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise src.error(f"cannot load as {format!r}: {type(e).__name__}: {e}") from e


def _expand(paths: Sequence[str | Path], failures: list[TranscriptError]) -> Iterator[Path]:
    suffixes = supported_suffixes()
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                failures.append(
                    TranscriptError(
                        f"directory holds no transcript files ({', '.join(suffixes)})",
                        path=str(p),
                    )
                )
        elif p.exists():
            files = [p]
        else:
            failures.append(TranscriptError("no such file or directory", path=str(p)))
            continue
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                yield f


def load_many(
    paths: Sequence[str | Path], *, format: str | None = None
) -> tuple[list[Transcript], list[TranscriptError]]:
    """Load many files, going on past bad ones.

    Args:
        paths: files and directories; a directory expands recursively (sorted, hidden
            entries skipped) to its files with a :func:`supported_suffixes` suffix. A file
            reached twice is loaded once.
        format: one format for every file, or ``None`` to detect each file's format.

    Returns:
        ``(transcripts, failures)``: the transcripts of every file that loaded, in order,
        and one :class:`TranscriptError` per file (or missing path, or directory without
        transcript files) that did not.

    Raises:
        ImportError: a ``"langchain"`` file is met without langchain-core installed.
    """
    transcripts: list[Transcript] = []
    failures: list[TranscriptError] = []
    for f in _expand(paths, failures):
        try:
            transcripts.extend(load_transcripts(f, format=format))
        except TranscriptError as e:
            failures.append(e)
    return transcripts, failures


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


def _first(data: Any) -> Any:
    return data[0] if isinstance(data, list) and data else None


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


# ---------------------------------------------------------------------------------------
# LoCoMo
# ---------------------------------------------------------------------------------------
_SESSION_KEY = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")
_EVIDENCE_ID = re.compile(r"D:?0*(\d+):0*(\d+)")


def _detect_locomo(src: Source) -> bool:
    data = src.data
    if src.is_jsonl:
        return False
    sample = data if isinstance(data, Mapping) else _first(data)
    return isinstance(sample, Mapping) and "conversation" in sample and "qa" in sample


def _parse_evidence(raw: Any, known: set[str]) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    """Split evidence entries into known ids, unknown tokens and normalizations made."""
    entries = raw if isinstance(raw, list) else [raw]
    kept: dict[str, None] = {}
    unknown: list[str] = []
    normalized: dict[str, str] = {}
    for entry in entries:
        if entry is None:
            continue
        for token in _EVIDENCE_SPLIT.split(str(entry)):
            if not token:
                continue
            m = _EVIDENCE_ID.fullmatch(token)
            norm = f"D{int(m.group(1))}:{int(m.group(2))}" if m else token
            if norm in known:
                kept[norm] = None
                if norm != token:
                    normalized[token] = norm
            else:
                unknown.append(token)
    return tuple(kept), unknown, normalized


def _load_locomo(src: Source) -> list[Transcript]:
    """Load LoCoMo samples: one transcript per sample, one ``"qa"`` probe per QA item.

    * Transcript ``id`` is ``"locomo/<sample_id>"``; metadata holds ``sample_id``,
      ``speaker_a``, ``speaker_b`` and ``session_dates`` (``{N: "1:56 pm on 8 May, 2023"}``).
      The dataset's ``event_summary`` / ``session_summary`` / ``observation`` annotations
      are not loaded (they would leak the answers).
    * Messages are the turns only (no system message), sessions in numeric order
      (``session_1``, ``session_2``, ... ``session_10``). ``speaker_a`` is role ``user``,
      ``speaker_b`` role ``assistant``; ``name`` is the speaker and ``id`` is
      ``"<sample_id>/<dia_id>"``. Metadata: ``dia_id``, ``session`` (N), ``session_date``
      and any other turn keys verbatim (``blip_caption``, ``img_url``, ``query``...).
    * So that time questions are answerable from the context alone, the first turn of each
      session is prefixed with ``"[session N — DATE] "`` (``"[session N] "`` when the date
      is missing), and a shared photo's caption is appended to the turn text as
      ``" [shares a photo: CAPTION]"`` (the image itself is not in the text data).
    * Probe ``answer`` is ``answer``, or ``adversarial_answer`` when there is no answer
      (category 5); ``metadata["answer_field"]`` says which. Evidence entries are split on
      ``;``, ``,`` and whitespace and normalized (``"D:11:26"`` and ``"D30:05"`` become
      ``"D11:26"`` and ``"D30:5"``, listed in ``metadata["normalized_evidence"]``); only
      ids of turns in the conversation are kept, the rest are listed in
      ``metadata["unknown_evidence"]``.
    """
    data = src.data
    samples = [data] if isinstance(data, Mapping) else data
    if not isinstance(samples, list):
        raise src.error(f"expected a list of LoCoMo samples, got {_typename(data)}")
    return [_locomo_sample(src, r, sample) for r, sample in enumerate(samples)]


def _locomo_sample(src: Source, r: int, raw: Any) -> Transcript:
    sample = _record(src, raw, r)
    sample_id = _get(src, sample, "sample_id", (str, int), record=r)
    conv = _get(src, sample, "conversation", Mapping, record=r)
    speakers = {
        _get(src, conv, "speaker_a", str, record=r, prefix="conversation."): "user",
        _get(src, conv, "speaker_b", str, record=r, prefix="conversation."): "assistant",
    }
    sessions = sorted((int(m.group(1)), key) for key in conv if (m := _SESSION_KEY.fullmatch(key)))
    messages: list[Message] = []
    dates: dict[int, str | None] = {}
    known: set[str] = set()
    for n, key in sessions:
        turns = _get(src, conv, key, list, record=r, prefix="conversation.")
        date = conv.get(f"{key}_date_time")
        date = None if date is None else str(date)
        dates[n] = date
        for t, raw_turn in enumerate(turns):
            where = f"conversation.{key}[{t}]"
            if not isinstance(raw_turn, Mapping):
                raise src.error(
                    f"expected a turn object, got {_typename(raw_turn)}", record=r, field=where
                )
            speaker = _get(src, raw_turn, "speaker", str, record=r, prefix=where + ".")
            if speaker not in speakers:
                raise src.error(
                    f"speaker {speaker!r} is neither speaker_a nor speaker_b "
                    f"({', '.join(speakers)})",
                    record=r,
                    field=where + ".speaker",
                )
            text = _get(src, raw_turn, "text", str, record=r, prefix=where + ".", empty_ok=True)
            dia_id = _get(src, raw_turn, "dia_id", str, record=r, prefix=where + ".")
            caption = raw_turn.get("blip_caption")
            if caption:
                text = f"{text} [shares a photo: {caption}]".strip()
            if t == 0:
                text = f"[session {n} — {date}] {text}" if date else f"[session {n}] {text}"
            metadata = {
                "dia_id": dia_id,
                "session": n,
                "session_date": date,
                **{k: v for k, v in raw_turn.items() if k not in ("speaker", "text", "dia_id")},
            }
            known.add(dia_id)
            messages.append(
                Message(
                    speakers[speaker],  # type: ignore[arg-type]
                    text,
                    name=speaker,
                    id=f"{sample_id}/{dia_id}",
                    metadata=metadata,
                )
            )
    qa = sample.get("qa") or []
    if not isinstance(qa, list):
        raise src.error(f"expected list, got {_typename(qa)}", record=r, field="qa")
    probes = [_locomo_probe(src, r, i, item, known) for i, item in enumerate(qa)]
    return _transcript(
        src,
        f"locomo/{sample_id}",
        "locomo",
        messages,
        probes,
        {
            "sample_id": sample_id,
            "speaker_a": conv["speaker_a"],
            "speaker_b": conv["speaker_b"],
            "session_dates": dates,
        },
    )


def _locomo_probe(src: Source, r: int, i: int, raw: Any, known: set[str]) -> Probe:
    where = f"qa[{i}]"
    if not isinstance(raw, Mapping):
        raise src.error(f"expected a QA object, got {_typename(raw)}", record=r, field=where)
    question = _get(src, raw, "question", str, record=r, prefix=where + ".")
    category = _get(src, raw, "category", int, record=r, prefix=where + ".", required=False)
    answer_field = "answer" if raw.get("answer") is not None else "adversarial_answer"
    answer = raw.get(answer_field)
    evidence = raw.get("evidence")
    if evidence is not None and not isinstance(evidence, (list, str)):
        raise src.error(
            f"expected a list of ids, got {_typename(evidence)}",
            record=r,
            field=where + ".evidence",
        )
    kept, unknown, normalized = _parse_evidence(evidence, known)
    metadata: dict[str, Any] = {"qa_index": i, "answer_field": answer_field}
    if answer_field == "answer" and raw.get("adversarial_answer") is not None:
        metadata["adversarial_answer"] = raw["adversarial_answer"]
    if unknown:
        metadata["unknown_evidence"] = unknown
    if normalized:
        metadata["normalized_evidence"] = normalized
    return Probe(
        kind="qa",
        question=question,
        answer=None if answer is None else str(answer),
        evidence_ids=kept,
        category=category,
        metadata=metadata,
    )


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
    digits (so ``"no"`` is not found in ``"economy"``, nor ``"0"`` in ``"2024"``); the
    others are in ``metadata["values_not_in_tool_results"]``.
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
                "tau-bench",
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
        values = list(dict.fromkeys(_scalar_leaves(kwargs)))
        found = tuple(v for v in values if _appears(v, earlier))
        return Probe(
            kind="action",
            position=position,
            values=found,
            metadata={
                "action": name,
                "action_index": k,
                "is_last_gt_action": k == len(actions) - 1,
                "kwargs": kwargs,
                "values_not_in_tool_results": [v for v in values if v not in found],
            },
        )
    metadata["probe_skipped"] = "the agent called none of the ground-truth actions"
    return None


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
            'pip install "ctxmgr[langchain]"'
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


# ---------------------------------------------------------------------------------------
# Built-in registrations (FORMATS order)
# ---------------------------------------------------------------------------------------
register_loader("openai", _detect_openai, _load_openai, extensions=_JSONL_SUFFIXES)
register_loader("locomo", _detect_locomo, _load_locomo)
register_loader("tau-bench", _detect_tau, _load_tau)
register_loader("swe-agent", _detect_swe, _load_swe, extensions=[".traj"])
register_loader("toolbench", _detect_toolbench, _load_toolbench)
register_loader("langchain", _detect_langchain, _load_langchain)
