"""The embedded default store: one SQLite file in WAL mode (stdlib ``sqlite3``).

Many processes on one machine may share the file: SQLite serializes writers, WAL lets
readers run beside a writer (https://www.sqlite.org/wal.html), and every save is one
``BEGIN IMMEDIATE`` transaction that checks the version before writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctxmgr.stores.base import ArchiveRow, StoredState, StoreError, VersionConflict

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ctxmgr_state (
    conversation TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS ctxmgr_archive (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    key TEXT NOT NULL,
    entry TEXT NOT NULL,
    UNIQUE (conversation, key)
);
CREATE TABLE IF NOT EXISTS ctxmgr_counts (
    conversation TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (conversation, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ctxmgr_features (
    conversation TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (conversation, key)
) WITHOUT ROWID;
"""


class SQLiteStore:
    """A :class:`~ctxmgr.stores.base.SessionStore` in one SQLite file.

    Args:
        path: the database file (created with its directory); ``":memory:"`` is refused
            because each thread has its own connection (use ``MemoryStore``).
        ttl: seconds after the last save at which a conversation expires; ``None`` never.
        timeout: seconds a writer waits for the file lock before failing.

    Raises:
        StoreError: the file cannot be opened or is not a ctxmgr database.
    """

    def __init__(self, path: str | Path, *, ttl: float | None = None, timeout: float = 30.0):
        if str(path) in ("", ":memory:"):
            raise StoreError("SQLiteStore needs a file path; use MemoryStore for memory://")
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.timeout = timeout
        self._local = threading.local()
        self._pid = os.getpid()
        try:
            self._con().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot create the tables of SQLite store {self.path}: {exc}"
            ) from exc

    def _con(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours
            self._local = threading.local()
            self._pid = os.getpid()
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
            self._local.con = con
        return con

    @contextmanager
    def _tx(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        con = self._con()
        try:
            con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _live(self, con: sqlite3.Connection, conversation_id: str) -> tuple[int, str] | None:
        row = con.execute(
            "SELECT version, data, expires FROM ctxmgr_state WHERE conversation = ?",
            (conversation_id,),
        ).fetchone()
        if row is None or (row[2] is not None and row[2] <= time.time()):
            return None
        return int(row[0]), str(row[1])

    def version(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.version`."""
        with self._tx() as con:
            live = self._live(con, conversation_id)
        return live[0] if live else 0

    def load(self, conversation_id: str) -> StoredState | None:
        """See :meth:`SessionStore.load`."""
        with self._tx() as con:
            live = self._live(con, conversation_id)
        return StoredState(live[0], json.loads(live[1])) if live else None

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
        rows = [(conversation_id, key, json.dumps(entry)) for key, entry in archive]
        expires = time.time() + self.ttl if self.ttl is not None else None
        with self._tx(immediate=True) as con:
            live = self._live(con, conversation_id)
            actual = live[0] if live else 0
            if actual != expected_version:
                raise VersionConflict(conversation_id, expected_version, actual)
            if live is None:  # clear what an expired conversation left behind
                self._purge(con, conversation_id)
            con.execute(
                "INSERT INTO ctxmgr_state (conversation, version, data, expires) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (conversation) DO UPDATE SET "
                "version = excluded.version, data = excluded.data, expires = excluded.expires",
                (conversation_id, expected_version + 1, text, expires),
            )
            con.executemany(
                "INSERT OR IGNORE INTO ctxmgr_archive (conversation, key, entry) VALUES (?, ?, ?)",
                rows,
            )
            con.executemany(
                "INSERT OR IGNORE INTO ctxmgr_counts (conversation, key, tokens) VALUES (?, ?, ?)",
                [(conversation_id, k, int(v)) for k, v in (counts or {}).items()],
            )
            con.executemany(
                "INSERT OR IGNORE INTO ctxmgr_features (conversation, key, value) VALUES (?, ?, ?)",
                [(conversation_id, k, str(v)) for k, v in (features or {}).items()],
            )
        return expected_version + 1

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """See :meth:`SessionStore.archive`."""
        with self._tx() as con:
            if self._live(con, conversation_id) is None:
                return []
            rows = con.execute(
                "SELECT entry FROM ctxmgr_archive WHERE conversation = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def archive_size(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.archive_size`."""
        with self._tx() as con:
            if self._live(con, conversation_id) is None:
                return 0
            row = con.execute(
                "SELECT count(*) FROM ctxmgr_archive WHERE conversation = ?", (conversation_id,)
            ).fetchone()
        return int(row[0])

    def counts(self, conversation_id: str) -> dict[str, int]:
        """See :meth:`SessionStore.counts`."""
        with self._tx() as con:
            if self._live(con, conversation_id) is None:
                return {}
            rows = con.execute(
                "SELECT key, tokens FROM ctxmgr_counts WHERE conversation = ?", (conversation_id,)
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def features(self, conversation_id: str, keys: Collection[str] | None = None) -> dict[str, str]:
        """See :meth:`SessionStore.features`."""
        sql = "SELECT key, value FROM ctxmgr_features WHERE conversation = ?"
        with self._tx() as con:
            if self._live(con, conversation_id) is None:
                return {}
            if keys is None:
                return dict(con.execute(sql, (conversation_id,)).fetchall())
            wanted = list(keys)
            out: dict[str, str] = {}
            for i in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
                part = wanted[i : i + 500]
                marks = ", ".join("?" * len(part))
                out.update(
                    con.execute(f"{sql} AND key IN ({marks})", (conversation_id, *part)).fetchall()
                )
        return out

    @staticmethod
    def _purge(con: sqlite3.Connection, conversation_id: str) -> int:
        n = 0
        for table in ("ctxmgr_state", "ctxmgr_archive", "ctxmgr_counts", "ctxmgr_features"):
            n += con.execute(
                f"DELETE FROM {table} WHERE conversation = ?", (conversation_id,)
            ).rowcount
        return n

    def delete(self, conversation_id: str) -> bool:
        """See :meth:`SessionStore.delete`."""
        with self._tx(immediate=True) as con:
            return self._purge(con, conversation_id) > 0

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, ttl={self.ttl})"
