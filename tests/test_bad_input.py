"""Every bad input at the public boundary is one clear CtxmgrError naming the place (#12).

Table-driven: each case gives the call, the exception type and a substring the message
must contain (the argument, message index, field or key). CLI cases run the console
script's ``main`` and assert one ``error:`` line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctxmgr import (
    ConfigError,
    ContentPart,
    ContextManager,
    CtxmgrError,
    InvalidHistoryError,
    InvalidStateError,
    Message,
    ToolCall,
    from_openai,
    load_config,
    messages_from_openai,
)
from ctxmgr.cli import main

# ---------------------------------------------------------------------------------- Message
# untyped aliases: these calls are wrong on purpose
_M: Any = Message
_T: Any = ToolCall
_C: Any = ContentPart
MESSAGE_CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("content int", lambda: _M("user", 5), "Message.content"),
    ("content dict", lambda: _M("user", {"a": 1}), "Message.content"),
    ("content list of dicts", lambda: _M("user", [{"type": "text"}]), "messages_from_openai"),
    ("content list of str", lambda: _M("user", ["a", "b"]), "Message.content"),
    ("content bytes", lambda: _M("user", b"x"), "Message.content"),
    ("content None", lambda: _M("user", None), "Message.content"),
    ("name int", lambda: _M("user", "x", name=12), "Message.name"),
    ("name list", lambda: _M("user", "x", name=["a"]), "Message.name"),
    ("tool_call_id int", lambda: _M.tool("x", 5), "Message.tool_call_id"),
    ("tool_call_id dict", lambda: _M.tool("x", {"id": "c"}), "Message.tool_call_id"),
    ("pinned 'false'", lambda: _M.user("x", pinned="false"), "Message.pinned"),
    ("pinned 1", lambda: _M.user("x", pinned=1), "Message.pinned"),
    ("pinned None", lambda: _M.user("x", pinned=None), "Message.pinned"),
    ("id int", lambda: _M.user("x", id=7), "Message.id"),
    ("metadata list", lambda: _M.user("x", metadata=[("a", 1)]), "Message.metadata"),
    ("role unknown", lambda: _M("robot", "x"), "Message.role"),
    ("role None", lambda: _M(None, "x"), "Message.role"),
    ("tool_calls dicts", lambda: _M("assistant", "", [{"id": "c"}]), "Message.tool_calls"),
    ("tool_calls str", lambda: _M("assistant", "", "call"), "Message.tool_calls"),
    ("ToolCall name None", lambda: _T("c1", None), "ToolCall.name"),
    ("ToolCall name empty", lambda: _T("c1", ""), "empty name"),
    ("ToolCall id None", lambda: _T(None, "f"), "ToolCall.id"),
    ("ToolCall id int", lambda: _T(3, "f"), "ToolCall.id"),
    ("ToolCall arguments dict", lambda: _T("c", "f", {"a": 1}), "ToolCall.arguments"),
    ("ContentPart type None", lambda: _C(None), "ContentPart"),
    ("ContentPart text int", lambda: _C("text", 5), "ContentPart"),
    ("ContentPart data list", lambda: _C("image_url", "", [1]), "ContentPart.data"),
]


@pytest.mark.parametrize(
    ("case", "build", "where"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES]
)
def test_message_fields(case: str, build: Callable[[], Any], where: str) -> None:
    """A wrongly typed Message/ToolCall/ContentPart field is rejected, naming the field."""
    with pytest.raises(InvalidHistoryError) as info:
        build()
    assert where in str(info.value)


# ---------------------------------------------------------------------------------- fit args
GOOD = Message.user("hello")
FIT_CASES: list[tuple[str, Any, dict[str, Any], str]] = [
    ("a string", "hello", {}, "argument 'messages'"),
    ("None", None, {}, "argument 'messages'"),
    ("an int", 42, {}, "argument 'messages'"),
    ("bytes", b"hello", {}, "argument 'messages'"),
    ("one OpenAI dict", {"role": "user", "content": "x"}, {}, "messages_from_openai"),
    ("a set", {GOOD}, {}, "argument 'messages'"),
    ("a generator", (m for m in [GOOD]), {}, "argument 'messages'"),
    ("OpenAI dicts", [{"role": "user", "content": "x"}], {}, "messages_from_openai"),
    ("dict at index 1", [GOOD, {"role": "user", "content": "x"}], {}, "message 1"),
    ("None at index 1", [GOOD, None], {}, "message 1"),
    ("str at index 2", [GOOD, GOOD, "text"], {}, "message 2"),
    ("int at index 0", [5], {}, "message 0"),
    ("query int", [GOOD], {"query": 5}, "argument 'query'"),
    ("query list", [GOOD], {"query": ["a"]}, "argument 'query'"),
]


@pytest.mark.parametrize(("case", "arg", "kw", "where"), FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_arguments(case: str, arg: Any, kw: dict[str, Any], where: str) -> None:
    """fit() rejects what is not a list of Message with the argument and index named."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000)
    with pytest.raises(InvalidHistoryError) as info:
        mgr.fit(arg, **kw)
    assert where in str(info.value)
    out, report = mgr.fit([GOOD])  # the failed fit left nothing behind
    assert out == [GOOD] and report.turn == 1


@pytest.mark.parametrize(
    ("case", "arg", "kw", "where"), FIT_CASES[:4] + FIT_CASES[7:10], ids=lambda c: str(c)[:30]
)
def test_afit_arguments(case: str, arg: Any, kw: dict[str, Any], where: str) -> None:
    """afit() validates the same way."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000)
    with pytest.raises(InvalidHistoryError) as info:
        asyncio.run(mgr.afit(arg, **kw))
    assert where in str(info.value)


def test_bad_item_after_a_good_fit_names_its_index() -> None:
    """Only new items are checked on the incremental path, and the index is the real one."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000)
    history = [Message.system("s"), GOOD]
    mgr.fit(history)
    with pytest.raises(InvalidHistoryError, match="message 2"):
        mgr.fit([*history, {"role": "user", "content": "x"}])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------- converters
def _openai(bad: Any) -> list[Any]:
    return [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, bad]


CONVERTER_CASES: list[tuple[str, Any, str]] = [
    ("item is a str", "hello", "message 2"),
    ("item is None", None, "message 2"),
    ("item is an int", 5, "message 2"),
    ("missing role", {"content": "x"}, "missing 'role'"),
    ("unknown role", {"role": "robot", "content": "x"}, "unknown role"),
    ("role int", {"role": 5, "content": "x"}, "unknown role"),
    ("content int", {"role": "user", "content": 5}, "field 'content'"),
    ("content dict", {"role": "user", "content": {"a": 1}}, "field 'content'"),
    ("content part int", {"role": "user", "content": [5]}, "content[0]"),
    ("content part no type", {"role": "user", "content": [{"text": "x"}]}, "content[0]"),
    ("content part type int", {"role": "user", "content": [{"type": 1}]}, "content[0]"),
    (
        "part text int",
        {"role": "user", "content": [{"type": "text", "text": 5}]},
        "content[0].text",
    ),
    ("tool_calls str", {"role": "assistant", "tool_calls": "x"}, "field 'tool_calls'"),
    ("tool_calls dict", {"role": "assistant", "tool_calls": {"id": "c"}}, "field 'tool_calls'"),
    ("tool call int", {"role": "assistant", "tool_calls": [5]}, "tool_calls[0]"),
    ("tool call no function", {"role": "assistant", "tool_calls": [{"id": "c"}]}, "tool_calls[0]"),
    (
        "tool call id int",
        {"role": "assistant", "tool_calls": [{"id": 5, "function": {"name": "f"}}]},
        "tool_calls[0].id",
    ),
    (
        "tool name int",
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": 5}}]},
        "tool_calls[0].function.name",
    ),
    ("tool_call_id int", {"role": "tool", "tool_call_id": 5, "content": "x"}, "'tool_call_id'"),
    ("name int", {"role": "user", "content": "x", "name": 12}, "'name'"),
    ("pinned 'false'", {"role": "user", "content": "x", "pinned": "false"}, "'pinned'"),
    ("pinned 1", {"role": "user", "content": "x", "pinned": 1}, "'pinned'"),
]


@pytest.mark.parametrize(
    ("case", "bad", "where"), CONVERTER_CASES, ids=[c[0] for c in CONVERTER_CASES]
)
def test_converters(case: str, bad: Any, where: str) -> None:
    """messages_from_openai names the message index and the field."""
    with pytest.raises(InvalidHistoryError) as info:
        messages_from_openai(_openai(bad))
    text = str(info.value)
    assert where in text
    assert text.startswith("message 2:")
    if isinstance(bad, dict):
        with pytest.raises(InvalidHistoryError, match="message 7"):
            from_openai(bad, index=7)


@pytest.mark.parametrize("arg", ["text", None, 5, {"role": "user", "content": "x"}])
def test_messages_from_openai_argument(arg: Any) -> None:
    """The whole argument must be a list of dicts."""
    with pytest.raises(InvalidHistoryError, match="takes a list of OpenAI message dicts"):
        messages_from_openai(arg)


# ---------------------------------------------------------------------------------- load_state
def _state() -> dict[str, Any]:
    mgr = ContextManager.from_config("fifo", max_context_tokens=200, reserve_output_tokens=20)
    mgr.fit([Message.system("s")] + [Message.user(f"question {i} " * 8) for i in range(12)])
    mgr.scratchpad  # noqa: B018 - the fifo preset has no scratchpad; the state has notes below
    data = mgr.state.to_dict()
    data["notes"] = [{"key": "k", "facts": ["f"], "pointers": ["p"], "turn": 1}]
    assert data["archive"], "the fixture must have archived messages"
    return data


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(data: dict[str, Any]) -> Any:
        target: Any = data
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return data

    return edit


_DELETE = object()
STATE_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("not a mapping", lambda d: [d], "expected a mapping"),
    ("a string", lambda d: json.dumps(d), "expected a mapping"),
    ("version 2", _set("version", 2), "version"),
    ("version str", _set("version", "1"), "version"),
    ("summary int", _set("summary", 5), "summary"),
    ("summary_covers str", _set("summary_covers", "m-1"), "summary_covers"),
    ("summary_covers int item", _set("summary_covers", [1]), "summary_covers[0]"),
    ("notes dict", _set("notes", {}), "notes"),
    ("note int", _set("notes", [5]), "notes[0]"),
    ("note key int", _set("notes[0].key", 5), "notes[0].key"),
    ("note facts str", _set("notes[0].facts", "x"), "notes[0].facts"),
    ("note fact int", _set("notes[0].facts", [1]), "notes[0].facts[0]"),
    ("note pointers int", _set("notes[0].pointers", 3), "notes[0].pointers"),
    ("note turn str", _set("notes[0].turn", "1"), "notes[0].turn"),
    ("turn str", _set("turn", "3"), "turn"),
    ("turn negative", _set("turn", -1), "turn"),
    ("turn bool", _set("turn", True), "turn"),
    ("archive dict", _set("archive", {}), "archive"),
    ("archive item int", _set("archive", [5]), "archive[0]"),
    ("archive message int", _set("archive[0].message", 5), "archive[0].message"),
    ("archive message no role", _set("archive[0].message.role", _DELETE), "archive[0].message"),
    ("archive content int", _set("archive[0].message.content", 5), "archive[0].message"),
    (
        "archive metadata list",
        _set("archive[0].message.metadata", [1]),
        "archive[0].message.metadata",
    ),
    ("archive pinned str", _set("archive[0].message.pinned", "yes"), "archive[0].message"),
    ("archive reason missing", _set("archive[0].reason", _DELETE), "archive[0].reason"),
    ("archive turn str", _set("archive[0].turn", "x"), "archive[0].turn"),
    ("archive strategy int", _set("archive[0].strategy", 5), "archive[0].strategy"),
    ("last_fit int", _set("last_fit", 5), "last_fit"),
    ("extra list", _set("extra", []), "extra"),
]


@pytest.mark.parametrize(("case", "edit", "where"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_load_state(case: str, edit: Callable[[dict[str, Any]], Any], where: str) -> None:
    """load_state validates the whole state first; a bad one changes nothing."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000)
    mgr.fit([Message.system("s"), GOOD])
    before = mgr.state
    with pytest.raises(InvalidStateError) as info:
        mgr.load_state(edit(_state()))
    assert where in str(info.value)
    assert mgr.state is before
    assert mgr.fit([Message.system("s"), GOOD, Message.user("more")]).report.reason == "append-only"


def test_good_state_still_loads() -> None:
    """The fixture itself is valid: the failures above come from the edits."""
    mgr = ContextManager.from_config("fifo", max_context_tokens=1000)
    data = _state()
    mgr.load_state(data)
    assert mgr.state.to_dict()["archive"] == data["archive"]


# ---------------------------------------------------------------------------------- config
CONFIG_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("max_context_tokens True", {"max_context_tokens": True}, "max_context_tokens"),
    ("max_context_tokens str", {"max_context_tokens": "8000"}, "max_context_tokens"),
    ("max_context_tokens 0", {"max_context_tokens": 0}, "max_context_tokens"),
    ("max_context_tokens -1", {"max_context_tokens": -1}, "max_context_tokens"),
    ("max_context_tokens 10**30", {"max_context_tokens": 10**30}, "max_context_tokens"),
    ("max_context_tokens float", {"max_context_tokens": 1500.5}, "max_context_tokens"),
    (
        "reserve True",
        {"max_context_tokens": 1000, "reserve_output_tokens": True},
        "reserve_output_tokens",
    ),
    ("trigger True", {"max_context_tokens": 1000, "trigger": True}, "trigger"),
    ("trigger str", {"max_context_tokens": 1000, "trigger": "0.8"}, "trigger"),
    ("trigger 2", {"max_context_tokens": 1000, "trigger": 2}, "trigger"),
    ("target above trigger", {"max_context_tokens": 1000, "trigger": 0.5, "target": 0.9}, "target"),
    ("history_policy", {"max_context_tokens": 1000, "history_policy": "lenient"}, "history_policy"),
    ("protect_recent 0", {"max_context_tokens": 1000, "protect_recent": 0}, "protect_recent"),
    ("protect_recent True", {"max_context_tokens": 1000, "protect_recent": True}, "protect_recent"),
    ("tokenizer int", {"max_context_tokens": 1000, "tokenizer": 5}, "tokenizer"),
    ("strategies str", {"max_context_tokens": 1000, "strategies": "fifo"}, "strategies"),
    (
        "strategy name int",
        {"max_context_tokens": 1000, "strategies": [{"name": 5}]},
        "strategies[0].name",
    ),
    (
        "unknown strategy",
        {"max_context_tokens": 1000, "strategies": [{"name": "nope"}]},
        "strategies[0].name",
    ),
    ("unknown key", {"max_context_tokens": 1000, "max_tokens": 5}, "max_tokens"),
    (
        "context_windows value",
        {"max_context_tokens": 1000, "context_windows": {"m": "1"}},
        "context_windows",
    ),
    ("preset int", {"preset": 5}, "preset"),
    ("unknown preset", {"preset": "fast"}, "preset"),
    (
        "option bool for int",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "tool_pair_safe", "keep_recent_tool_results": True}],
        },
        "strategies[0].keep_recent_tool_results",
    ),
    (
        "option str for bool",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "tool_pair_safe", "truncate_to_fit": "no"}],
        },
        "strategies[0].truncate_to_fit",
    ),
    (
        "unknown option",
        {"max_context_tokens": 1000, "strategies": [{"name": "pin_and_slide", "pin_first": True}]},
        "strategies[0].pin_first",
    ),
    (
        "timeout 0",
        {"max_context_tokens": 1000, "strategies": [{"name": "summarize", "timeout_s": 0}]},
        "strategies[0].timeout_s",
    ),
    (
        "missing summarizer module",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "summarize", "summarizer": "nope_mod:f"}],
        },
        "summarize.summarizer",
    ),
    (
        "summarizer spec without colon",
        {"max_context_tokens": 1000, "strategies": [{"name": "summarize", "summarizer": "nope"}]},
        "summarize.summarizer",
    ),
    (
        "missing summarizer attribute",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "summarize", "summarizer": "json:nope"}],
        },
        "summarize.summarizer",
    ),
    (
        "missing embedder module",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "relevance", "embedder": "nope_mod:f"}],
        },
        "relevance.embedder",
    ),
    (
        "broken scratchpad regex",
        {
            "max_context_tokens": 1000,
            "strategies": [{"name": "scratchpad", "rules": [{"pattern": "(x"}]}],
        },
        "strategies[0].rules[0].pattern",
    ),
    (
        "scratchpad rule not a table",
        {"max_context_tokens": 1000, "strategies": [{"name": "scratchpad", "rules": ["x"]}]},
        "strategies[0].rules[0]",
    ),
]


@pytest.mark.parametrize(
    ("case", "config", "where"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_config_values(case: str, config: dict[str, Any], where: str) -> None:
    """Config values are strict (True is not 1) and every error names its key."""
    with pytest.raises(ConfigError) as info:
        ContextManager.from_config(config)
    assert where in str(info.value)


FILE_CASES: list[tuple[str, str, bytes | None, str]] = [
    ("binary toml", "c.toml", bytes(range(256)), "not UTF-8"),
    ("bad toml", "c.toml", b"max_context_tokens = = 3\n", "cannot parse"),
    ("bad yaml", "c.yaml", b"a: b\n  c: d\n", "line 2"),
    ("bad json", "c.json", b"{nope", "cannot parse"),
    ("deep json", "c.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("json list", "c.json", b"[1, 2]", "top level"),
    ("unknown extension", "c.ini", b"x=1", "unknown extension"),
    ("missing file", "missing.toml", None, "does not exist"),
    ("directory", "adir.toml", b"", "is a directory"),
]


@pytest.mark.parametrize(
    ("case", "name", "data", "where"), FILE_CASES, ids=[c[0] for c in FILE_CASES]
)
def test_config_files(tmp_path: Path, case: str, name: str, data: bytes | None, where: str) -> None:
    """Unreadable config files are a one-line ConfigError naming the file and the problem."""
    path = tmp_path / name
    if case == "directory":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert where in text
    assert "\n" not in text


# ---------------------------------------------------------------------------------- CLI
HISTORY = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]


def _cli_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "good": json.dumps(HISTORY),
        "name12": json.dumps([{"role": "user", "content": "x", "name": 12}]),
        "norole": json.dumps([{"content": "x"}, {"role": "user", "content": "y"}]),
        "deep": "[" * 100_000 + "]" * 100_000,
        "pinned": json.dumps([{"role": "user", "content": "x", "pinned": "false"}]),
    }
    out = {}
    for key, text in files.items():
        out[key] = tmp_path / f"{key}.json"
        out[key].write_text(text, encoding="utf-8")
    out["yaml"] = tmp_path / "bad.yaml"
    out["yaml"].write_text("a: b\n  c: d\n", encoding="utf-8")
    out["bin"] = tmp_path / "bin.toml"
    out["bin"].write_bytes(bytes(range(256)))
    return out


CLI_CASES: list[tuple[str, list[str], str]] = [
    ("max-tokens abc", ["fit", "{good}", "--max-tokens", "abc"], "--max-tokens"),
    ("max-tokens huge", ["fit", "{good}", "--max-tokens", str(10**30)], "max"),
    ("max-tokens negative", ["fit", "{good}", "--max-tokens", "-5"], "max_context_tokens"),
    ("reserve abc", ["fit", "{good}", "--reserve", "abc"], "--reserve"),
    (
        "reserve above window",
        ["fit", "{good}", "--max-tokens", "100", "--reserve", "200"],
        "reserve",
    ),
    ("index abc", ["fit", "{good}", "--index", "abc"], "--index"),
    ("index out of range", ["fit", "{good}", "--index", "5"], "--index"),
    ("missing file", ["fit", "{tmp}/nope.json"], "no such file"),
    ("directory", ["fit", "{tmp}"], "is a directory"),
    ("deep json", ["fit", "{deep}"], "nested too deeply"),
    ("name 12", ["fit", "{name12}"], "'name'"),
    ("message without role", ["fit", "{norole}"], "missing 'role'"),
    ("pinned string", ["fit", "{pinned}"], "'pinned'"),
    ("yaml syntax error", ["fit", "{good}", "--config", "{yaml}"], "line 2"),
    ("binary toml", ["fit", "{good}", "--config", "{bin}"], "not UTF-8"),
    ("config directory", ["fit", "{good}", "--config", "{tmp}"], "is a directory"),
    ("unknown preset", ["fit", "{good}", "--preset", "fast"], "preset"),
    ("preset and config", ["fit", "{good}", "--preset", "fifo", "--config", "{yaml}"], "not both"),
    ("unknown option", ["fit", "{good}", "--bogus"], "--bogus"),
    ("missing argument", ["fit"], "path"),
    ("unknown command", ["fitt"], "fitt"),
    ("bench bad budget", ["bench", "{good}", "--budget", "abc"], "--budget"),
]


@pytest.mark.parametrize(("case", "argv", "where"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, argv: list[str], where: str
) -> None:
    """The console script prints exactly one `error:` line on stderr and exits 1."""
    files = {k: str(v) for k, v in _cli_files(tmp_path).items()}
    args = [a.format(tmp=tmp_path, **files) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert where in lines[0]
    assert "Traceback" not in err


def test_cli_table_shows_bracketed_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup is not interpreted: `[ctxmgr: ...]` in content is printed as is."""
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            [
                {"role": "user", "content": "see [ctxmgr: no result] and [bold]x[/bold]"},
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as info:
        main(["fit", str(path), "--max-tokens", "1000"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "[ctxmgr: no result]" in out
    assert "[bold]x[/bold]" in out


def test_case_count() -> None:
    """The table holds at least 100 bad inputs (issue #12)."""
    total = (
        len(MESSAGE_CASES)
        + len(FIT_CASES)
        + len(CONVERTER_CASES)
        + len(STATE_CASES)
        + len(CONFIG_CASES)
        + len(FILE_CASES)
        + len(CLI_CASES)
    )
    assert total >= 100
    assert issubclass(InvalidStateError, CtxmgrError)
