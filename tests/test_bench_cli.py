"""The ``ctxmgr bench`` command: output files, documented keys, clean errors, real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxmgr.bench.cli import app, parse_budgets, run_bench
from ctxmgr.bench.plots import PLOT_FILES
from ctxmgr.bench.results import ROW_KEYS
from ctxmgr.errors import ConfigError

runner = CliRunner()


def opts(text: str) -> list[str]:
    """Split a string of command-line options on whitespace."""
    return text.split()


META_KEYS = {"command", "date", "versions", "counter", "budgets", "configs", "datasets"}


def write_openai_file(path: Path, conversations: int = 3, steps: int = 10) -> Path:
    """Write a small OpenAI-format file: system prompt, then user / tool call / result / reply."""
    convs = []
    for k in range(conversations):
        msgs: list[dict[str, object]] = [
            {"role": "system", "content": "You are a travel agent. Be brief."}
        ]
        for i in range(steps):
            cid = f"call_{k}_{i}"
            msgs += [
                {"role": "user", "content": f"Request {i}: status of flight HAT{100 + i}, please."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": cid,
                            "type": "function",
                            "function": {
                                "name": "get_flight",
                                "arguments": json.dumps({"flight": f"HAT{100 + i}"}),
                            },
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": cid,
                    "content": json.dumps({"flight": f"HAT{100 + i}", "status": "on time"}),
                },
                {"role": "assistant", "content": f"HAT{100 + i} is on time."},
            ]
        convs.append({"messages": msgs})
    path.write_text(json.dumps(convs))
    return path


def check_outputs(out: Path) -> list[dict[str, object]]:
    """Assert results.json/csv and the PNGs exist with the documented keys; return the rows."""
    payload = json.loads((out / "results.json").read_text())
    assert set(payload) == {"meta", "rows"}
    assert set(payload["meta"]) >= META_KEYS
    rows: list[dict[str, object]] = payload["rows"]
    assert rows and all(tuple(r) == ROW_KEYS for r in rows)
    with (out / "results.csv").open() as fh:
        reader = csv.DictReader(fh)
        flat = tuple(k for k in ROW_KEYS if k != "evidence_by_category")  # nested: JSON only
        assert tuple(reader.fieldnames or ()) == flat
        assert len(list(reader)) == len(rows)
    for name in PLOT_FILES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    return rows


def test_quick_run_on_openai_file(tmp_path: Path) -> None:
    """--quick on a synthetic file: 2 of 3 transcripts, one row per config x budget, 3 PNGs."""
    data = write_openai_file(tmp_path / "conv.json")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            str(data),
            "--out",
            str(out),
            *opts("--quick --preset fifo --peers none --budget 300,600 --jobs 1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Report: {out / 'results.json'}" in result.output
    rows = check_outputs(out)
    assert [(r["config"], r["kind"], r["dataset"], r["budget"]) for r in rows] == [
        ("fifo", "ctxmgr", "openai", 300),
        ("fifo", "ctxmgr", "openai", 600),
    ]
    for row in rows:
        assert row["transcripts"] == 2 and row["errors"] == 0
        assert row["turn_fits"] == 2 * 20  # 20 assistant messages per conversation
        assert row["evidence_recall_all"] is None and row["action_arg_recall"] is None
        assert row["system_retention"] == 1.0  # ctxmgr always keeps the system prompt
        assert row["budget_violations"] == 0 and row["tool_pair_violations"] == 0
        assert isinstance(row["cost_usd"], float) and isinstance(row["overhead_ms_p95"], float)
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["datasets"] == {"openai": 2} and meta["budgets"] == [300, 600]
    assert meta["counter"].startswith("tiktoken:")


def test_prices_option_picks_a_table_and_records_it(tmp_path: Path) -> None:
    """--prices claude-sonnet-4: meta names the table; the cached cost follows its rules.

    fifo at a budget that holds the whole conversation only appends, so after the first
    request (written at 1.25x) every request reads the previous one at 0.1x once it is
    1,024 tokens long: the cached cost differs from the uncached one as the table says.
    """
    data = write_openai_file(tmp_path / "conv.json", conversations=1, steps=40)
    rows = {}
    for name in ("gpt-4o-mini", "claude-sonnet-4"):
        out = tmp_path / name
        args = [str(data), "--out", str(out), *opts("--preset fifo --peers none --budget 8000")]
        result = runner.invoke(app, [*args, "--jobs", "1", "--prices", name])
        assert result.exit_code == 0, result.output
        payload = json.loads((out / "results.json").read_text())
        assert payload["meta"]["prices"]["name"] == name
        assert ("--prices claude-sonnet-4" in payload["meta"]["command"]) == (name != "gpt-4o-mini")
        rows[name] = payload["rows"][0]
    mini, sonnet = rows["gpt-4o-mini"], rows["claude-sonnet-4"]
    assert mini["tokens_mean"] == sonnet["tokens_mean"]  # same contexts, other prices
    assert sonnet["cost_usd"] == pytest.approx(mini["cost_usd"] * 3.0 / 0.15, rel=1e-4)
    assert sonnet["cost_cached_usd"] < 0.5 * sonnet["cost_usd"]  # reads at 0.1x dominate


def test_peer_rows_and_parallel_jobs(tmp_path: Path) -> None:
    """A peer runs beside a preset with 2 worker processes; rows say which kind each is."""
    data = write_openai_file(tmp_path / "conv.json", conversations=2, steps=6)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            str(data),
            "--out",
            str(out),
            *opts("--preset fifo --peers langchain.trim_messages --budget 400 --jobs 2"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = check_outputs(out)
    assert [(r["config"], r["kind"]) for r in rows] == [
        ("fifo", "ctxmgr"),
        ("langchain.trim_messages", "peer"),
    ]
    assert all(r["errors"] == 0 and r["transcripts"] == 2 for r in rows)


def test_bad_file_is_listed_and_the_run_goes_on(tmp_path: Path) -> None:
    """A missing and a malformed file are listed at the end; the good file is still replayed."""
    good = write_openai_file(tmp_path / "good.json", conversations=1, steps=3)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            str(good),
            str(bad),
            str(tmp_path / "missing.json"),
            "--out",
            str(out),
            *opts("--preset fifo --peers none --budget 500 --jobs 1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 transcript file(s) failed to load" in result.output
    assert "bad.json" in result.output and "missing.json" in result.output
    assert check_outputs(out)[0]["transcripts"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "2000,abc"], "error: --budget: expected positive integers"),
        (["--budget", "0"], "error: --budget: expected positive integers"),
        (["--preset", "nope"], "error:"),
        (["--peers", "nope"], "error: peers: unknown peer 'nope'"),
        (["--config", "missing.toml"], "error: --config: config file"),
        (["--jobs", "0"], "error: --jobs: must be >= 1"),
        (["--prices", "nope"], "error: --prices: unknown price table 'nope'"),
    ],
)
def test_errors_are_one_clean_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad options exit non-zero with one 'error: ...' line and no traceback."""
    data = write_openai_file(tmp_path / "conv.json", conversations=1, steps=2)
    result = runner.invoke(app, [str(data), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_no_transcripts_is_an_error(tmp_path: Path) -> None:
    """Only unreadable inputs: one error line naming the first failure, exit 1."""
    result = runner.invoke(app, [str(tmp_path / "missing.json"), "--peers", "none"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no transcripts to replay: ")
    assert "missing.json" in result.output


def test_parse_budgets() -> None:
    """Comma-separated positive integers, sorted and deduplicated; anything else raises."""
    assert parse_budgets("8000, 2000,4000,2000") == [2000, 4000, 8000]
    assert parse_budgets("1_000") == [1000]
    for bad in ("", "2000,", "-5", "4k", "1.5"):
        with pytest.raises(ConfigError):
            parse_budgets(bad)


@pytest.mark.data
def test_quick_bench_on_real_data(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quick default datasets (LoCoMo + tau-bench) with the four presets and one peer."""
    monkeypatch.setenv("CTXMGR_DATA_DIR", str(data_dir))
    out = tmp_path / "out"
    run = run_bench(
        peers="autogen.BufferedChatCompletionContext",
        budget="8000",
        out=out,
        jobs=2,
        quick=True,
        cv=2,
        progress=False,
    )
    rows = check_outputs(out)
    assert run.meta["datasets"] == {"locomo": 2, "tau-bench": 2}
    cv = run.meta["cv"]
    assert cv["folds"] == 2
    agent_folds = [r for r in cv["rows"] if r["config"] == "agent" and r["dataset"] == "locomo"]
    assert [(r["fold"], r["transcripts"]) for r in agent_folds] == [(0, 1), (1, 1)]
    assert all(0 <= r["prefix_stability"] <= 1 and 0 <= r["prefix_reuse"] <= 1 for r in agent_folds)
    agent = next(r for r in rows if r["config"] == "agent" and r["dataset"] == "locomo")
    assert sum(r["evidence_probes"] for r in agent_folds) == agent["evidence_probes"]
    assert (
        sum(c["probes"] for c in agent["evidence_by_category"].values()) == agent["evidence_probes"]
    )
    assert {r["config"] for r in rows} == {
        "fifo",
        "relevance",
        "summary",
        "agent",
        "autogen.BufferedChatCompletionContext",
    }
    for row in rows:
        assert row["errors"] == 0, row["first_error"]
        assert row["transcripts"] == 2
        if row["dataset"] == "locomo":
            assert row["evidence_probes"] and row["evidence_recall_all"] is not None
            assert row["answer_in_context"] is not None
            assert row["action_arg_recall"] is None and row["system_retention"] is None
        else:  # the first two tau-bench runs have no losable action value to score
            assert (row["action_arg_recall"] is None) == (row["action_values"] == 0)
            assert row["evidence_recall_all"] is None and row["system_retention"] is not None
        if row["kind"] == "ctxmgr":
            assert row["budget_violations"] == 0 and row["tool_pair_violations"] == 0
