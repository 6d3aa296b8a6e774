"""Real Redis and PostgreSQL servers for the store tests, started on 127.0.0.1.

Session-scoped, from :mod:`ctxmgr.stores.servers`: one ``redis-server`` and one fresh
PostgreSQL cluster on free ports, stopped at the end. ``CTXMGR_TEST_REDIS_URL`` /
``CTXMGR_TEST_POSTGRES_URL`` point the tests at running servers instead. ``make services``
installs the Debian packages.

A test whose server cannot be started FAILS when the ``CI`` environment variable is set,
and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from ctxmgr.stores.servers import ServerUnavailable, local_postgres, local_redis


def unavailable(reason: str) -> None:
    """Fail on CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: store tests must run; `make services` installs them)")
    pytest.skip(f"{reason}; `make services` installs redis-server and postgresql")


def _serve(env: str, start: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    if os.environ.get(env):
        yield os.environ[env]
        return
    try:
        server = start()
        url = server.__enter__()
    except ServerUnavailable as exc:
        unavailable(str(exc))
        return
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server started for this test session."""
    yield from _serve("CTXMGR_TEST_REDIS_URL", local_redis)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL cluster started for this test session."""
    yield from _serve("CTXMGR_TEST_POSTGRES_URL", local_postgres)
