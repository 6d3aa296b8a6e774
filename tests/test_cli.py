"""Tests for ctxmgr.cli: `fit` and `strategies`, and one-line errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ctxmgr.cli import app

BUILTIN = [
    "loop_guard",
    "offload",
    "pin_and_slide",
    "relevance",
    "scratchpad",
    "summarize",
    "system_replay",
    "tool_pair_safe",
]

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "France"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
    {"role": "assistant", "content": "Paris."},
]

REPORT_KEYS = {
    "tokens_before",
    "tokens_after",
    "effective_limit",
    "dropped",
    "cleared",
    "summarized",
    "injected",
}


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner with a wide terminal so tables are not folded."""
    return CliRunner(env={"COLUMNS": "200", "CTXMGR_TIKTOKEN_OFFLINE": "1"})


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _long_conversation(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
    for i in range(n):
        out.append({"role": "user", "content": f"Question {i}: " + "tell me more " * 20})
        out.append({"role": "assistant", "content": f"Answer {i}: " + "here is more " * 20})
    return out


def _assert_one_error_line(result: Any, *fragments: str) -> str:
    """The command failed with exit code 1 and printed one `error:` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- fit ----------------------------------------------------------------------------------


def test_fit_json_prints_messages_and_report(runner: CliRunner, tmp_path: Path) -> None:
    """`fit --json` prints one object: the fitted OpenAI messages and the report."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--json", "--max-tokens", "1000"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"messages", "report"} == set(payload)
    assert payload["messages"] == CONVERSATION
    report = payload["report"]
    assert set(report) >= REPORT_KEYS
    assert (report["effective_limit"], report["compacted"]) == (900, False)
    assert report["tokens_before"] == report["tokens_after"] > 0
    assert (
        report["dropped"],
        report["cleared"],
        report["summarized"],
        report["injected"],
    ) == ([], [], [], [])


def test_fit_json_report_shows_compaction(runner: CliRunner, tmp_path: Path) -> None:
    """With a small window the JSON report shows the compaction and fewer tokens after."""
    path = _write_json(tmp_path / "long.json", _long_conversation(30))
    result = runner.invoke(
        app, ["fit", str(path), "--json", "--max-tokens", "800", "--preset", "fifo"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    report = payload["report"]
    assert report["compacted"]
    assert report["tokens_after"] <= report["effective_limit"] < report["tokens_before"]
    assert report["dropped"]
    assert {"ids", "tokens", "reason", "strategy"} == set(report["dropped"][0])
    assert len(payload["messages"]) < 61
    assert payload["messages"][0] == {"role": "system", "content": "You are helpful."}


def test_fit_with_config_file(runner: CliRunner, tmp_path: Path) -> None:
    """`fit --config` reads a TOML config (window and reserve from the file)."""
    config = tmp_path / "c.toml"
    config.write_text(
        "max_context_tokens = 2000\n"
        "reserve_output_tokens = 100\n"
        '[[strategies]]\nname = "pin_and_slide"\n'
    )
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"]["effective_limit"] == 1900


def test_fit_index_selects_conversation_in_jsonl(runner: CliRunner, tmp_path: Path) -> None:
    """`--index` picks one conversation of a JSON Lines file (0-based)."""
    path = tmp_path / "many.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": "first conversation ALPHA"}]},
        {"messages": [{"role": "user", "content": "second conversation BRAVO"}]},
        {"messages": [{"role": "user", "content": "third conversation CHARLIE"}]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    for index, word in [(0, "ALPHA"), (1, "BRAVO"), (2, "CHARLIE")]:
        result = runner.invoke(
            app, ["fit", str(path), "--json", "--max-tokens", "1000", "--index", str(index)]
        )
        assert result.exit_code == 0, result.output
        messages = json.loads(result.stdout)["messages"]
        assert [f"{['first', 'second', 'third'][index]} conversation {word}"] == [
            m["content"] for m in messages
        ]


def test_fit_table_output(runner: CliRunner, tmp_path: Path) -> None:
    """Without --json, `fit` prints a table of the messages and the report line."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000"])
    assert result.exit_code == 0, result.output
    assert "What is the capital of France?" in result.stdout
    assert "lookup(" in result.stdout
    assert "ctxmgr fit turn 1:" in result.stdout


# -- fit errors -----------------------------------------------------------------------------


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    """A missing transcript file is one error line naming the file."""
    missing = tmp_path / "nope.json"
    result = runner.invoke(app, ["fit", str(missing), "--max-tokens", "1000"])
    _assert_one_error_line(result, "nope.json", "no such file")


def test_bad_preset(runner: CliRunner, tmp_path: Path) -> None:
    """An unknown preset is one error line listing the presets."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--preset", "bogus", "--max-tokens", "1000"])
    _assert_one_error_line(result, "bogus", "agent, fifo, relevance, summary")


def test_overflow_with_tiny_window(runner: CliRunner, tmp_path: Path) -> None:
    """A window smaller than the pinned content is one 'context overflow' error line."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "10"])
    _assert_one_error_line(result, "context overflow", "max_context_tokens=10")


def test_index_out_of_range(runner: CliRunner, tmp_path: Path) -> None:
    """--index beyond the file's conversations is one error line giving the count."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000", "--index", "3"])
    _assert_one_error_line(result, "--index 3 out of range", "holds 1")


def test_negative_index(runner: CliRunner, tmp_path: Path) -> None:
    """A negative --index is rejected like an index past the end."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000", "--index", "-1"])
    _assert_one_error_line(result, "out of range")


def test_broken_json_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    """A file with invalid JSON is one error line naming the line of the problem."""
    path = tmp_path / "broken.json"
    path.write_text('[{"role": "user", "content": "x"},\n{"role": "user" "content": "y"}]\n')
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000"])
    _assert_one_error_line(result, "broken.json", "line 2")


def test_broken_jsonl_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    """A JSON Lines file with a broken line is one error line naming that line."""
    path = tmp_path / "many.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n{"messages": [\n')
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000"])
    _assert_one_error_line(result, "line 2")


def test_no_window(runner: CliRunner, tmp_path: Path) -> None:
    """No --max-tokens and no --model is one error line naming max_context_tokens."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    result = runner.invoke(app, ["fit", str(path)])
    _assert_one_error_line(result, "max_context_tokens")


def test_preset_and_config_together(runner: CliRunner, tmp_path: Path) -> None:
    """Giving both --preset and --config is one error line."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    config = tmp_path / "c.toml"
    config.write_text("max_context_tokens = 1000\n")
    result = runner.invoke(app, ["fit", str(path), "--preset", "fifo", "--config", str(config)])
    _assert_one_error_line(result, "--preset or --config")


def test_bad_config_file(runner: CliRunner, tmp_path: Path) -> None:
    """A config naming an unknown strategy is one error line naming the key."""
    path = _write_json(tmp_path / "conv.json", CONVERSATION)
    config = tmp_path / "c.toml"
    config.write_text('max_context_tokens = 1000\n[[strategies]]\nname = "lru"\n')
    result = runner.invoke(app, ["fit", str(path), "--config", str(config)])
    _assert_one_error_line(result, "strategies[0].name")


def test_invalid_message_in_file(runner: CliRunner, tmp_path: Path) -> None:
    """A message with an unknown role is one error line (no traceback)."""
    path = _write_json(tmp_path / "conv.json", [{"role": "user", "content": "a"}, {"role": "x"}])
    result = runner.invoke(app, ["fit", str(path), "--max-tokens", "1000"])
    _assert_one_error_line(result, "'x'")


def test_strict_policy_violation(runner: CliRunner, tmp_path: Path) -> None:
    """An orphan tool result under history_policy strict is one error line naming the message."""
    path = _write_json(
        tmp_path / "conv.json",
        [
            {"role": "user", "content": "a"},
            {"role": "tool", "tool_call_id": "nope", "content": "r"},
        ],
    )
    config = tmp_path / "c.toml"
    config.write_text('max_context_tokens = 1000\nhistory_policy = "strict"\n')
    result = runner.invoke(app, ["fit", str(path), "--config", str(config)])
    _assert_one_error_line(result, "message 1")


# -- strategies ---------------------------------------------------------------------------------


def test_strategies_lists_the_builtins(runner: CliRunner) -> None:
    """`strategies` prints a table naming the six built-in strategies."""
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    for name in BUILTIN:
        assert name in result.stdout


def test_strategies_json(runner: CliRunner) -> None:
    """`strategies --json` prints a JSON list with name, class, module, summary and options."""
    result = runner.invoke(app, ["strategies", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == BUILTIN
    assert all({"name", "class", "module", "summary", "options"} == set(row) for row in rows)
    by_name = {row["name"]: row for row in rows}
    assert by_name["system_replay"]["options"]["every"]["default"] == 12
    assert by_name["relevance"]["options"]["embedder"] == {"default": None, "type": "str | None"}
    assert by_name["relevance"]["module"] == "ctxmgr.strategies.relevance"
    assert all(row["summary"] for row in rows)


def test_no_arguments_prints_help(runner: CliRunner) -> None:
    """Running the app without a command prints usage listing fit and strategies."""
    result = runner.invoke(app, [])
    assert "fit" in result.output
    assert "strategies" in result.output


def test_strategies_json_plain_types_are_readable(runner: CliRunner) -> None:
    """Option types of plain classes are rendered by name ('int'), like 'str | None'."""
    result = runner.invoke(app, ["strategies", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["system_replay"]["options"]["every"]["type"] == "int"
