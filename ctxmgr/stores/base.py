"""The :class:`SessionStore` protocol, its errors and the row shapes every store shares.

A store keeps, per conversation id:

* one **state document** (JSON): the running summary, notes, turn, per-strategy state and
  the snapshot of the last fitted window, guarded by an integer **version** for
  compare-and-swap writes (version 0 means "no state yet");
* the **archive**: append-only rows keyed by ``"<message id>/<fingerprint>"``, oldest
  first, each stored once however many workers archive it;
* **token counts**: append-only rows keyed by ``"<counter name>|<fingerprint>"``, so a
  cold worker reuses counts instead of re-tokenizing the history;
* **features**: append-only text rows of what strategies derive from a message once
  (the relevance strategy's index terms and embedding of a segment), keyed by
  ``"<strategy key>|<content digest>"``, so a cold worker rebuilds its index without
  re-tokenizing or re-embedding the history. Optional for third-party stores: a store
  without a ``features`` method is used without them.

A save writes all of them atomically, and only if the stored version is still the one the
writer loaded (:class:`VersionConflict` otherwise). An optional time to live (``ttl``,
seconds) expires them all together, counted from the last save.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ctxmgr.errors import CtxmgrError

__all__ = [
    "ArchiveRow",
    "SessionStore",
    "StoreError",
    "StoredState",
    "VersionConflict",
]

ArchiveRow = tuple[str, Mapping[str, Any]]
"""One archive entry: ``(key, entry)``; ``key`` is ``"<message id>/<fingerprint>"`` and
``entry`` the JSON-able dict of :meth:`ctxmgr.state.Archive.to_list`."""


class StoreError(CtxmgrError):
    """A session store could not be reached or returned something unreadable."""


class VersionConflict(StoreError):
    """A save lost a compare-and-swap race: another writer saved the conversation first.

    Attributes:
        conversation_id: the conversation.
        expected: the version the writer loaded.
        actual: the version found in the store.
    """

    def __init__(self, conversation_id: str, expected: int, actual: int) -> None:
        self.conversation_id = conversation_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"conversation {conversation_id!r} is at version {actual}, not {expected}: "
            "another worker saved it first; reload and retry the fit"
        )


@dataclass(frozen=True)
class StoredState:
    """A state document as loaded.

    Attributes:
        version: the version to pass as ``expected_version`` to the next save (>= 1).
        data: the JSON document.
    """

    version: int
    data: dict[str, Any]


@runtime_checkable
class SessionStore(Protocol):
    """Durable per-conversation state with compare-and-swap writes.

    Implementations: :class:`~ctxmgr.stores.MemoryStore`, :class:`~ctxmgr.stores.SQLiteStore`,
    :class:`~ctxmgr.stores.RedisStore`, :class:`~ctxmgr.stores.PostgresStore`
    (:class:`~ctxmgr.stores.AsyncPostgresStore` has the same methods as coroutines).
    Every method may raise :class:`StoreError` when the backend fails.
    """

    ttl: float | None

    def version(self, conversation_id: str) -> int:
        """Return the stored version, 0 when the conversation has no (unexpired) state."""
        ...

    def load(self, conversation_id: str) -> StoredState | None:
        """Return the state document and its version, or ``None``."""
        ...

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
        """Atomically write the document, append archive rows, token counts and features.

        Args:
            conversation_id: the conversation.
            data: the new JSON document (not mutated).
            expected_version: the version loaded before the change (0: none existed).
            archive: rows to append; a key already stored is ignored (the first wins).
            counts: ``{"<counter>|<fingerprint>": tokens}`` to add.
            features: ``{"<strategy key>|<digest>": text}`` to add (a key already stored
                is ignored).

        Returns:
            The new version (``expected_version + 1``).

        Raises:
            VersionConflict: the stored version is not ``expected_version``; nothing
                was written.
        """
        ...

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """Return the archive entries, oldest first."""
        ...

    def archive_size(self, conversation_id: str) -> int:
        """Return the number of archive entries."""
        ...

    def counts(self, conversation_id: str) -> dict[str, int]:
        """Return every stored token count of the conversation."""
        ...

    def features(self, conversation_id: str, keys: Collection[str] | None = None) -> dict[str, str]:
        """Return the stored feature rows of the conversation: all, or those of ``keys``.

        Keys not stored are left out of the result.
        """
        ...

    def delete(self, conversation_id: str) -> bool:
        """Delete the document, archive, counts and features; return whether any existed."""
        ...

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...
