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
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ctxmgr._bulk import paused_gc
from ctxmgr.messages import _EMPTY, Message, ToolCall
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


Codec = dict[int, tuple[Message, dict[str, Any]]]
"""Encoded messages by ``id(message)`` (the message is held, so the id stays its own)."""


CODEC = 1
"""Version of the fingerprint algorithm behind the ``"fp"`` of encoded messages: a
snapshot written with another one is decoded the slow way (fingerprints recomputed)."""


def _encoder(codec: Codec | None) -> tuple[Any, Codec]:
    used: Codec = {}

    def encode(msg: Message) -> dict[str, Any]:
        hit = codec.get(id(msg)) if codec is not None else None
        if hit is None or hit[0] is not msg:
            data = message_to_dict(msg)
            data["fp"] = msg.fingerprint  # so a resuming worker need not recompute it
            hit = (msg, data)
        used[id(msg)] = hit
        return hit[1]

    return encode, used


ROW_PREFIX = "window|"
"""Key prefix of the feature rows holding shrunk messages: ``"window|<fingerprint>"`` for a
message whose id is derived from its content (``"m-<fingerprint>"``), else
``"window|<id>/<fingerprint>"``."""


def _row_key(msg: Message) -> str:
    fp = msg.fingerprint
    return f"{ROW_PREFIX}{fp}" if msg.id == "m-" + fp else f"{ROW_PREFIX}{msg.id}/{fp}"


def export_window(
    manager: ContextManager,
    digest: str,
    codec: Codec | None = None,
    *,
    stored_rows: set[str] | None = None,
    new_rows: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return the JSON-able snapshot of ``manager``'s last fitted window.

    Output messages that are whole history segments are stored as segment positions;
    injected messages are stored in full; shrunk messages in full too, or, with
    ``new_rows``, as references to feature rows, so a save writes only the shrunk messages
    it has not written before. Size: O(messages in the context) positions.

    Args:
        manager: a manager after a fit (not mutated).
        digest: :class:`HistoryDigest` of ``manager._history``.
        codec: messages encoded by the previous export (or decoded by
            :func:`resume_window`); replaced in place by the ones this export used, so
            a steady conversation encodes only its new messages.
        stored_rows: keys of the rows already stored; replaced in place by the keys this
            snapshot refers to (so it stays O(context)).
        new_rows: filled with ``{key: JSON text}`` of the rows to store with it.
    """
    m = manager
    message_to_dict, used = _encoder(codec)
    referred: set[str] = set()

    def shrunk_entry(msg: Message) -> dict[str, Any]:
        if new_rows is None:
            return message_to_dict(msg)
        key = _row_key(msg)
        referred.add(key)
        if key not in new_rows and (stored_rows is None or key not in stored_rows):
            new_rows[key] = json.dumps(message_to_dict(msg))
        return {"k": key}

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
    # shrunk forms of the segments in the context (older ones are re-derived if recalled);
    # a message the shrink left as it was is a reference {"h": index in the segment}
    shrunk: dict[str, Any] = {}
    for pos in m._selected:
        small = m._shrunk.get(pos)
        if small is not None:
            whole = m._segments[pos].messages
            shrunk[str(pos)] = {
                "messages": [
                    {"h": j} if j < len(whole) and x is whole[j] else shrunk_entry(x)
                    for j, x in enumerate(small.messages)
                ],
                "tokens": small.tokens,
            }
    out_doc = {
        "history_len": len(m._history),
        "digest": digest,
        "selected": list(m._selected),
        "shrunk": shrunk,
        "output": out,
        "output_tokens": m._output_tokens,
        "codec": CODEC,
    }
    if codec is not None:
        codec.clear()
        codec.update(used)
    if stored_rows is not None:
        stored_rows.intersection_update(referred)
    return out_doc


def resume_window(
    manager: ContextManager, snapshot: Mapping[str, Any], messages: Sequence[Message]
) -> bool:
    """Rebuild ``manager``'s window from ``snapshot`` (see :func:`_resume_window`)."""
    with paused_gc():  # segmenting and decoding thousands of messages: one burst
        return _resume_window(manager, snapshot, messages)


def _resume_window(
    manager: ContextManager, snapshot: Mapping[str, Any], messages: Sequence[Message]
) -> bool:
    """Rebuild ``manager``'s window from ``snapshot`` if ``messages`` extends its history.

    Feeds the snapshotted prefix of ``messages`` through the manager's ingest (segmented
    and counted, reusing cached counts), then restores the selected segments, shrunk
    segments and output. Called by the manager at the start of the first fit after a
    state was loaded from a store. Shrunk messages stored as rows are read from
    ``snapshot["_rows"]`` (``{key: JSON text}``, put there by the loader).

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
    codec: Codec = {}

    trusted = snapshot.get("codec") == CODEC
    rows: Mapping[str, str] = snapshot.get("_rows") or {}

    def decode(data: Mapping[str, Any]) -> Message:
        msg = _decode(data, trusted)
        codec[id(msg)] = (msg, dict(data))
        return msg

    wanted = [x["k"] for item in snapshot["shrunk"].values() for x in item["messages"] if "k" in x]
    if any(k not in rows for k in wanted):
        return _undo(manager)  # a row is missing: refit from scratch
    # one parse for all rows (in C), not one json.loads call per row
    parsed = dict(zip(wanted, json.loads("[" + ",".join(rows[k] for k in wanted) + "]")))
    for key, item in snapshot["shrunk"].items():
        pos = int(key)
        if pos >= len(segments):
            return _undo(manager)
        whole = segments[pos].messages
        entries = item["messages"]
        if any("h" in x and x["h"] >= len(whole) for x in entries):
            return _undo(manager)
        msgs = tuple(
            whole[x["h"]] if "h" in x else decode(parsed[x["k"]] if "k" in x else x)
            for x in entries
        )
        shrunk[pos] = Segment(msgs, segments[pos].start, int(item["tokens"]))
    output: list[Message] = []
    for item in snapshot["output"]:
        if "s" in item:
            pos = int(item["s"])
            if pos >= len(segments):
                return _undo(manager)
            output.extend(shrunk.get(pos, segments[pos]).messages)
        else:
            output.append(decode(item["m"]))
    manager._snapshot_codec = codec  # type: ignore[attr-defined]  # read by StoredSession
    manager._shrunk = shrunk
    manager._selected = [int(p) for p in snapshot["selected"]]
    for pos in manager._selected:  # in the context: exact counts, as the writer had them
        manager._exact(pos)
    manager._output = output
    manager._output_tokens = int(snapshot["output_tokens"])
    return True


_PLAIN = frozenset(("role", "content", "tool_call_id", "name", "id", "metadata", "pinned"))
_TRUSTED = _PLAIN | {"tool_calls", "fp"}
_new_message = object.__new__
_set = object.__setattr__


def _decode(data: Mapping[str, Any], trusted: bool = False) -> Message:
    """:func:`message_from_dict`, with direct paths for text messages.

    With ``trusted`` (the snapshot's fingerprint algorithm is this one), a message whose
    encoding carries its fingerprint (``"fp"``) is rebuilt without re-validating and
    re-hashing it: it was a valid :class:`Message` when encoded, and JSON round-trips
    every field the fingerprint covers.
    """
    content = data.get("content")
    if trusted and "fp" in data and _TRUSTED.issuperset(data):
        calls = data.get("tool_calls") or ()
        if isinstance(content, str) or (content is None and calls):
            msg = _new_message(Message)
            _set(msg, "role", data["role"])
            _set(msg, "content", content or "")
            _set(
                msg,
                "tool_calls",
                tuple(
                    ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                    for c in calls
                ),
            )
            _set(msg, "tool_call_id", data.get("tool_call_id"))
            _set(msg, "name", data.get("name"))
            _set(msg, "id", data["id"])
            meta = data.get("metadata")
            _set(msg, "metadata", MappingProxyType(dict(meta)) if meta else _EMPTY)
            _set(msg, "pinned", bool(data.get("pinned", False)))
            _set(msg, "fingerprint", data["fp"])
            return msg
    if "fp" in data:
        data = {k: v for k, v in data.items() if k != "fp"}
    if isinstance(content, str) and _PLAIN.issuperset(data):
        return Message(
            data["role"],
            content,
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
