"""An in-process :class:`~ctxmgr.stores.base.SessionStore` (tests, single-process apps)."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ctxmgr.stores.base import ArchiveRow, StoredState, VersionConflict

__all__ = ["MemoryStore"]


class _Entry:
    __slots__ = ("archive", "counts", "data", "expires", "features", "keys", "version")

    def __init__(self) -> None:
        self.version = 0
        self.data: dict[str, Any] = {}
        self.archive: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.counts: dict[str, int] = {}
        self.features: dict[str, str] = {}
        self.expires: float | None = None


class MemoryStore:
    """A dict of conversations guarded by a lock; same semantics as the durable stores.

    Documents are stored as JSON text, so what comes back is a copy that went through the
    same encoding as in SQLite, Redis or PostgreSQL.

    Args:
        ttl: seconds after the last save at which a conversation expires; ``None`` never.
    """

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self._items: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _get(self, conversation_id: str) -> _Entry | None:
        entry = self._items.get(conversation_id)
        if entry is not None and entry.expires is not None and entry.expires <= time.time():
            del self._items[conversation_id]
            return None
        return entry

    def version(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.version`."""
        with self._lock:
            entry = self._get(conversation_id)
            return entry.version if entry else 0

    def load(self, conversation_id: str) -> StoredState | None:
        """See :meth:`SessionStore.load`."""
        with self._lock:
            entry = self._get(conversation_id)
            if entry is None or entry.version == 0:
                return None
            return StoredState(entry.version, json.loads(json.dumps(entry.data)))

    def save(
        self,
        conversation_id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        archive: Sequence[ArchiveRow] = (),
        counts: Mapping[str, int] | None = None,
        features: Mapping[str, str] | None = None,
    ) -> int:
        """See :meth:`SessionStore.save`."""
        text = json.dumps(data)
        rows = [(key, json.loads(json.dumps(entry))) for key, entry in archive]
        with self._lock:
            entry = self._get(conversation_id)
            actual = entry.version if entry else 0
            if actual != expected_version:
                raise VersionConflict(conversation_id, expected_version, actual)
            if entry is None:
                entry = self._items[conversation_id] = _Entry()
            entry.version = expected_version + 1
            entry.data = json.loads(text)
            for key, row in rows:
                if key not in entry.keys:
                    entry.keys.add(key)
                    entry.archive.append(row)
            entry.counts.update(counts or {})
            for key, value in (features or {}).items():
                entry.features.setdefault(key, str(value))
            entry.expires = time.time() + self.ttl if self.ttl is not None else None
            return entry.version

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """See :meth:`SessionStore.archive`."""
        with self._lock:
            entry = self._get(conversation_id)
            return copy.deepcopy(entry.archive) if entry else []

    def archive_size(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.archive_size`."""
        with self._lock:
            entry = self._get(conversation_id)
            return len(entry.archive) if entry else 0

    def counts(self, conversation_id: str) -> dict[str, int]:
        """See :meth:`SessionStore.counts`."""
        with self._lock:
            entry = self._get(conversation_id)
            return dict(entry.counts) if entry else {}

    def features(self, conversation_id: str, keys: Collection[str] | None = None) -> dict[str, str]:
        """See :meth:`SessionStore.features`."""
        with self._lock:
            entry = self._get(conversation_id)
            if entry is None:
                return {}
            if keys is None:
                return dict(entry.features)
            return {k: entry.features[k] for k in keys if k in entry.features}

    def delete(self, conversation_id: str) -> bool:
        """See :meth:`SessionStore.delete`."""
        with self._lock:
            return self._items.pop(conversation_id, None) is not None

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStore(ttl={self.ttl})"
