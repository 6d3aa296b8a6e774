"""Tests for packaging: the wheel holds one top-level package, ``ctxmgr``, and its data.

The wheel is built offline (no build isolation, no index) from a copy of the sources in a
temporary directory, so the build leaves no ``build/`` or ``*.egg-info`` in the checkout.
This test runs everywhere, CI included (a few seconds); it is never skipped.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "ctxmgr", "strategies", "adapters")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """Build the wheel from a copy of the repository sources; return it opened."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = root / "dist"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(out.glob("ctxmgr_llm-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as opened:
        yield opened


def _names(wheel: zipfile.ZipFile) -> set[str]:
    return set(wheel.namelist())


def _dist_info(wheel: zipfile.ZipFile, filename: str) -> str:
    matches = [n for n in wheel.namelist() if n.endswith(f".dist-info/{filename}")]
    assert len(matches) == 1, matches
    return wheel.read(matches[0]).decode("utf-8")


def test_only_top_level_package_is_ctxmgr(wheel: zipfile.ZipFile) -> None:
    """The wheel's only top-level package is ctxmgr: no top-level adapters or strategies."""
    tops = {
        n.split("/", 1)[0] for n in _names(wheel) if not n.split("/", 1)[0].endswith(".dist-info")
    }
    assert {"ctxmgr"} == tops
    assert _dist_info(wheel, "top_level.txt").strip() == "ctxmgr"


@pytest.mark.parametrize(
    "path",
    [
        "ctxmgr/__init__.py",
        "ctxmgr/py.typed",
        "ctxmgr/presets/agent.toml",
        "ctxmgr/presets/fifo.toml",
        "ctxmgr/presets/relevance.toml",
        "ctxmgr/presets/summary.toml",
        "ctxmgr/strategies/__init__.py",
        "ctxmgr/strategies/relevance.py",
        "ctxmgr/strategies/tool_pair_safe.py",
        "ctxmgr/adapters/__init__.py",
        "ctxmgr/adapters/langchain.py",
        "ctxmgr/adapters/llamaindex.py",
        "ctxmgr/adapters/autogen.py",
        "ctxmgr/bench/__init__.py",
    ],
)
def test_wheel_contains(wheel: zipfile.ZipFile, path: str) -> None:
    """Strategies and adapters live under ctxmgr/, with py.typed and the presets."""
    assert path in _names(wheel)


def test_every_strategy_module_is_packaged(wheel: zipfile.ZipFile) -> None:
    """Every module in strategies/ is shipped as ctxmgr/strategies/<module>."""
    expected = {f"ctxmgr/strategies/{p.name}" for p in (REPO / "strategies").glob("*.py")}
    assert expected <= _names(wheel)


def test_no_tests_or_caches_in_wheel(wheel: zipfile.ZipFile) -> None:
    """The wheel ships no tests, bytecode caches or egg-info."""
    bad = sorted(
        n for n in _names(wheel) if n.startswith("tests/") or "__pycache__" in n or ".egg-info" in n
    )
    assert bad == []


def test_console_script_is_declared(wheel: zipfile.ZipFile) -> None:
    """The wheel declares the `ctxmgr` console script pointing at ctxmgr.cli:main."""
    parser = configparser.ConfigParser()
    parser.read_string(_dist_info(wheel, "entry_points.txt"))
    assert parser["console_scripts"]["ctxmgr"] == "ctxmgr.cli:main"


def test_metadata_names_the_distribution(wheel: zipfile.ZipFile) -> None:
    """METADATA names the ctxmgr-llm distribution and requires Python >= 3.10.

    ``ctxmgr`` on PyPI is an unrelated project, so the distribution is ``ctxmgr-llm``
    (import name ``ctxmgr``), and the ``all`` extra refers to it by that name.
    """
    metadata = _dist_info(wheel, "METADATA")
    assert "Name: ctxmgr-llm" in metadata.splitlines()
    (all_line,) = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ctxmgr-llm[") and line.endswith('extra == "all"')
    ]
    extras = set(all_line.split("[", 1)[1].split("]", 1)[0].split(","))
    assert {"autogen", "langchain", "llamaindex"} <= extras
    assert "Requires-Python: >=3.10" in metadata.splitlines()
