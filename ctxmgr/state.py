"""Session state: running summary, scratchpad notes, turn counter and the archive.

Nothing ctxmgr evicts is destroyed: every message that leaves the context is archived
here with the reason and the turn, searchable and retrievable. The state round-trips
through JSON with :meth:`SessionState.to_dict` / :meth:`SessionState.from_dict`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ctxmgr.errors import InvalidHistoryError, InvalidStateError
from ctxmgr.messages import Message, from_openai, to_openai

__all__ = [
    "Archive",
    "ArchivedMessage",
    "Note",
    "SessionState",
    "message_from_dict",
    "message_to_dict",
]

_WORD = re.compile(r"\w+", re.UNICODE)


def _json_safe(value: Any) -> Any:
    """Return ``value`` if JSON can encode it, else a JSON-able copy with ``repr`` leaves."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


def _copy_json(value: Any) -> Any:
    """Copy nested dicts and lists (the containers strategies mutate); share the leaves.

    Called at every fit on ``extra`` (a few small dicts), so it avoids comprehensions.
    """
    t = type(value)
    if t is dict:
        out = value.copy()
        for k, v in out.items():
            tv = type(v)
            if tv is dict or tv is list:
                out[k] = _copy_json(v)
        return out
    if t is list:
        kinds = set(map(type, value))  # C-level: a flat column (loop_guard) is one copy
        if dict not in kinds and list not in kinds:
            return value.copy()
        return [_copy_json(v) if type(v) in (dict, list) else v for v in value]
    return value


def message_to_dict(message: Message) -> dict[str, Any]:
    """Serialize a message: the OpenAI dict plus ``id``, ``metadata``, ``pinned``.

    Metadata values JSON cannot encode (framework objects an adapter kept) are stored as
    their ``repr``; everything else round-trips exactly.
    """
    out = to_openai(message)
    out["id"] = message.id
    if message.metadata:
        out["metadata"] = _json_safe(dict(message.metadata))
    if message.pinned:
        out["pinned"] = True
    return out


def message_from_dict(data: Mapping[str, Any]) -> Message:
    """Inverse of :func:`message_to_dict`."""
    raw = {k: v for k, v in data.items() if k != "metadata"}
    msg = from_openai(raw)
    if not data.get("metadata"):
        return msg  # built once: no metadata to merge
    meta = dict(data.get("metadata") or {})
    extra = {k: v for k, v in msg.metadata.items()}
    extra.update(meta)
    return msg.evolve(metadata=extra, id=msg.id)


@dataclass(frozen=True)
class ArchivedMessage:
    """One evicted message.

    Attributes:
        message: the original message, unchanged.
        reason: why it left the context (``"evicted: fifo"``, ``"orphan_tool_result"``...).
        turn: the manager turn (fit count) at which it was archived.
        strategy: the strategy responsible, if any.
    """

    message: Message
    reason: str
    turn: int
    strategy: str | None = None


class Archive:
    """Every message evicted from the context, in eviction order; nothing is lost.

    A message evicted twice (recalled by relevance, then evicted again) is stored once.
    """

    def __init__(self) -> None:
        self._entries: dict[str, ArchivedMessage] = {}

    def add(self, message: Message, reason: str, turn: int, strategy: str | None = None) -> None:
        """Archive ``message`` (idempotent per message id)."""
        key = f"{message.id}/{message.fingerprint}"
        if key not in self._entries:
            self._entries[key] = ArchivedMessage(message, reason, turn, strategy)

    def __len__(self) -> int:
        return len(self._entries)

    def truncate(self, length: int) -> None:
        """Remove the entries archived after the archive had ``length`` entries.

        Entries are kept in insertion order, so this undoes the newest additions (used to
        roll back a fit that failed). O(removed entries).
        """
        entries = self._entries
        while len(entries) > length:
            entries.popitem()

    def __iter__(self) -> Any:
        return iter(self._entries.values())

    def __contains__(self, message: object) -> bool:
        if not isinstance(message, Message):
            return False
        return f"{message.id}/{message.fingerprint}" in self._entries

    def get(self, message_id: str) -> Message | None:
        """Return the archived message with this id, or ``None``."""
        for entry in self._entries.values():
            if entry.message.id == message_id:
                return entry.message
        return None

    def search(self, query: str, k: int = 5) -> list[ArchivedMessage]:
        """Return up to ``k`` archived messages sharing the most words with ``query``.

        Scoring is plain word overlap (case-folded), ties broken by recency; meant for
        tools and debugging, not for ranking the context (that is the relevance strategy).
        """
        words = {w.casefold() for w in _WORD.findall(query)}
        if not words:
            return []
        scored = []
        for order, entry in enumerate(self._entries.values()):
            text_words = {w.casefold() for w in _WORD.findall(entry.message.search_text)}
            hits = len(words & text_words)
            if hits:
                scored.append((hits, order, entry))
        scored.sort(key=lambda t: (-t[0], -t[1]))
        return [entry for _, _, entry in scored[:k]]

    def to_list(self) -> list[dict[str, Any]]:
        """Serialize to JSON-able dicts."""
        return [
            {
                "message": message_to_dict(e.message),
                "reason": e.reason,
                "turn": e.turn,
                "strategy": e.strategy,
            }
            for e in self._entries.values()
        ]

    @classmethod
    def from_list(cls, items: Iterable[Mapping[str, Any]]) -> Archive:
        """Inverse of :meth:`to_list`."""
        arc = cls()
        for item in items:
            arc.add(
                message_from_dict(item["message"]),
                str(item["reason"]),
                int(item["turn"]),
                item.get("strategy"),
            )
        return arc


@dataclass
class Note:
    """A structured scratchpad note.

    Attributes:
        key: unique name (``"user.preferences"``, ``"bug.root_cause"``).
        facts: short factual statements.
        pointers: where details live (``"src/app.py:10-40"``, a URL, a message id).
        turn: the turn at which it was last written.
    """

    key: str
    facts: list[str] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    turn: int = 0

    def render(self) -> str:
        """Render as text: ``- key: fact; fact (see: pointer, pointer)``."""
        text = f"- {self.key}: " + "; ".join(self.facts)
        if self.pointers:
            text += f" (see: {', '.join(self.pointers)})"
        return text


@dataclass
class SessionState:
    """Everything ctxmgr remembers about one conversation (one thread/session).

    Attributes:
        summary: the running summary of evicted messages, or ``None``.
        summary_covers: ids of the messages the summary covers, oldest first.
        notes: scratchpad notes by key, in insertion order.
        turn: number of fits made so far.
        archive: every evicted message.
        last_fit: the last :class:`~ctxmgr.report.FitReport` as a dict.
        extra: per-strategy state (JSON-able), keyed by strategy name.
    """

    summary: str | None = None
    summary_covers: list[str] = field(default_factory=list)
    notes: dict[str, Note] = field(default_factory=dict)
    turn: int = 0
    archive: Archive = field(default_factory=Archive)
    last_fit: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the last checkpoint's copy of ``extra``, reused while ``extra`` is unchanged
    _extra_copy: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    # set(summary_covers), kept incrementally (see covered)
    _covered: tuple[list[str], int, set[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def covered(self) -> set[str]:
        """The ids of :attr:`summary_covers` as a set, maintained incrementally.

        O(ids appended since the last call) while ``summary_covers`` is the same list and
        has only grown; rebuilt when it was replaced or shrank, and after :meth:`rollback`.
        One set per session, shared by the manager and the ``summarize`` strategy (a set
        of 100,000 ids takes ~4 MB). The caller may add ids it appends to
        ``summary_covers`` to the returned set; nothing else may change it.
        """
        covers = self.summary_covers
        cache = self._covered
        if cache is None or cache[0] is not covers or cache[1] > len(covers):
            cache = (covers, 0, set())
        seen = cache[2]
        seen.update(covers[cache[1] :])
        self._covered = (covers, len(covers), seen)
        return seen

    def checkpoint(self) -> tuple[Any, ...]:
        """Return what :meth:`rollback` needs to undo later changes.

        O(notes + size of ``extra``), independent of the archive and summary size: the
        archive and ``summary_covers`` only grow during a fit (their lengths are kept),
        strings are immutable, ``last_fit`` is replaced rather than mutated, and notes and
        ``extra`` (small, mutated in place) are copied.
        """
        notes = self.notes
        extra = self._extra_copy
        if extra is None or extra != self.extra:  # C-level compare: most fits change nothing
            extra = self._extra_copy = _copy_json(self.extra)
        return (
            self.summary,
            self.summary_covers,
            len(self.summary_covers),
            {k: (n, n.facts[:], n.pointers[:], n.turn) for k, n in notes.items()} if notes else {},
            self.turn,
            len(self.archive._entries),
            self.last_fit,
            extra,
        )

    def rollback(self, checkpoint: tuple[Any, ...]) -> None:
        """Restore the state as it was when ``checkpoint`` was taken (same objects)."""
        summary, covers, n_covers, notes, turn, n_archive, last_fit, extra = checkpoint
        self.summary = summary
        del covers[n_covers:]
        self.summary_covers = covers
        self._covered = None
        self.notes.clear()
        for key, (note, facts, pointers, note_turn) in notes.items():
            note.facts[:] = facts
            note.pointers[:] = pointers
            note.turn = note_turn
            self.notes[key] = note
        self.turn = turn
        self.archive.truncate(n_archive)
        self.last_fit = last_fit
        self.extra.clear()
        self.extra.update(_copy_json(extra))  # the checkpoint's copy stays pristine

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (``json.dumps`` works on it)."""
        return {
            "version": 1,
            "summary": self.summary,
            "summary_covers": list(self.summary_covers),
            "notes": [
                {"key": n.key, "facts": n.facts, "pointers": n.pointers, "turn": n.turn}
                for n in self.notes.values()
            ],
            "turn": self.turn,
            "archive": self.archive.to_list(),
            "last_fit": self.last_fit,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionState:
        """Rebuild from :meth:`to_dict` output, validating all of it first.

        Raises:
            InvalidStateError: a missing or wrongly typed value, naming its key path
                (``archive[3].message.content``); nothing is built.
        """
        if not isinstance(data, Mapping):
            raise InvalidStateError(
                f"expected a mapping (SessionState.to_dict() output), got {type(data).__name__}"
            )
        version = data.get("version", 1)
        if type(version) is not int or version != 1:
            raise InvalidStateError(
                f"unsupported version {version!r} (supported: 1)", key="version"
            )
        summary = data.get("summary")
        if summary is not None and not isinstance(summary, str):
            raise _wrong("summary", "a string or null", summary)
        covers = _str_list(data.get("summary_covers", []), "summary_covers")
        raw_notes = _list(data.get("notes", []), "notes")
        notes: dict[str, Note] = {}
        for i, n in enumerate(raw_notes):
            where = f"notes[{i}]"
            if not isinstance(n, Mapping):
                raise _wrong(where, "an object", n)
            key = n.get("key")
            if not isinstance(key, str):
                raise _wrong(f"{where}.key", "a string", key)
            notes[key] = Note(
                key,
                _str_list(n.get("facts", []), f"{where}.facts"),
                _str_list(n.get("pointers", []), f"{where}.pointers"),
                _int(n.get("turn", 0), f"{where}.turn"),
            )
        turn = _int(data.get("turn", 0), "turn")
        archive = Archive()
        for i, item in enumerate(_list(data.get("archive", []), "archive")):
            where = f"archive[{i}]"
            if not isinstance(item, Mapping):
                raise _wrong(where, "an object", item)
            raw = item.get("message")
            if not isinstance(raw, Mapping):
                raise _wrong(f"{where}.message", "a message object", raw)
            if raw.get("metadata") is not None and not isinstance(raw["metadata"], Mapping):
                raise _wrong(f"{where}.message.metadata", "an object", raw["metadata"])
            try:
                message = message_from_dict(raw)
            except InvalidHistoryError as exc:
                raise InvalidStateError(str(exc), key=f"{where}.message") from None
            reason = item.get("reason")
            if not isinstance(reason, str):
                raise _wrong(f"{where}.reason", "a string", reason)
            strategy = item.get("strategy")
            if strategy is not None and not isinstance(strategy, str):
                raise _wrong(f"{where}.strategy", "a string or null", strategy)
            archive.add(message, reason, _int(item.get("turn"), f"{where}.turn"), strategy)
        last_fit = data.get("last_fit")
        if last_fit is not None and not isinstance(last_fit, Mapping):
            raise _wrong("last_fit", "an object or null", last_fit)
        extra = data.get("extra", {})
        if not isinstance(extra, Mapping):
            raise _wrong("extra", "an object", extra)
        return cls(
            summary=summary,
            summary_covers=covers,
            notes=notes,
            turn=turn,
            archive=archive,
            last_fit=dict(last_fit) if last_fit is not None else None,
            extra=_copy_json(dict(extra)),
        )


def _wrong(key: str, expected: str, value: Any) -> InvalidStateError:
    return InvalidStateError(
        f"must be {expected}, got {type(value).__name__} {value!r:.60}", key=key
    )


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(key, "a list", value)
    return value


def _str_list(value: Any, key: str) -> list[str]:
    for i, item in enumerate(_list(value, key)):
        if not isinstance(item, str):
            raise _wrong(f"{key}[{i}]", "a string", item)
    return list(value)


def _int(value: Any, key: str) -> int:
    if type(value) is not int or value < 0:
        raise _wrong(key, "a non-negative integer", value)
    return value
