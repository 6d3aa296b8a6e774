"""Loading strategy types: built-ins, the ``ctxmgr`` entry-point group, and the allowlist.

Pattern from simonw/llm ``llm/plugins.py`` and datasette ``plugins.py``: one idempotent
loader, built-ins listed in :data:`DEFAULT_PLUGINS`, third parties through entry points,
``pm.check_pending()`` so a misspelt hook implementation fails loudly, and an allowlist
environment variable :data:`LOAD_PLUGINS_ENV`.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

import pluggy

from ctxmgr import hookspecs
from ctxmgr.errors import ConfigError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "get_strategy_types",
    "load_plugins",
    "new_plugin_manager",
]

DEFAULT_PLUGINS: tuple[str, ...] = (
    "ctxmgr.strategies.tool_pair_safe",
    "ctxmgr.strategies.pin_and_slide",
    "ctxmgr.strategies.relevance",
    "ctxmgr.strategies.summarize",
    "ctxmgr.strategies.system_replay",
    "ctxmgr.strategies.scratchpad",
    "ctxmgr.strategies.offload",
    "ctxmgr.strategies.loop_guard",
)
ENTRY_POINT_GROUP = "ctxmgr"
#: Comma-separated entry-point names to load; unset loads all, empty string loads none.
LOAD_PLUGINS_ENV = "CTXMGR_LOAD_PLUGINS"

_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_types: dict[str, type[Any]] = {}


def new_plugin_manager() -> pluggy.PluginManager:
    """Return a fresh PluginManager with the ctxmgr hookspecs added."""
    pm = pluggy.PluginManager("ctxmgr")
    pm.add_hookspecs(hookspecs)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow = os.environ.get(LOAD_PLUGINS_ENV)
    if allow is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    for name in (n.strip() for n in allow.split(",")):
        if name:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)


def load_plugins(*, reload: bool = False) -> pluggy.PluginManager:
    """Load built-in and third-party strategy plugins once (idempotent, thread-safe).

    Args:
        reload: forget what was loaded and load again (tests, after installing a plugin).

    Returns:
        The process-wide plugin manager for strategy *types*.

    Raises:
        ConfigError: two plugins register the same strategy name.
        pluggy.PluginValidationError: a plugin implements a hook that does not exist.
    """
    global _pm
    with _lock:
        if _pm is not None and not reload:
            return _pm
        pm = new_plugin_manager()
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
        _load_entry_points(pm)
        pm.check_pending()
        types: dict[str, type[Any]] = {}

        def register(cls: type[Any]) -> None:
            name = getattr(cls, "name", "")
            if not name:
                raise ConfigError(f"strategy class {cls.__qualname__} has no 'name'")
            if name in types and types[name] is not cls:
                raise ConfigError(
                    f"strategy name {name!r} registered twice "
                    f"({types[name].__module__} and {cls.__module__})"
                )
            types[name] = cls

        pm.hook.ctxmgr_register_strategies(register=register)
        _types.clear()
        _types.update(types)
        _pm = pm
        return pm


def get_strategy_types() -> dict[str, type[Any]]:
    """Return ``{config name: Strategy subclass}`` for every installed strategy."""
    load_plugins()
    return dict(sorted(_types.items()))
