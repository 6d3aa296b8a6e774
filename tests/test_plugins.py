"""Tests for ctxmgr.plugins: built-ins, third-party entry points, the allowlist, validation."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from ctxmgr import plugins
from ctxmgr.hookspecs import hookimpl
from ctxmgr.manager import ContextManager
from ctxmgr.messages import Message
from ctxmgr.plugins import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    LOAD_PLUGINS_ENV,
    get_strategy_types,
    load_plugins,
    new_plugin_manager,
)
from ctxmgr.strategy import Strategy
from ctxmgr.testing import chat_history

BUILTIN = {
    "loop_guard": "LoopGuard",
    "offload": "Offload",
    "pin_and_slide": "PinAndSlide",
    "relevance": "RelevanceEviction",
    "scratchpad": "ScratchpadNotes",
    "summarize": "Summarize",
    "system_replay": "SystemReplay",
    "tool_pair_safe": "ToolPairSafe",
}

FIXTURE = Path(__file__).parent / "fixtures" / "third_party_strategy"
THIRD_PARTY_MODULE = "ctxmgr_keepword"


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test with the default allowlist and leave the process registry as built-ins."""
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    yield
    monkeypatch.undo()
    sys.modules.pop(THIRD_PARTY_MODULE, None)
    importlib.invalidate_caches()
    load_plugins(reload=True)


# -- built-ins --------------------------------------------------------------------------------


def test_builtin_strategy_types() -> None:
    """get_strategy_types() maps the built-in names to their classes, sorted by name."""
    types_ = get_strategy_types()
    assert {name: cls.__qualname__ for name, cls in types_.items()} == BUILTIN
    assert sorted(types_) == list(types_)
    assert all(issubclass(cls, Strategy) and cls.name == n for n, cls in types_.items())


def test_default_plugins_are_the_builtin_modules() -> None:
    """DEFAULT_PLUGINS lists the built-in strategy modules under ctxmgr.strategies."""
    assert DEFAULT_PLUGINS == (
        "ctxmgr.strategies.tool_pair_safe",
        "ctxmgr.strategies.pin_and_slide",
        "ctxmgr.strategies.relevance",
        "ctxmgr.strategies.summarize",
        "ctxmgr.strategies.system_replay",
        "ctxmgr.strategies.scratchpad",
        "ctxmgr.strategies.offload",
        "ctxmgr.strategies.loop_guard",
    )
    modules = {get_strategy_types()[name].__module__ for name in BUILTIN}
    assert set(DEFAULT_PLUGINS) == modules


def test_load_plugins_is_idempotent() -> None:
    """load_plugins() returns the same manager until reload=True builds a new one."""
    first = load_plugins()
    assert first is load_plugins()
    again = load_plugins(reload=True)
    assert first is not again
    assert again is load_plugins()
    assert set(DEFAULT_PLUGINS) <= {name for name, _ in again.list_name_plugin()}


def test_get_strategy_types_returns_a_copy() -> None:
    """Mutating the returned dict does not change the registry."""
    get_strategy_types().pop("relevance")
    assert "relevance" in get_strategy_types()


def test_entry_point_group_name() -> None:
    """Third-party strategies register through the 'ctxmgr' entry-point group."""
    assert ENTRY_POINT_GROUP == "ctxmgr"


# -- a third-party strategy package -------------------------------------------------------------


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the fixture distribution into a fresh directory (offline, no build isolation).

    The source is copied first so that the in-tree build leaves nothing in the repository.
    """
    root = tmp_path_factory.mktemp("third_party")
    src = root / "src"
    shutil.copytree(FIXTURE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / f"{THIRD_PARTY_MODULE}.py").is_file()
    return site


@pytest.fixture
def third_party(third_party_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the installed fixture package on sys.path (undone by _restore_registry)."""
    monkeypatch.syspath_prepend(str(third_party_site))
    importlib.invalidate_caches()
    return third_party_site


def test_third_party_strategy_is_listed_after_reload(third_party: Path) -> None:
    """An installed package in the 'ctxmgr' group adds its strategy on reload."""
    load_plugins(reload=True)
    types_ = get_strategy_types()
    assert {*BUILTIN, "keep_word"} == set(types_)
    assert types_["keep_word"].__module__ == THIRD_PARTY_MODULE


def test_third_party_strategy_used_from_config_file(third_party: Path, tmp_path: Path) -> None:
    """A config file naming the third-party strategy builds a manager where it pins messages."""
    load_plugins(reload=True)
    config = tmp_path / "ctxmgr.toml"
    config.write_text(
        "reserve_output_tokens = 0\n"
        "[[strategies]]\n"
        'name = "pin_and_slide"\n'
        "pin_first_user = false\n"
        "[[strategies]]\n"
        'name = "keep_word"\n'
        'word = "KEEP"\n'
    )
    history = chat_history(30)
    marked = Message.user("KEEP this: the door code is 4711. " + "Remember it well. " * 15)
    history.insert(3, marked)
    mgr = ContextManager.from_config(config, max_context_tokens=800)
    assert [s.name for s in mgr.strategies] == ["pin_and_slide", "keep_word"]
    fitted, report = mgr.fit(history)
    assert report.compacted
    assert marked in fitted
    assert ((marked.id,), "contains KEEP") in [(r.ids, r.reason) for r in report.pinned]
    # its neighbours of the same age were evicted: the pin, not luck, kept it
    assert history[2] not in fitted
    assert history[4] not in fitted

    # control: without the third-party strategy the marked message is evicted
    plain = ContextManager.from_config(
        {"strategies": [{"name": "pin_and_slide", "pin_first_user": False}]},
        max_context_tokens=800,
        reserve_output_tokens=0,
    )
    assert marked not in plain.fit(history).messages


def test_registry_is_restored_after_removing_the_package(
    third_party_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the package leaves sys.path, reload=True forgets its strategy."""
    with monkeypatch.context() as mp:
        mp.syspath_prepend(str(third_party_site))
        load_plugins(reload=True)
        assert "keep_word" in get_strategy_types()
    importlib.invalidate_caches()
    load_plugins(reload=True)
    assert set(BUILTIN) == set(get_strategy_types())


def test_empty_allowlist_loads_no_third_party_plugin(
    third_party: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CTXMGR_LOAD_PLUGINS='' loads only the built-ins even when a plugin is installed."""
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    load_plugins(reload=True)
    assert set(BUILTIN) == set(get_strategy_types())


def test_allowlist_naming_the_plugin_loads_it(
    third_party: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CTXMGR_LOAD_PLUGINS naming the entry point loads it; another name does not."""
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "other, keep_word")
    load_plugins(reload=True)
    assert "keep_word" in get_strategy_types()
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "other")
    load_plugins(reload=True)
    assert "keep_word" not in get_strategy_types()


# -- validation ------------------------------------------------------------------------------


class _Misspelt:
    @hookimpl
    def ctxmgr_scroe(self, window: Any) -> list[float]:
        return []


def test_misspelt_hookimpl_fails_check_pending() -> None:
    """A hookimpl for a hook that does not exist fails loudly at check_pending()."""
    pm = new_plugin_manager()
    pm.register(_Misspelt(), name="misspelt")
    with pytest.raises(pluggy.PluginValidationError, match="ctxmgr_scroe"):
        pm.check_pending()


def test_correct_hookimpls_pass_check_pending() -> None:
    """Every built-in strategy instance registers on a fresh manager and passes check_pending."""
    pm = new_plugin_manager()
    for name, cls in get_strategy_types().items():
        pm.register(cls(), name=name)
    pm.check_pending()
    assert set(BUILTIN) == {name for name, _ in pm.list_name_plugin()}


def test_hookimpl_with_unknown_argument_is_rejected_at_register() -> None:
    """A hookimpl asking for an argument the spec does not have is rejected at register()."""

    class BadArgs:
        @hookimpl
        def ctxmgr_score(self, window: Any, budget: Any) -> None:
            return None

    pm = new_plugin_manager()
    with pytest.raises(pluggy.PluginValidationError, match="budget"):
        pm.register(BadArgs())


def _plugin_module(name: str, register_fn: Callable[[Callable[[type[Any]], None]], None]) -> Any:
    module = types.ModuleType(name)
    module.ctxmgr_register_strategies = hookimpl(register_fn)  # type: ignore[attr-defined]
    return module


def test_misspelt_hook_in_a_plugin_module_fails_load_plugins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """load_plugins raises PluginValidationError for a misspelt hook and keeps the old registry."""
    module = types.ModuleType("ctxmgr_test_misspelt")
    module.ctxmgr_register_strategys = hookimpl(lambda register: None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, module.__name__))
    before = get_strategy_types()
    with pytest.raises(pluggy.PluginValidationError, match="ctxmgr_register_strategys"):
        load_plugins(reload=True)
    assert before == get_strategy_types()


def test_duplicate_strategy_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two plugins registering the same strategy name raise ConfigError naming both modules."""
    from ctxmgr.errors import ConfigError

    class Impostor(Strategy):
        name = "relevance"

    module = _plugin_module("ctxmgr_test_dup", lambda register: register(Impostor))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, module.__name__))
    with pytest.raises(ConfigError, match="'relevance' registered twice"):
        load_plugins(reload=True)


def test_strategy_without_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a strategy class with an empty name raises ConfigError."""
    from ctxmgr.errors import ConfigError

    class Nameless(Strategy):
        pass

    module = _plugin_module("ctxmgr_test_nameless", lambda register: register(Nameless))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, module.__name__))
    with pytest.raises(ConfigError, match="Nameless"):
        load_plugins(reload=True)
