"""Tests for the public API of the ``ctxmgr`` package: ``__all__`` and import hygiene."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import ctxmgr

PUBLIC = [
    "AgentLoopError",
    "Archive",
    "AsyncSummarizer",
    "Budget",
    "ConfigError",
    "ContentPart",
    "ContextManager",
    "ContextOverflowError",
    "CtxmgrConfig",
    "CtxmgrError",
    "DatasetError",
    "ExtractiveSummarizer",
    "FitReport",
    "FitResult",
    "Injection",
    "InvalidHistoryError",
    "InvalidStateError",
    "Message",
    "Note",
    "ProviderProfile",
    "Repair",
    "Segment",
    "SegmentRecord",
    "SessionState",
    "Strategy",
    "StrategyConfig",
    "StrategyError",
    "StrategyOptions",
    "Summarizer",
    "TokenCounter",
    "ToolCall",
    "TranscriptError",
    "Window",
    "__version__",
    "from_openai",
    "get_counter",
    "get_profile",
    "load_config",
    "messages_from_openai",
    "messages_to_openai",
    "segment_messages",
    "to_openai",
]


def test_all_is_the_exact_public_list() -> None:
    """ctxmgr.__all__ is exactly the documented public names."""
    assert ctxmgr.__all__ == PUBLIC


def test_all_is_sorted_without_duplicates() -> None:
    """__all__ is sorted and has no duplicates."""
    assert sorted(set(ctxmgr.__all__)) == ctxmgr.__all__


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_importable(name: str) -> None:
    """`from ctxmgr import <name>` works for every name in __all__."""
    module = importlib.import_module("ctxmgr")
    assert getattr(module, name) is not None


def test_star_import_gives_exactly_all() -> None:
    """`from ctxmgr import *` binds exactly the names in __all__."""
    namespace: dict[str, object] = {}
    exec("from ctxmgr import *", namespace)
    assert set(PUBLIC) == set(namespace) - {"__builtins__"}


def test_public_classes_come_from_their_modules() -> None:
    """Public names are the objects defined in their submodules, not copies."""
    from ctxmgr.manager import ContextManager
    from ctxmgr.messages import Message

    assert ctxmgr.ContextManager is ContextManager
    assert ctxmgr.Message is Message


def test_version_matches_distribution_metadata() -> None:
    """ctxmgr.__version__ equals the installed distribution's version."""
    from importlib.metadata import version

    assert version("ctxmgr-llm") == ctxmgr.__version__


def _fresh_modules(code: str) -> list[str]:
    """Run `code` in a fresh interpreter and return the JSON list it prints."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_import_ctxmgr_imports_no_framework() -> None:
    """`import ctxmgr` imports no LangChain, LlamaIndex or AutoGen module."""
    loaded = _fresh_modules(
        "import ctxmgr, sys, json; print(json.dumps([m for m in sys.modules "
        "if m.startswith(('langchain', 'llama_index', 'autogen'))]))"
    )
    assert loaded == []


def test_import_ctxmgr_imports_no_adapter_and_no_strategy() -> None:
    """`import ctxmgr` imports neither ctxmgr.adapters nor the strategy modules (lazy)."""
    loaded = _fresh_modules(
        "import ctxmgr, sys, json; print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('ctxmgr.adapters', 'ctxmgr.strategies', 'ctxmgr.bench')))))"
    )
    assert loaded == []


def test_adapters_package_imports_no_framework() -> None:
    """`import ctxmgr.adapters` (the package, not a module) imports no framework."""
    loaded = _fresh_modules(
        "import ctxmgr.adapters, sys, json; print(json.dumps([m for m in sys.modules "
        "if m.startswith(('langchain', 'llama_index', 'autogen'))]))"
    )
    assert loaded == []
