"""PostgreSQL stores (psycopg 3): :class:`PostgresStore` and :class:`AsyncPostgresStore`.

Four tables shared by all conversations (created on first use): ``ctxmgr_state`` (one
row per conversation: version, JSON document, expiry), ``ctxmgr_archive`` (append-only,
unique per conversation and key, ordered by a sequence), ``ctxmgr_counts`` and
``ctxmgr_features``. A save is
one transaction that locks the conversation's row (``SELECT ... FOR UPDATE``), checks the
version and writes; a concurrent first save of the same conversation loses on the primary
key and reports a :class:`~ctxmgr.stores.base.VersionConflict`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ctxmgr.stores.base import ArchiveRow, StoredState, StoreError, VersionConflict

__all__ = ["AsyncPostgresStore", "PostgresStore"]

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ctxmgr_state (conversation TEXT PRIMARY KEY, "
    "version BIGINT NOT NULL, data TEXT NOT NULL, expires DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS ctxmgr_archive (seq BIGSERIAL PRIMARY KEY, "
    "conversation TEXT NOT NULL, key TEXT NOT NULL, entry TEXT NOT NULL, "
    "UNIQUE (conversation, key))",
    "CREATE TABLE IF NOT EXISTS ctxmgr_counts (conversation TEXT NOT NULL, key TEXT NOT NULL, "
    "tokens INTEGER NOT NULL, PRIMARY KEY (conversation, key))",
    "CREATE TABLE IF NOT EXISTS ctxmgr_features (conversation TEXT NOT NULL, "
    "key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (conversation, key))",
]
_LIVE = (
    "SELECT version, data FROM ctxmgr_state "
    "WHERE conversation = %s AND (expires IS NULL OR expires > %s)"
)
_LOCK = "SELECT version, expires FROM ctxmgr_state WHERE conversation = %s FOR UPDATE"
_INSERT = (
    "INSERT INTO ctxmgr_state (conversation, version, data, expires) VALUES (%s, 1, %s, %s) "
    "ON CONFLICT (conversation) DO NOTHING RETURNING version"
)
_UPDATE = "UPDATE ctxmgr_state SET version = %s, data = %s, expires = %s WHERE conversation = %s"
_ARCHIVE = (
    "INSERT INTO ctxmgr_archive (conversation, key, entry) VALUES (%s, %s, %s) "
    "ON CONFLICT (conversation, key) DO NOTHING"
)
_COUNTS = (
    "INSERT INTO ctxmgr_counts (conversation, key, tokens) VALUES (%s, %s, %s) "
    "ON CONFLICT (conversation, key) DO NOTHING"
)
_FEATURES = (
    "INSERT INTO ctxmgr_features (conversation, key, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (conversation, key) DO NOTHING"
)
_PURGE = [
    f"DELETE FROM {t} WHERE conversation = %s"
    for t in ("ctxmgr_archive", "ctxmgr_counts", "ctxmgr_features")
]
_SELECT_FEATURES = "SELECT key, value FROM ctxmgr_features WHERE conversation = %s"


def _select_features(
    conversation_id: str, keys: Collection[str] | None
) -> tuple[str, tuple[Any, ...]]:
    if keys is None:
        return _SELECT_FEATURES, (conversation_id,)
    return _SELECT_FEATURES + " AND key = ANY(%s)", (conversation_id, list(keys))


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - exercised without the extra installed
        raise ImportError(
            'PostgresStore needs psycopg 3: pip install "ctxmgr-llm[postgres]"'
        ) from exc
    return psycopg


def _rows(conversation_id: str, archive: Sequence[ArchiveRow]) -> list[tuple[str, str, str]]:
    return [(conversation_id, key, json.dumps(entry)) for key, entry in archive]


def _live_version(row: Any) -> int:
    """Version of a locked row, 0 when absent or expired."""
    if row is None or (row[1] is not None and row[1] <= time.time()):
        return 0
    return int(row[0])


class PostgresStore:
    """A :class:`~ctxmgr.stores.base.SessionStore` in PostgreSQL (psycopg 3, synchronous).

    One connection per process and thread, opened on first use.

    Args:
        url: ``postgresql://user:password@host:port/dbname``.
        ttl: seconds after the last save at which a conversation expires; ``None`` never.

    Raises:
        ImportError: psycopg is not installed (``pip install "ctxmgr-llm[postgres]"``).
        StoreError: the server cannot be reached.
    """

    def __init__(self, url: str, *, ttl: float | None = None):
        self._pg = _import_psycopg()
        self.url = url
        self.ttl = ttl
        self._local = threading.local()
        self._pid = os.getpid()
        self._all: list[Any] = []  # every connection opened, to close them all
        self._all_lock = threading.Lock()
        with self._tx() as cur:
            for stmt in _SCHEMA:
                cur.execute(stmt)

    def _conn(self) -> Any:
        if self._pid != os.getpid():  # forked: never share the parent's socket
            self._local = threading.local()
            self._pid = os.getpid()
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            try:
                con = self._pg.connect(self.url, autocommit=True)
            except self._pg.Error as exc:
                raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
            self._local.con = con
            with self._all_lock:
                self._all.append(con)
        return con

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        con = self._conn()
        try:
            with con.transaction(), con.cursor() as cur:
                yield cur
        except self._pg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc

    def version(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.version`."""
        with self._tx() as cur:
            row = cur.execute(_LIVE, (conversation_id, time.time())).fetchone()
        return int(row[0]) if row else 0

    def load(self, conversation_id: str) -> StoredState | None:
        """See :meth:`SessionStore.load`."""
        with self._tx() as cur:
            row = cur.execute(_LIVE, (conversation_id, time.time())).fetchone()
        return StoredState(int(row[0]), json.loads(row[1])) if row else None

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
        expires = time.time() + self.ttl if self.ttl is not None else None
        with self._tx() as cur:
            row = cur.execute(_LOCK, (conversation_id,)).fetchone()
            actual = _live_version(row)
            if actual != expected_version:
                raise VersionConflict(conversation_id, expected_version, actual)
            if actual == 0:
                if row is not None:  # expired: start over
                    cur.execute(
                        "DELETE FROM ctxmgr_state WHERE conversation = %s", (conversation_id,)
                    )
                for stmt in _PURGE:
                    cur.execute(stmt, (conversation_id,))
                if cur.execute(_INSERT, (conversation_id, text, expires)).fetchone() is None:
                    raise VersionConflict(conversation_id, expected_version, 1)
            else:
                cur.execute(_UPDATE, (expected_version + 1, text, expires, conversation_id))
            if archive:
                cur.executemany(_ARCHIVE, _rows(conversation_id, archive))
            if counts:
                cur.executemany(_COUNTS, [(conversation_id, k, int(v)) for k, v in counts.items()])
            if features:
                cur.executemany(
                    _FEATURES, [(conversation_id, k, str(v)) for k, v in features.items()]
                )
        return expected_version + 1

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """See :meth:`SessionStore.archive`."""
        if not self.version(conversation_id):
            return []
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT entry FROM ctxmgr_archive WHERE conversation = %s ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def archive_size(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.archive_size`."""
        if not self.version(conversation_id):
            return 0
        with self._tx() as cur:
            row = cur.execute(
                "SELECT count(*) FROM ctxmgr_archive WHERE conversation = %s", (conversation_id,)
            ).fetchone()
        return int(row[0])

    def counts(self, conversation_id: str) -> dict[str, int]:
        """See :meth:`SessionStore.counts`."""
        if not self.version(conversation_id):
            return {}
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT key, tokens FROM ctxmgr_counts WHERE conversation = %s", (conversation_id,)
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def features(self, conversation_id: str, keys: Collection[str] | None = None) -> dict[str, str]:
        """See :meth:`SessionStore.features`."""
        if not self.version(conversation_id):
            return {}
        with self._tx() as cur:
            rows = cur.execute(*_select_features(conversation_id, keys)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def delete(self, conversation_id: str) -> bool:
        """See :meth:`SessionStore.delete`."""
        with self._tx() as cur:
            n = cur.execute(
                "DELETE FROM ctxmgr_state WHERE conversation = %s", (conversation_id,)
            ).rowcount
            for stmt in _PURGE:
                n += cur.execute(stmt, (conversation_id,)).rowcount
        return bool(n)

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        with self._all_lock:
            cons, self._all = self._all, []
        if self._pid == os.getpid():
            for con in cons:
                con.close()
        self._local = threading.local()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, ttl={self.ttl})"


class AsyncPostgresStore:
    """:class:`PostgresStore` for asyncio: the same methods, as coroutines.

    Open it with ``await AsyncPostgresStore.open(url)``; one connection, used by one
    task at a time (an ``asyncio.Lock`` serializes calls).

    Args:
        con: an open ``psycopg.AsyncConnection``.
        url: for messages.
        ttl: seconds after the last save at which a conversation expires; ``None`` never.
    """

    def __init__(self, con: Any, url: str = "", *, ttl: float | None = None):
        import asyncio

        self._pg = _import_psycopg()
        self._con = con
        self.url = url
        self.ttl = ttl
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, ttl: float | None = None) -> AsyncPostgresStore:
        """Connect and create the tables if needed.

        Raises:
            ImportError: psycopg is not installed (``pip install "ctxmgr-llm[postgres]"``).
            StoreError: the server cannot be reached.
        """
        pg = _import_psycopg()
        try:
            con = await pg.AsyncConnection.connect(url, autocommit=True)
            async with con.transaction():
                for stmt in _SCHEMA:
                    await con.execute(stmt)
        except pg.Error as exc:
            raise StoreError(f"PostgreSQL store {url}: {exc}") from exc
        return cls(con, url, ttl=ttl)

    async def _fetch(self, sql: str, params: Sequence[Any], all_rows: bool = False) -> Any:
        async with self._lock:
            try:
                async with self._con.transaction():
                    cur = await self._con.execute(sql, params)
                    return await (cur.fetchall() if all_rows else cur.fetchone())
            except self._pg.Error as exc:
                raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc

    async def version(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.version`."""
        row = await self._fetch(_LIVE, (conversation_id, time.time()))
        return int(row[0]) if row else 0

    async def load(self, conversation_id: str) -> StoredState | None:
        """See :meth:`SessionStore.load`."""
        row = await self._fetch(_LIVE, (conversation_id, time.time()))
        return StoredState(int(row[0]), json.loads(row[1])) if row else None

    async def save(
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
        expires = time.time() + self.ttl if self.ttl is not None else None
        async with self._lock:
            try:
                async with self._con.transaction(), self._con.cursor() as cur:
                    await cur.execute(_LOCK, (conversation_id,))
                    row = await cur.fetchone()
                    actual = _live_version(row)
                    if actual != expected_version:
                        raise VersionConflict(conversation_id, expected_version, actual)
                    if actual == 0:
                        if row is not None:
                            await cur.execute(
                                "DELETE FROM ctxmgr_state WHERE conversation = %s",
                                (conversation_id,),
                            )
                        for stmt in _PURGE:
                            await cur.execute(stmt, (conversation_id,))
                        await cur.execute(_INSERT, (conversation_id, text, expires))
                        if await cur.fetchone() is None:
                            raise VersionConflict(conversation_id, expected_version, 1)
                    else:
                        await cur.execute(
                            _UPDATE, (expected_version + 1, text, expires, conversation_id)
                        )
                    if archive:
                        await cur.executemany(_ARCHIVE, _rows(conversation_id, archive))
                    if counts:
                        await cur.executemany(
                            _COUNTS, [(conversation_id, k, int(v)) for k, v in counts.items()]
                        )
                    if features:
                        await cur.executemany(
                            _FEATURES, [(conversation_id, k, str(v)) for k, v in features.items()]
                        )
            except self._pg.Error as exc:
                raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
        return expected_version + 1

    async def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """See :meth:`SessionStore.archive`."""
        if not await self.version(conversation_id):
            return []
        rows = await self._fetch(
            "SELECT entry FROM ctxmgr_archive WHERE conversation = %s ORDER BY seq",
            (conversation_id,),
            all_rows=True,
        )
        return [json.loads(r[0]) for r in rows]

    async def archive_size(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.archive_size`."""
        if not await self.version(conversation_id):
            return 0
        row = await self._fetch(
            "SELECT count(*) FROM ctxmgr_archive WHERE conversation = %s", (conversation_id,)
        )
        return int(row[0])

    async def counts(self, conversation_id: str) -> dict[str, int]:
        """See :meth:`SessionStore.counts`."""
        if not await self.version(conversation_id):
            return {}
        rows = await self._fetch(
            "SELECT key, tokens FROM ctxmgr_counts WHERE conversation = %s",
            (conversation_id,),
            all_rows=True,
        )
        return {str(k): int(v) for k, v in rows}

    async def features(
        self, conversation_id: str, keys: Collection[str] | None = None
    ) -> dict[str, str]:
        """See :meth:`SessionStore.features`."""
        if not await self.version(conversation_id):
            return {}
        rows = await self._fetch(*_select_features(conversation_id, keys), all_rows=True)
        return {str(k): str(v) for k, v in rows}

    async def delete(self, conversation_id: str) -> bool:
        """See :meth:`SessionStore.delete`."""
        async with self._lock:
            try:
                async with self._con.transaction(), self._con.cursor() as cur:
                    n = 0
                    for stmt in [
                        "DELETE FROM ctxmgr_state WHERE conversation = %s",
                        *_PURGE,
                    ]:
                        await cur.execute(stmt, (conversation_id,))
                        n += cur.rowcount
            except self._pg.Error as exc:
                raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
        return bool(n)

    async def close(self) -> None:
        """Close the connection."""
        await self._con.close()

    def __repr__(self) -> str:
        return f"AsyncPostgresStore({self.url!r}, ttl={self.ttl})"
