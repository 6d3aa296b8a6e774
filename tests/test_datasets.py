"""Tests for ctxmgr.bench.datasets and its CLI; all HTTP goes to a loopback server."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ctxmgr.bench import datasets
from ctxmgr.bench.datasets import (
    DATASETS,
    DatasetSpec,
    cache_dir,
    data_dir,
    dataset_path,
    fetch,
    list_datasets,
)
from ctxmgr.bench.datasets_cli import app
from ctxmgr.errors import DatasetError

PAYLOAD = b'[{"role": "user", "content": "hello"}]\n' * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the cache at tmp_path, unset CTXMGR_DATA_DIR, and refuse non-loopback hosts."""
    monkeypatch.setenv("CTXMGR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CTXMGR_DATA_DIR", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    real = socket.create_connection

    def loopback_only(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        assert address[0] in _LOOPBACK, f"test tried to reach {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)


class _QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        _QuietHandler.requests.append(self.path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Serve tmp_path/www on 127.0.0.1 (random port); yield the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.json").write_bytes(PAYLOAD)
    _QuietHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> DatasetSpec:
    """A test dataset whose pinned checksum matches PAYLOAD."""
    spec = DatasetSpec(
        name="tiny",
        url="http://127.0.0.1:9/never-used",
        sha256=PAYLOAD_SHA,
        filename="tiny.json",
        license="MIT",
        description="test payload",
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    return spec


def test_builtin_specs() -> None:
    """LoCoMo and tau-bench are pinned with sha256 digests and raw GitHub URLs."""
    assert set(DATASETS) >= {"locomo", "tau-bench"}
    for spec in (DATASETS["locomo"], DATASETS["tau-bench"]):
        assert spec.url.startswith("https://raw.githubusercontent.com/")
        assert spec.url.endswith("/" + spec.filename)
        assert len(spec.sha256) == 64 and spec.license


@pytest.mark.data
def test_pinned_checksums_match_local_copies(data_dir: Path) -> None:
    """The pinned sha256 values are those of the shared copies (the pinned commits)."""
    for spec in (DATASETS["locomo"], DATASETS["tau-bench"]):
        digest = hashlib.sha256((data_dir / spec.relpath).read_bytes()).hexdigest()
        assert digest == spec.sha256, spec.name


def test_cache_dir_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CTXMGR_CACHE_DIR wins; otherwise ~/.cache/ctxmgr/datasets."""
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CTXMGR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ctxmgr" / "datasets"


def test_fetch_downloads_and_verifies(server: str, tiny: DatasetSpec) -> None:
    """A matching download lands atomically in the cache; a second fetch reuses it."""
    path = fetch("tiny", url=f"{server}/data.json", progress=False)
    assert path == cache_dir() / "tiny" / "tiny.json"
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in path.parent.iterdir()] == ["tiny.json"], "no temp file left"
    assert dataset_path("tiny") == path
    assert fetch("tiny", url=f"{server}/data.json", progress=False) == path
    assert _QuietHandler.requests == ["/data.json"], "cached valid file is not re-downloaded"


def test_fetch_checksum_mismatch(server: str, tiny: DatasetSpec, monkeypatch: Any) -> None:
    """A mismatching sha256 fails loudly, leaves nothing behind; --no-verify accepts it."""
    monkeypatch.setitem(DATASETS, "tiny", replace(tiny, sha256="0" * 64))
    url = f"{server}/data.json"
    with pytest.raises(DatasetError, match="sha256 mismatch") as info:
        fetch("tiny", url=url, progress=False)
    message = str(info.value)
    assert "'tiny'" in message and url in message and "--no-verify" in message
    target = cache_dir() / "tiny"
    assert list(target.iterdir()) == []
    assert fetch("tiny", url=url, verify=False, progress=False).read_bytes() == PAYLOAD


def test_fetch_404(server: str, tiny: DatasetSpec) -> None:
    """An HTTP error names the dataset, the URL and the status."""
    url = f"{server}/missing.json"
    with pytest.raises(DatasetError, match=r"cannot fetch dataset 'tiny' from .*: HTTP 404"):
        fetch("tiny", url=url, progress=False)
    assert not (cache_dir() / "tiny" / "tiny.json").exists()


def test_fetch_connection_refused(tiny: DatasetSpec) -> None:
    """A network failure (nothing listening) is a DatasetError, not a URLError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetError, match=f"127.0.0.1:{port}"):
        fetch("tiny", url=f"http://127.0.0.1:{port}/x.json", progress=False)


def test_unknown_dataset() -> None:
    """Unknown names are rejected with the list of known ones."""
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope' \(known: .*locomo"):
        fetch("nope")
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_path("nope")


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CTXMGR_DATA_DIR copies are found first, then the cache; else a fetch hint."""
    assert data_dir() is None
    with pytest.raises(DatasetError, match="run `ctxmgr datasets fetch locomo`"):
        dataset_path("locomo")
    cached = cache_dir() / "locomo" / "locomo10.json"
    cached.parent.mkdir(parents=True)
    cached.write_text("[]")
    assert dataset_path("locomo") == cached
    local = tmp_path / "shared"
    (local / "locomo").mkdir(parents=True)
    (local / "locomo" / "locomo10.json").write_text("[]")
    monkeypatch.setenv("CTXMGR_DATA_DIR", str(local))
    assert data_dir() == local
    assert dataset_path("locomo") == local / "locomo" / "locomo10.json"
    with pytest.raises(DatasetError, match=str(local / "tau-bench")):
        dataset_path("tau-bench")


def test_list_datasets(tmp_path: Path) -> None:
    """list_datasets gives name, url, license and the local path (None until fetched)."""
    rows = {row["name"]: row for row in list_datasets()}
    assert rows["locomo"]["path"] is None
    assert rows["locomo"]["license"] == "CC BY-NC 4.0"
    assert rows["tau-bench"]["url"] == DATASETS["tau-bench"].url
    cached = cache_dir() / "tau-bench" / "gpt-4o-airline.json"
    cached.parent.mkdir(parents=True)
    cached.write_text("[]")
    rows = {row["name"]: row for row in list_datasets()}
    assert rows["tau-bench"]["path"] == cached


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def test_cli_list() -> None:
    """`datasets list` prints a table with every dataset."""
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "locomo" in result.stdout and "tau-bench" in result.stdout
    assert "not fetched" in result.stdout


def test_cli_fetch_ok_and_mismatch(server: str, tiny: DatasetSpec, monkeypatch: Any) -> None:
    """`datasets fetch` prints the path; a mismatch is one clean error line and exit 1."""
    runner = CliRunner()
    url = f"{server}/data.json"
    monkeypatch.setitem(DATASETS, "tiny", replace(tiny, sha256="f" * 64))
    bad = runner.invoke(app, ["fetch", "tiny", "--url", url])
    assert bad.exit_code == 1
    assert bad.stdout == ""
    assert bad.stderr.startswith("error: cannot fetch dataset 'tiny'")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.output
    ok = runner.invoke(app, ["fetch", "tiny", "--url", url, "--no-verify"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == str(cache_dir() / "tiny" / "tiny.json")


def test_cli_fetch_404(server: str, tiny: DatasetSpec) -> None:
    """A 404 exits 1 with one error line naming the status."""
    result = CliRunner().invoke(app, ["fetch", "tiny", "--url", f"{server}/nope"])
    assert result.exit_code == 1
    assert "HTTP 404" in result.stderr and "Traceback" not in result.output


def test_datasets_module_has_no_network_at_import() -> None:
    """Importing the module does not fetch anything (the specs are plain data)."""
    assert datasets.DATASETS["locomo"].relpath == Path("locomo") / "locomo10.json"
