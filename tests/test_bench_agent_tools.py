"""The SWE-agent replay of the agent-facing context tools (``ctxmgr.bench.agent_tools``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxmgr import Message
from ctxmgr.bench.agent_tools import CONFIGS, main, replay_run
from ctxmgr.bench.loaders import load_transcripts


@pytest.fixture
def runs(data_dir: Path) -> list[list[Message]]:
    paths = sorted((data_dir / "swe-agent").glob("*.traj"))
    return [t.messages for p in paths for t in load_transcripts(p)]


def test_raw_keeps_needed_outputs_and_offload_sends_fewer_tokens(
    runs: list[list[Message]],
) -> None:
    """Raw keeps every needed output whole; offload sends fewer tokens, all recallable."""
    raw = [replay_run(r, CONFIGS["raw"]) for r in runs]
    off = [replay_run(r, CONFIGS["offload"]) for r in runs]
    assert all(m.needed["cleared"] + m.needed["offloaded"] + m.needed["dropped"] == 0 for m in raw)
    assert sum(m.needed["whole"] for m in raw) > 0
    assert sum(m.tokens_sent for m in off) < sum(m.tokens_sent for m in raw)
    assert sum(m.needed["offloaded"] for m in off) > 0
    assert sum(m.recallable for m in off) == sum(
        sum(m.needed.values()) - m.needed["whole"] for m in off
    )
    assert all(0 < m.cost_cache < m.cost_no_cache for m in raw + off)
    assert [m.calls for m in raw] == [m.calls for m in off]


def test_main_prints_one_row_per_config(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints a Markdown table with every config."""
    assert main([str(data_dir / "swe-agent" / "function_calling_simple.traj")]) == 0
    out = capsys.readouterr().out
    for name in CONFIGS:
        assert f"| {name} |" in out
