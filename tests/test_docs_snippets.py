"""Every Python snippet of README.md and docs/adapters.md runs as written.

The snippets of one file run in order in one namespace (as a reader runs them), in a
temporary directory holding the TOML files the page shows (a ```toml block whose first line
is ``# <name>.toml``), against the mock provider server: the real clients read
``OPENAI_BASE_URL`` / ``OPENAI_API_BASE`` / ``ANTHROPIC_BASE_URL`` and the API keys from
the environment, as the pages say. Top-level ``await`` is allowed (as in a notebook).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from mockprovider import MockProvider

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/adapters.md")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def snippets(page: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of ``page``, in order."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def test_pages_have_python_snippets() -> None:
    """The pages this test covers do have Python snippets (the extraction works)."""
    assert all(any(lang == "python" for lang, _ in snippets(p)) for p in PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_snippets_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_provider: MockProvider
) -> None:
    """Each Python snippet of ``page`` runs, and no request to the provider is rejected."""
    mock_provider.window = 200_000  # the models' real windows (gpt-4o: 128,000) apply
    monkeypatch.chdir(tmp_path)
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(key, "test")
    monkeypatch.setenv("OPENAI_BASE_URL", mock_provider.openai_base_url)
    monkeypatch.setenv("OPENAI_API_BASE", mock_provider.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", mock_provider.base_url)
    namespace: dict[str, Any] = {"__name__": "__snippets__"}
    ran = 0
    for n, (lang, code) in enumerate(snippets(page)):
        first = code.splitlines()[0] if code else ""
        named = re.match(r"#\s*(\S+\.toml)\s*$", first)
        if lang == "toml" and named:
            (tmp_path / named.group(1)).write_text(code, encoding="utf-8")
        if lang != "python":
            continue
        compiled = compile(
            code, f"{page}[snippet {n}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # deprecation notices of the frameworks print
            result = eval(compiled, namespace)
            if inspect.iscoroutine(result):
                asyncio.run(result)
        ran += 1
    assert ran
    assert [r.error for r in mock_provider.rejected] == []
