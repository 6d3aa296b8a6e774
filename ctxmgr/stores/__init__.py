"""Durable per-conversation state: any worker can serve any turn of any conversation.

A :class:`SessionStore` keeps each conversation's session state (running summary, notes,
turn, per-strategy state, the last fitted window), its archive and its token counts,
with compare-and-swap writes. :func:`open_store` builds one from a URL:

=================================  ===============================================
``memory://``                      :class:`MemoryStore` (one process)
``sqlite:///path/to/file.db``      :class:`SQLiteStore` (embedded default, WAL mode)
``redis://host:port/db``           :class:`RedisStore` (``pip install "ctxmgr[redis]"``)
``postgresql://user@host/db``      :class:`PostgresStore` (``pip install "ctxmgr[postgres]"``)
=================================  ===============================================

Bind a manager to a conversation with :class:`StoredSession` (or
``ContextManager.from_config(..., store=..., conversation_id=...)``). redis-py and psycopg
are imported only when such a store is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ctxmgr.errors import ConfigError
from ctxmgr.stores.base import ArchiveRow, SessionStore, StoredState, StoreError, VersionConflict
from ctxmgr.stores.memory import MemoryStore
from ctxmgr.stores.postgres import AsyncPostgresStore, PostgresStore
from ctxmgr.stores.redis_store import RedisStore
from ctxmgr.stores.session import StoredArchive, StoredSession
from ctxmgr.stores.sqlite import SQLiteStore

__all__ = [
    "ArchiveRow",
    "AsyncPostgresStore",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "SessionStore",
    "StoreError",
    "StoredArchive",
    "StoredSession",
    "StoredState",
    "VersionConflict",
    "open_store",
]

DEFAULT_SQLITE_PATH = Path("~/.cache/ctxmgr/sessions.db")
"""Where ``sqlite://`` (no path) keeps its file."""


def open_store(url: str | SessionStore, *, ttl: float | None = None) -> Any:
    """Return the store a URL names (a store object is returned unchanged).

    Args:
        url: ``memory://``, ``sqlite:///relative.db`` / ``sqlite:////abs/path.db`` (or
            ``sqlite://`` for ``~/.cache/ctxmgr/sessions.db``), ``redis://...`` /
            ``rediss://...``, ``postgresql://...`` / ``postgres://...``. A ``ttl`` query
            parameter (seconds) sets the time to live, e.g. ``redis://h:6379/0?ttl=86400``
            (PostgreSQL's own query parameters are passed through).
        ttl: time to live in seconds (wins over the URL's).

    Raises:
        ConfigError: an unknown scheme.
        ImportError: the backend's client library is missing (names the pip extra).
        StoreError: the backend cannot be reached.
    """
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if ttl is None and "ttl" in query:
        ttl = float(query["ttl"][0])
    if scheme == "memory":
        return MemoryStore(ttl=ttl)
    if scheme == "sqlite":
        path = url[len("sqlite://") :].split("?", 1)[0]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        return SQLiteStore(path or DEFAULT_SQLITE_PATH, ttl=ttl)
    if scheme in ("redis", "rediss", "unix"):
        clean = parts._replace(
            query="&".join(f"{k}={v[0]}" for k, v in query.items() if k != "ttl")
        ).geturl()
        return RedisStore(clean, ttl=ttl)
    if scheme in ("postgresql", "postgres"):
        clean = parts._replace(
            query="&".join(f"{k}={v[0]}" for k, v in query.items() if k != "ttl")
        ).geturl()
        return PostgresStore(clean, ttl=ttl)
    raise ConfigError(
        f"unknown store URL scheme {parts.scheme!r} in {url!r}; use memory://, "
        "sqlite:///path, redis://host:port/db or postgresql://user@host/db",
        key="store",
    )
