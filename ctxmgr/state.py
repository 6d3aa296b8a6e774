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
        """Rebuild from :meth:`to_dict` output."""
        notes = {
            n["key"]: Note(n["key"], list(n["facts"]), list(n["pointers"]), int(n["turn"]))
            for n in data.get("notes", [])
        }
        return cls(
            summary=data.get("summary"),
            summary_covers=list(data.get("summary_covers", [])),
            notes=notes,
            turn=int(data.get("turn", 0)),
            archive=Archive.from_list(data.get("archive", [])),
            last_fit=data.get("last_fit"),
            extra=dict(data.get("extra", {})),
        )
