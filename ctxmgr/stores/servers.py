"""Throwaway local Redis and PostgreSQL servers for tests and benchmarks.

:func:`local_redis` runs ``redis-server`` (no persistence) and :func:`local_postgres` a
fresh PostgreSQL cluster (``initdb`` + ``pg_ctl``, trust authentication, as the
``postgres`` user when running as root, since PostgreSQL refuses root), each on a free
port of 127.0.0.1 in a temporary directory, stopped and deleted on exit. The Debian
packages ``redis-server`` and ``postgresql`` provide the binaries (``make services``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ServerUnavailable", "free_port", "local_postgres", "local_redis"]


class ServerUnavailable(RuntimeError):
    """The server binary is missing or did not start (the message says which and why)."""


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], object], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    return False


@contextmanager
def local_redis() -> Iterator[str]:
    """Run a ``redis-server`` on a free port; yield its URL (``redis://127.0.0.1:<port>/0``).

    Raises:
        ServerUnavailable: ``redis-server`` is not installed or did not answer in 20 s.
    """
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)),
        None,
    )
    if binary is None:
        raise ServerUnavailable("redis-server is not installed (Debian package redis-server)")
    import redis

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ctxmgr-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        up = _wait(client.ping)
        client.close()
        if not up:
            raise ServerUnavailable(f"redis-server did not answer on port {port}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pg_bindir() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs else None


@contextmanager
def local_postgres(max_connections: int = 100) -> Iterator[str]:
    """Run a fresh PostgreSQL cluster on a free port; yield its URL.

    The URL is ``postgresql://ctxmgr@127.0.0.1:<port>/postgres`` (trust authentication).

    Raises:
        ServerUnavailable: PostgreSQL is not installed, or initdb / pg_ctl failed.
    """
    bindir = _pg_bindir()
    if bindir is None:
        raise ServerUnavailable("PostgreSQL is not installed (Debian package postgresql)")
    as_user: list[str] = []
    workdir = tempfile.mkdtemp(prefix="ctxmgr-pg-")
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        runuser = shutil.which("runuser")
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = None
        if runuser is None or pw is None:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ServerUnavailable("running as root needs runuser and a 'postgres' user")
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
        raise ServerUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c max_connections={max_connections} -c shared_buffers=32MB"
    )
    start = run(
        f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{workdir}/log", "-w", "start"
    )
    if start.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServerUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://ctxmgr@127.0.0.1:{port}/postgres"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
