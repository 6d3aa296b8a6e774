"""Real Redis and PostgreSQL servers for the store tests, started on 127.0.0.1.

Session-scoped: one ``redis-server`` (no persistence) and one PostgreSQL cluster
(``initdb`` + ``pg_ctl`` in a temporary directory, trust authentication, run as the
``postgres`` user when the tests run as root, since PostgreSQL refuses root) on free
ports, stopped at the end. ``CTXMGR_TEST_REDIS_URL`` / ``CTXMGR_TEST_POSTGRES_URL`` point
the tests at running servers instead. ``make services`` installs the Debian packages.

A test whose server cannot be started FAILS when the ``CI`` environment variable is set,
and is skipped with the reason otherwise.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def unavailable(reason: str) -> None:
    """Fail on CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: store tests must run; `make services` installs them)")
    pytest.skip(f"{reason}; `make services` installs redis-server and postgresql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server started for this test session."""
    env = os.environ.get("CTXMGR_TEST_REDIS_URL")
    if env:
        yield env
        return
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        unavailable("redis-server is not installed")
    import redis

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ctxmgr-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        if not _wait(client.ping):
            unavailable(f"redis-server did not answer on port {port}")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pg_bin() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL cluster started for this test session."""
    env = os.environ.get("CTXMGR_TEST_POSTGRES_URL")
    if env:
        yield env
        return
    bindir = _pg_bin()
    if bindir is None:
        unavailable("PostgreSQL (initdb, pg_ctl) is not installed")
    as_user: list[str] = []
    workdir = tempfile.mkdtemp(prefix="ctxmgr-pg-")
    if os.geteuid() == 0:  # postgres refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            unavailable("running as root without runuser to start PostgreSQL as 'postgres'")
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user")
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data = os.path.join(workdir, "data")
    port = free_port()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )

    init = run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "ctxmgr", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c max_connections=100 -c shared_buffers=32MB"
    )
    start = run(
        f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{workdir}/log", "-w", "start"
    )
    if start.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://ctxmgr@127.0.0.1:{port}/postgres"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
