"""A Redis store (redis-py): one hash, one set, one list and one hash per conversation.

Keys, with the conversation id in a hash tag so a cluster keeps them on one slot:
``<prefix>{<id>}:state`` (hash: version, data), ``:arck`` (set of archive keys),
``:arc`` (list of archive entries, oldest first), ``:cnt`` (hash of token counts),
``:ftr`` (hash of feature rows). A
save is one Lua script, which Redis runs atomically (https://redis.io/docs/latest/develop/
interact/programmability/eval-intro/): check the version, write, append, set the TTL.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ctxmgr.stores.base import ArchiveRow, StoredState, StoreError, VersionConflict

__all__ = ["RedisStore"]

_SAVE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
if v == 0 then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) end
redis.call('HSET', KEYS[1], 'version', v + 1, 'data', ARGV[2])
local i = 5
for j = 1, tonumber(ARGV[4]) do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then redis.call('RPUSH', KEYS[3], ARGV[i + 1]) end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
for j = 1, m do
  redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
m = tonumber(ARGV[i] or '0')
i = i + 1
for j = 1, m do
  redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local ttl = tonumber(ARGV[3])
for k = 1, 5 do
  if ttl > 0 then redis.call('PEXPIRE', KEYS[k], ttl) else redis.call('PERSIST', KEYS[k]) end
end
return {1, v + 1}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - exercised without the extra installed
        raise ImportError('RedisStore needs redis-py: pip install "ctxmgr-llm[redis]"') from exc
    return redis


class RedisStore:
    """A :class:`~ctxmgr.stores.base.SessionStore` in Redis.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        ttl: seconds after the last save at which a conversation expires; ``None`` never.
        prefix: key prefix.
        client: a ready ``redis.Redis`` client instead of ``url``.

    Raises:
        ImportError: redis-py is not installed (``pip install "ctxmgr-llm[redis]"``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        ttl: float | None = None,
        prefix: str = "ctxmgr:",
        client: Any = None,
    ):
        redis = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.client = client if client is not None else redis.Redis.from_url(url)
        self._save = self.client.register_script(_SAVE)

    def _keys(self, conversation_id: str) -> list[str]:
        base = f"{self.prefix}{{{conversation_id}}}:"
        return [base + "state", base + "arck", base + "arc", base + "cnt", base + "ftr"]

    def _fail(self, exc: BaseException) -> StoreError:
        return StoreError(f"Redis store {self.url}: {exc!r}")

    def version(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.version`."""
        try:
            raw = self.client.hget(self._keys(conversation_id)[0], "version")
        except self._errors as exc:
            raise self._fail(exc) from exc
        return int(raw) if raw is not None else 0

    def load(self, conversation_id: str) -> StoredState | None:
        """See :meth:`SessionStore.load`."""
        try:
            version, data = self.client.hmget(self._keys(conversation_id)[0], "version", "data")
        except self._errors as exc:
            raise self._fail(exc) from exc
        if version is None or data is None:
            return None
        return StoredState(int(version), json.loads(data))

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
        ttl_ms = int(self.ttl * 1000) if self.ttl is not None else 0
        args: list[Any] = [expected_version, json.dumps(data), ttl_ms, len(archive)]
        for key, entry in archive:
            args += [key, json.dumps(entry)]
        counts = counts or {}
        args.append(len(counts))
        for key, tokens in counts.items():
            args += [key, int(tokens)]
        features = features or {}
        args.append(len(features))
        for key, value in features.items():
            args += [key, str(value)]
        try:
            ok, version = self._save(keys=self._keys(conversation_id), args=args)
        except self._errors as exc:
            raise self._fail(exc) from exc
        if not ok:
            raise VersionConflict(conversation_id, expected_version, int(version))
        return int(version)

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        """See :meth:`SessionStore.archive`."""
        try:
            rows = self.client.lrange(self._keys(conversation_id)[2], 0, -1)
        except self._errors as exc:
            raise self._fail(exc) from exc
        return [json.loads(r) for r in rows]

    def archive_size(self, conversation_id: str) -> int:
        """See :meth:`SessionStore.archive_size`."""
        try:
            return int(self.client.llen(self._keys(conversation_id)[2]))
        except self._errors as exc:
            raise self._fail(exc) from exc

    def counts(self, conversation_id: str) -> dict[str, int]:
        """See :meth:`SessionStore.counts`."""
        try:
            raw = self.client.hgetall(self._keys(conversation_id)[3])
        except self._errors as exc:
            raise self._fail(exc) from exc
        return {k.decode() if isinstance(k, bytes) else str(k): int(v) for k, v in raw.items()}

    def features(self, conversation_id: str, keys: Collection[str] | None = None) -> dict[str, str]:
        """See :meth:`SessionStore.features`."""
        key = self._keys(conversation_id)[4]
        try:
            if keys is None:
                raw = self.client.hgetall(key)
            else:
                wanted = list(keys)
                values = self.client.hmget(key, wanted) if wanted else []
                raw = {k: v for k, v in zip(wanted, values) if v is not None}
        except self._errors as exc:
            raise self._fail(exc) from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    def delete(self, conversation_id: str) -> bool:
        """See :meth:`SessionStore.delete`."""
        try:
            return int(self.client.delete(*self._keys(conversation_id))) > 0
        except self._errors as exc:
            raise self._fail(exc) from exc

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, ttl={self.ttl})"
