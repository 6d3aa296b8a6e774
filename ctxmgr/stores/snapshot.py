"""Save and restore the manager's last fitted window, so another worker continues exactly.

A manager's :class:`~ctxmgr.state.SessionState` says what was summarized, noted and
archived; the *window* says which segments of the history the last context held (some
shrunk), and in what order with which injected messages. A worker that restores both
and is then given the same history (plus new messages) makes the same next fit as the
manager that never stopped.

The history itself is not stored (the caller passes it on every fit, as frameworks
do); the snapshot records its length and a BLAKE2b digest of the ids and fingerprints of
its messages. A history that does not start with the snapshotted one (edited, or a
different conversation) is refitted from scratch with the restored session state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.messages import Message
from ctxmgr.segments import Segment
from ctxmgr.state import message_from_dict, message_to_dict

if TYPE_CHECKING:
    from ctxmgr.manager import ContextManager

__all__ = ["HistoryDigest", "export_window", "resume_window"]


class HistoryDigest:
    """A running BLAKE2b digest of a history's message ids and fingerprints, O(new) to extend."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.length = 0
        self._source: list[Message] | None = None

    def update(self, messages: Sequence[Message]) -> None:
        """Add ``messages`` (the next ones in the history) to the digest."""
        h = self._hash
        for m in messages:
            h.update(f"{m.id}/{m.fingerprint}\n".encode())
        self.length += len(messages)

    def hexdigest(self) -> str:
        """Return the digest of everything added so far."""
        return self._hash.hexdigest()

    @classmethod
    def of(cls, messages: Sequence[Message]) -> HistoryDigest:
        """Return the digest of ``messages``."""
        d = cls()
        d.update(messages)
        return d

    def follow(self, history: list[Message]) -> str:
        """Return the digest of ``history``, extending this one when it grew in place.

        ``history`` is the manager's own list: when it is the list seen last time and did
        not shrink, only the new tail is hashed; otherwise the digest starts over.
        """
        if history is not self._source or len(history) < self.length:
            self._hash = hashlib.blake2b(digest_size=16)
            self.length = 0
            self._source = history
        self.update(history[self.length :])
        return self.hexdigest()


def export_window(manager: ContextManager, digest: str) -> dict[str, Any]:
    """Return the JSON-able snapshot of ``manager``'s last fitted window.

    Output messages that are whole history segments are stored as segment positions;
    injected and shrunk messages are stored in full. Size: O(messages in the context).

    Args:
        manager: a manager after a fit (not mutated).
        digest: :class:`HistoryDigest` of ``manager._history``.
    """
    m = manager
    out: list[dict[str, Any]] = []
    output = m._output
    i = 0
    for pos in m._selected:
        seg = m._shrunk.get(pos, m._segments[pos])
        n = len(seg.messages)
        while i < len(output) and not (
            output[i] is seg.messages[0] and tuple(output[i : i + n]) == seg.messages
        ):
            out.append({"m": message_to_dict(output[i])})
            i += 1
        if i >= len(output):
            break
        out.append({"s": pos})
        i += n
    out.extend({"m": message_to_dict(msg)} for msg in output[i:])
    # shrunk forms of the segments in the context (older ones are re-derived if recalled)
    shrunk = {
        str(pos): {"messages": [message_to_dict(x) for x in seg.messages], "tokens": seg.tokens}
        for pos, seg in ((p, m._shrunk[p]) for p in m._selected if p in m._shrunk)
    }
    return {
        "history_len": len(m._history),
        "digest": digest,
        "selected": list(m._selected),
        "shrunk": shrunk,
        "output": out,
        "output_tokens": m._output_tokens,
    }


def resume_window(
    manager: ContextManager, snapshot: Mapping[str, Any], messages: Sequence[Message]
) -> bool:
    """Rebuild ``manager``'s window from ``snapshot`` if ``messages`` extends its history.

    Feeds the snapshotted prefix of ``messages`` through the manager's ingest (segmented
    and counted, reusing cached counts), then restores the selected segments, shrunk
    segments and output. Called by the manager at the start of the first fit after a
    state was loaded from a store.

    Returns:
        Whether the window was restored (``False``: the history differs; the fit starts
        from scratch with the loaded session state).
    """
    length = int(snapshot["history_len"])
    if length > len(messages) or length == 0:
        return False
    prefix = list(messages[:length])
    if HistoryDigest.of(prefix).hexdigest() != snapshot["digest"]:
        return False
    manager._ingest(prefix)
    segments = manager._segments
    shrunk: dict[int, Segment] = {}
    for key, item in snapshot["shrunk"].items():
        pos = int(key)
        if pos >= len(segments):
            return _undo(manager)
        msgs = tuple(_decode(x) for x in item["messages"])
        shrunk[pos] = Segment(msgs, segments[pos].start, int(item["tokens"]))
    output: list[Message] = []
    for item in snapshot["output"]:
        if "s" in item:
            pos = int(item["s"])
            if pos >= len(segments):
                return _undo(manager)
            output.extend(shrunk.get(pos, segments[pos]).messages)
        else:
            output.append(_decode(item["m"]))
    manager._shrunk = shrunk
    manager._selected = [int(p) for p in snapshot["selected"]]
    manager._output = output
    manager._output_tokens = int(snapshot["output_tokens"])
    return True


_PLAIN = frozenset(("role", "content", "tool_call_id", "name", "id", "metadata", "pinned"))


def _decode(data: Mapping[str, Any]) -> Message:
    """:func:`message_from_dict`, with a direct path for text messages without tool calls."""
    if isinstance(data.get("content"), str) and _PLAIN.issuperset(data):
        return Message(
            data["role"],
            data["content"],
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            id=data["id"],
            metadata=data.get("metadata") or {},
            pinned=bool(data.get("pinned", False)),
        )
    return message_from_dict(data)


def _undo(manager: ContextManager) -> bool:
    state = manager.state
    manager._reset_incremental()
    manager.state = state
    return False
