"""Tests for ctxmgr.hookspecs: naming and documentation of every hook (as datasette does)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from ctxmgr import hookspecs
from ctxmgr.plugins import get_strategy_types

EXPECTED_HOOKS = {
    "ctxmgr_register_strategies",
    "ctxmgr_observe",
    "ctxmgr_wants_compaction",
    "ctxmgr_append",
    "ctxmgr_recall",
    "ctxmgr_pin",
    "ctxmgr_reserve",
    "ctxmgr_shrink",
    "ctxmgr_score",
    "ctxmgr_compact",
    "ctxmgr_inject",
    "ctxmgr_recall_block",
    "ctxmgr_arrive",
    "ctxmgr_report",
}


def _specs() -> dict[str, Callable[..., Any]]:
    """Every function in ctxmgr.hookspecs marked with the hookspec marker."""
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "ctxmgr_spec")
    }


SPECS = _specs()


def test_hookspec_set() -> None:
    """The module declares exactly the documented hooks."""
    assert set(SPECS) == EXPECTED_HOOKS


def test_every_hookspec_is_prefixed() -> None:
    """Every hookspec name starts with 'ctxmgr_'."""
    assert [name for name in SPECS if not name.startswith("ctxmgr_")] == []


def test_every_ctxmgr_function_is_a_hookspec() -> None:
    """Every ctxmgr_* function in the module is marked as a hookspec (none forgotten)."""
    functions = {n for n, f in vars(hookspecs).items() if inspect.isfunction(f)}
    assert sorted(n for n in functions if n.startswith("ctxmgr_") and n not in SPECS) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_documents_every_parameter(name: str) -> None:
    """Each hookspec has a docstring with a ':param name:' line for every argument."""
    fn = SPECS[name]
    doc = inspect.getdoc(fn) or ""
    assert doc.strip(), f"{name} has no docstring"
    params = list(inspect.signature(fn).parameters)
    assert params, f"{name} takes no arguments"
    missing = [p for p in params if not re.search(rf"^:param {p}:", doc, re.MULTILINE)]
    assert missing == [], f"{name} does not document {missing}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_documents_only_real_parameters(name: str) -> None:
    """No ':param x:' line names an argument the hookspec does not take."""
    fn = SPECS[name]
    documented = re.findall(r"^:param (\w+):", inspect.getdoc(fn) or "", re.MULTILINE)
    assert sorted(inspect.signature(fn).parameters) == sorted(documented)


RETURNING = sorted(
    name
    for name, fn in SPECS.items()
    if inspect.signature(fn).return_annotation not in (None, "None")
)


def test_hooks_with_results() -> None:
    """The hooks that return something are the documented ones."""
    assert RETURNING == [
        "ctxmgr_append",
        "ctxmgr_arrive",
        "ctxmgr_compact",
        "ctxmgr_inject",
        "ctxmgr_pin",
        "ctxmgr_recall",
        "ctxmgr_recall_block",
        "ctxmgr_reserve",
        "ctxmgr_score",
        "ctxmgr_wants_compaction",
    ]


@pytest.mark.parametrize("name", RETURNING)
def test_hookspec_with_a_result_documents_it(name: str) -> None:
    """A hookspec whose return annotation is not None documents ':return:'."""
    assert ":return:" in (inspect.getdoc(SPECS[name]) or "")


def test_first_result_hooks() -> None:
    """ctxmgr_wants_compaction and ctxmgr_recall_block stop at the first non-None result."""
    first = {name for name, fn in SPECS.items() if fn.ctxmgr_spec.get("firstresult")}  # type: ignore[attr-defined]
    assert {"ctxmgr_wants_compaction", "ctxmgr_recall_block"} == first


def test_builtin_hookimpls_name_existing_hooks_with_spec_arguments() -> None:
    """Every hookimpl of a built-in strategy names a hookspec and takes only its arguments."""
    problems = []
    for cls in get_strategy_types().values():
        for attr, fn in inspect.getmembers(cls, inspect.isfunction):
            if not hasattr(fn, "ctxmgr_impl"):
                continue
            if attr not in SPECS:
                problems.append(f"{cls.__name__}.{attr}: no such hook")
                continue
            args = [p for p in inspect.signature(fn).parameters if p != "self"]
            extra = set(args) - set(inspect.signature(SPECS[attr]).parameters)
            if extra:
                problems.append(f"{cls.__name__}.{attr}: unknown arguments {sorted(extra)}")
    assert problems == []
