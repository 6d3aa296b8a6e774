"""Public benchmark datasets: where they come from, where they are kept, how to fetch them.

A dataset is looked up first in ``$CTXMGR_DATA_DIR`` (local copies laid out as
``<name>/<filename>``, e.g. ``locomo/locomo10.json``), then in the download cache
(``$CTXMGR_CACHE_DIR``, default ``~/.cache/ctxmgr/datasets``, same layout).
:func:`fetch` downloads a dataset into the cache with the standard library only, checks
its sha256 and moves it into place atomically.

Each dataset keeps its own license (see :data:`DATASETS`); ctxmgr does not redistribute
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxmgr.errors import DatasetError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "cache_dir",
    "data_dir",
    "dataset_path",
    "fetch",
    "list_datasets",
]

_CHUNK = 1 << 16
_TIMEOUT = 60.0


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable public dataset.

    Attributes:
        name: the dataset name (``"locomo"``); also its directory in the cache and data dir.
        url: where :func:`fetch` downloads it from.
        sha256: expected hex digest of the file, or ``""`` to skip the check.
        filename: the file name inside ``<dir>/<name>/``.
        license: the dataset's license.
        description: one line about what it is.
    """

    name: str
    url: str
    sha256: str
    filename: str
    license: str
    description: str

    @property
    def relpath(self) -> Path:
        """The path inside a data or cache directory: ``<name>/<filename>``."""
        return Path(self.name) / self.filename


# The checksums are those of the files at the commits pinned in the data's SOURCES.md
# (LoCoMo @3eb6f2c5, tau-bench @59a200c6). The URLs follow upstream ``main``: if a file
# changes upstream, fetch fails loudly with a checksum mismatch; pass ``--no-verify``
# (``verify=False``) to accept the new file, or update the checksum here.
DATASETS: dict[str, DatasetSpec] = {
    "locomo": DatasetSpec(
        name="locomo",
        url="https://raw.githubusercontent.com/snap-research/LoCoMo/main/data/locomo10.json",
        sha256="79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4",
        filename="locomo10.json",
        license="CC BY-NC 4.0",
        description="10 very long two-speaker dialogues with 1,986 QA items and evidence ids",
    ),
    "tau-bench": DatasetSpec(
        name="tau-bench",
        url=(
            "https://raw.githubusercontent.com/sierra-research/tau-bench/main/"
            "historical_trajectories/gpt-4o-airline.json"
        ),
        sha256="e9e6c0297660c537f83d4fd9c476ce7a9a86ecd2784874b7bfc13be598e37bfa",
        filename="gpt-4o-airline.json",
        license="MIT",
        description="200 recorded gpt-4o airline agent runs with ground-truth actions",
    ),
}


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})"
        ) from None


def cache_dir() -> Path:
    """Return the download cache: ``$CTXMGR_CACHE_DIR`` or ``~/.cache/ctxmgr/datasets``.

    The directory is not created here.
    """
    env = os.environ.get("CTXMGR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ctxmgr" / "datasets"


def data_dir() -> Path | None:
    """Return ``$CTXMGR_DATA_DIR`` (local copies laid out as ``<name>/<filename>``), or ``None``."""
    env = os.environ.get("CTXMGR_DATA_DIR")
    return Path(env).expanduser() if env else None


def _local_path(spec: DatasetSpec) -> Path | None:
    local = data_dir()
    candidates = [local / spec.relpath] if local is not None else []
    candidates.append(cache_dir() / spec.relpath)
    return next((p for p in candidates if p.is_file()), None)


def dataset_path(name: str) -> Path:
    """Return the local file of a dataset: the ``$CTXMGR_DATA_DIR`` copy, else the cached one.

    Args:
        name: a key of :data:`DATASETS`.

    Returns:
        The path of an existing file (its checksum is not checked here).

    Raises:
        DatasetError: the name is unknown, or the dataset is in neither place (the message
            says to run ``ctxmgr datasets fetch NAME``).
    """
    spec = _spec(name)
    path = _local_path(spec)
    if path is None:
        places = [str(cache_dir() / spec.relpath)]
        local = data_dir()
        if local is not None:
            places.insert(0, str(local / spec.relpath))
        raise DatasetError(
            f"dataset {name!r} is not available locally (looked in {', '.join(places)}); "
            f"run `ctxmgr datasets fetch {name}`"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, *, url: str | None = None, verify: bool = True, progress: bool = True) -> Path:
    """Download a dataset into :func:`cache_dir` and return its path.

    The file is streamed to a temporary file beside the target, its sha256 checked, then
    renamed into place atomically, so a failed or interrupted download never leaves a
    partial file. A cached file whose checksum already matches is returned without
    downloading (with ``verify=False`` the file is always downloaded again).

    Args:
        name: a key of :data:`DATASETS`.
        url: download from here instead of the dataset's URL (a mirror).
        verify: check the sha256 against :data:`DATASETS`; turn off to accept a file that
            changed upstream.
        progress: show a progress bar on stderr (only when it is a terminal).

    Returns:
        The path of the downloaded file, ``cache_dir() / name / filename``.

    Raises:
        DatasetError: unknown name; or the download failed (HTTP error, network error,
            file-system error) or the checksum does not match; the message names the
            dataset, the URL and the cause.
    """
    spec = _spec(name)
    source = url or spec.url
    target = cache_dir() / spec.relpath
    check = verify and bool(spec.sha256)
    if check and target.is_file() and _sha256(target) == spec.sha256:
        return target

    def fail(cause: str) -> DatasetError:
        return DatasetError(f"cannot fetch dataset {name!r} from {source}: {cause}")

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{spec.filename}.", suffix=".part", dir=target.parent
        )
    except OSError as e:
        raise fail(f"cannot write to {target.parent}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(source, out, progress=progress, label=name)
        if check and digest != spec.sha256:
            raise fail(
                f"sha256 mismatch (expected {spec.sha256}, got {digest}); the file may have "
                "changed upstream: pass --no-verify (verify=False) to accept it, or update "
                "the pinned checksum"
            )
        os.replace(tmp, target)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the open response
        raise fail(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise fail(str(e.reason)) from e
    except (OSError, ValueError, http.client.HTTPException) as e:
        # timeouts, connection resets, truncated bodies, disk full, malformed URL
        raise fail(f"{type(e).__name__}: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def _download(url: str, out: Any, *, progress: bool, label: str) -> str:
    """Stream ``url`` into the binary file ``out``; return the sha256 hex digest."""
    request = urllib.request.Request(url, headers={"User-Agent": "ctxmgr-datasets"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with _Progress(progress, label, total) as advance:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
    return digest.hexdigest()


class _Progress:
    """A rich download bar on stderr, or nothing when disabled or not a terminal."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> Any:
        if self._bar is None:
            return lambda n: None
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def list_datasets() -> list[dict[str, Any]]:
    """Describe every dataset.

    Returns:
        One dict per dataset, sorted by name: ``{"name", "url", "license",
        "description", "path"}`` where ``path`` is the local file (``$CTXMGR_DATA_DIR``
        copy first, then the cache) or ``None`` when it has not been fetched.
    """
    return [
        {
            "name": spec.name,
            "url": spec.url,
            "license": spec.license,
            "description": spec.description,
            "path": _local_path(spec),
        }
        for spec in sorted(DATASETS.values(), key=lambda s: s.name)
    ]
