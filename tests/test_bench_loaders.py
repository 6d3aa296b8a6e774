"""Tests for ctxmgr.bench.loaders: real public transcripts plus synthetic error cases."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ctxmgr.bench import loaders
from ctxmgr.bench.loaders import (
    FORMATS,
    Source,
    detect_format,
    load_many,
    load_transcripts,
    register_loader,
)
from ctxmgr.bench.transcript import Transcript
from ctxmgr.errors import TranscriptError
from ctxmgr.messages import Message

LOCOMO = "locomo/locomo10.json"
TAU = "tau-bench/gpt-4o-airline.json"


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_lines(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _assert_tool_pairs(messages: list[Message]) -> None:
    """Call ids are unique; every tool result answers a call issued earlier, only once."""
    issued: set[str] = set()
    answered: set[str] = set()
    for i, m in enumerate(messages):
        for c in m.tool_calls:
            assert c.id not in issued, f"message {i} re-issues call id {c.id}"
            issued.add(c.id)
        if m.role == "tool":
            assert m.tool_call_id in issued, f"message {i} answers unknown call"
            assert m.tool_call_id not in answered, f"message {i} answers a call twice"
            answered.add(m.tool_call_id)


def _assert_unique_ids(transcript: Transcript) -> None:
    ids = [m.id for m in transcript.messages]
    assert len(ids) == len(set(ids)), transcript.id


# --------------------------------------------------------------------------------------
# registry and detection
# --------------------------------------------------------------------------------------
def test_formats_lists_every_builtin() -> None:
    """FORMATS names the six built-in formats."""
    assert set(FORMATS) >= {"openai", "locomo", "tau-bench", "swe-agent", "toolbench", "langchain"}


@pytest.mark.data
@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (LOCOMO, "locomo"),
        (TAU, "tau-bench"),
        ("swe-agent/function_calling_simple.traj", "swe-agent"),
        ("toolbench/answer/G1_answer/10_ChatGPT_DFS_woFilter_w2.json", "toolbench"),
        ("toolbench/answer/G1_answer/69_ChatGPT_DFS_woFilter_w2.json", "toolbench"),
    ],
)
def test_detect_format_on_public_files(data_dir: Path, relpath: str, expected: str) -> None:
    """Each public file is detected as its format."""
    assert detect_format(data_dir / relpath) == expected


def test_unknown_shape_lists_formats(tmp_path: Path) -> None:
    """A JSON file of no known shape is an error that lists the known formats."""
    path = _write(tmp_path / "odd.json", {"hello": "world"})
    with pytest.raises(TranscriptError, match="unrecognised transcript format") as info:
        load_transcripts(path)
    assert all(name in str(info.value) for name in FORMATS)
    assert info.value.path == str(path)


def test_unknown_format_name_is_an_error(tmp_path: Path) -> None:
    """An explicit format name that is not registered is an error listing FORMATS."""
    path = _write(tmp_path / "a.json", [{"role": "user", "content": "hi"}])
    with pytest.raises(TranscriptError, match=r"unknown format 'nope' \(known formats: openai"):
        load_transcripts(path, format="nope")


def test_missing_file_and_directory_are_errors(tmp_path: Path) -> None:
    """load_transcripts rejects a missing path and a directory with a clear message."""
    with pytest.raises(TranscriptError, match="no such file"):
        load_transcripts(tmp_path / "missing.json")
    with pytest.raises(TranscriptError, match="is a directory"):
        load_transcripts(tmp_path)
    with pytest.raises(TranscriptError, match="no such file"):
        detect_format(tmp_path / "missing.json")


def test_register_loader_as_decorator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered format is detected by content and by extension, and listed in FORMATS."""
    monkeypatch.setattr(loaders, "_REGISTRY", dict(loaders._REGISTRY))
    monkeypatch.setattr(loaders, "FORMATS", loaders.FORMATS)

    @register_loader(
        "turns",
        detect=lambda src: isinstance(src.data, dict) and "turns" in src.data,
        extensions=[".turns"],
    )
    def load_turns(src: Source) -> list[Transcript]:
        msgs = [Message.user(t) for t in src.data["turns"]]
        return [Transcript("turns/x", "turns", str(src.path), msgs)]

    assert "turns" in loaders.FORMATS
    by_content = _write(tmp_path / "a.json", {"turns": ["a", "b"]})
    by_ext = _write(tmp_path / "b.turns", {"turns": ["c"]})
    assert detect_format(by_content) == "turns"
    assert detect_format(by_ext) == "turns"
    assert [m.text for m in load_transcripts(by_content)[0].messages] == ["a", "b"]
    transcripts, failures = load_many([tmp_path])
    assert failures == []
    assert len(transcripts) == 2


def test_register_loader_call_form_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calling register_loader with a load function returns it and re-registering replaces."""
    monkeypatch.setattr(loaders, "_REGISTRY", dict(loaders._REGISTRY))
    monkeypatch.setattr(loaders, "FORMATS", loaders.FORMATS)

    def load(src: Source) -> list[Transcript]:
        return []

    assert register_loader("empty", None, load) is load
    assert register_loader("empty", None, load) is load
    assert loaders.FORMATS.count("empty") == 1


def test_loader_bug_becomes_transcript_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected KeyError inside a loader is reported as a TranscriptError for the file."""
    monkeypatch.setattr(loaders, "_REGISTRY", dict(loaders._REGISTRY))
    monkeypatch.setattr(loaders, "FORMATS", loaders.FORMATS)

    def broken(src: Source) -> list[Transcript]:
        return src.data["nope"]  # type: ignore[no-any-return]

    register_loader("broken", None, broken)
    path = _write(tmp_path / "a.json", {})
    with pytest.raises(TranscriptError, match="cannot load as 'broken': KeyError"):
        load_transcripts(path, format="broken")


# --------------------------------------------------------------------------------------
# LoCoMo
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def locomo(data_dir: Path) -> list[Transcript]:
    """The ten LoCoMo transcripts."""
    return load_transcripts(data_dir / LOCOMO)


@pytest.mark.data
def test_locomo_counts(locomo: list[Transcript]) -> None:
    """LoCoMo loads 10 transcripts and 1,986 QA probes, all of kind "qa"."""
    assert len(locomo) == 10
    assert sum(len(t.probes) for t in locomo) == 1986
    assert {p.kind for t in locomo for p in t.probes} == {"qa"}
    assert locomo[0].id == "locomo/conv-26"
    assert all(t.dataset == "locomo" for t in locomo)


@pytest.mark.data
def test_locomo_messages(locomo: list[Transcript]) -> None:
    """Turns carry dia_id/session metadata, speaker names and user/assistant roles only."""
    for t in locomo:
        _assert_unique_ids(t)
        speakers = {t.metadata["speaker_a"]: "user", t.metadata["speaker_b"]: "assistant"}
        sessions = [m.metadata["session"] for m in t.messages]
        assert sessions == sorted(sessions), "sessions must be in numeric order"
        for m in t.messages:
            assert re.fullmatch(r"D\d+:\d+", m.metadata["dia_id"])
            assert m.metadata["dia_id"].startswith(f"D{m.metadata['session']}:")
            assert m.role == speakers[m.name]
    first = locomo[0].messages[0]
    assert first.text.startswith("[session 1 — 1:56 pm on 8 May, 2023] Hey Mel!")
    assert first.metadata["session_date"] == "1:56 pm on 8 May, 2023"


@pytest.mark.data
def test_locomo_session_prefix_once_per_session(locomo: list[Transcript]) -> None:
    """Exactly the first turn of each session starts with the "[session N — date]" prefix."""
    for t in locomo:
        prefixed = [m for m in t.messages if m.text.startswith("[session ")]
        assert len(prefixed) == len(t.metadata["session_dates"])
        for m in prefixed:
            n = m.metadata["session"]
            assert m.text.startswith(f"[session {n} — {t.metadata['session_dates'][n]}] ")


@pytest.mark.data
def test_locomo_photo_captions_kept(locomo: list[Transcript]) -> None:
    """A shared photo's caption is appended to the text and kept in metadata."""
    photo = next(m for m in locomo[0].messages if "blip_caption" in m.metadata)
    assert photo.text.endswith(f"[shares a photo: {photo.metadata['blip_caption']}]")
    assert "img_url" in photo.metadata


@pytest.mark.data
def test_locomo_evidence_ids_exist(locomo: list[Transcript]) -> None:
    """Every kept evidence id names a turn of its transcript; oddities are recorded."""
    unknown: list[str] = []
    normalized: dict[str, str] = {}
    for t in locomo:
        dia_ids = {m.metadata["dia_id"] for m in t.messages}
        for p in t.probes:
            assert set(p.evidence_ids) <= dia_ids
            unknown += p.metadata.get("unknown_evidence", [])
            normalized.update(p.metadata.get("normalized_evidence", {}))
    assert normalized == {"D:11:26": "D11:26", "D30:05": "D30:5"}
    assert sorted(unknown) == ["D", "D10:19", "D4:36"]
    conv26 = next(t for t in locomo if t.id == "locomo/conv-26")
    split = [p for p in conv26.probes if {"D8:6", "D9:17"} <= set(p.evidence_ids)]
    assert split, '"D8:6; D9:17" in one string is split into two ids'


@pytest.mark.data
def test_locomo_answers_and_categories(locomo: list[Transcript]) -> None:
    """Answers are strings (ints stringified); category 5 falls back to adversarial_answer."""
    probes = [p for t in locomo for p in t.probes]
    assert Counter(p.category for p in probes) == {4: 841, 5: 446, 2: 321, 1: 282, 3: 96}
    assert all(isinstance(p.answer, str) and p.question for p in probes)
    adversarial = [p for p in probes if p.metadata["answer_field"] == "adversarial_answer"]
    assert len(adversarial) == 444
    assert all(p.category == 5 for p in adversarial)


def _locomo_sample(**qa: Any) -> dict[str, Any]:
    return {
        "sample_id": "s1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_2": [{"speaker": "Ann", "dia_id": "D2:1", "text": "later"}],
            "session_2_date_time": "2 May",
            "session_10": [{"speaker": "Bob", "dia_id": "D10:1", "text": "much later"}],
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "hi"},
                {"speaker": "Ann", "dia_id": "D1:2", "text": "again"},
            ],
            "session_1_date_time": "1 May",
        },
        "qa": [{"question": "q?", "answer": 7, "evidence": ["D1:2, D10:01", "D9:9"], **qa}],
    }


def test_locomo_synthetic_order_and_evidence(tmp_path: Path) -> None:
    """Sessions sort numerically; a missing date gives "[session N]"; evidence is cleaned."""
    path = _write(tmp_path / "loco.json", [_locomo_sample(category=1)])
    (t,) = load_transcripts(path)
    assert t.dataset == "loco"  # not the built-in locomo10.json: labelled by its file stem
    assert [m.metadata["dia_id"] for m in t.messages] == ["D1:1", "D1:2", "D2:1", "D10:1"]
    assert [m.text for m in t.messages] == [
        "[session 1 — 1 May] hi",
        "again",
        "[session 2 — 2 May] later",
        "[session 10] much later",
    ]
    (p,) = t.probes
    assert p.answer == "7"
    assert p.evidence_ids == ("D1:2", "D10:1")
    assert p.metadata["unknown_evidence"] == ["D9:9"]
    assert p.metadata["normalized_evidence"] == {"D10:01": "D10:1"}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["conversation"]["session_1"][1].pop("text"), "conversation.session_1[1].text"),
        (
            lambda s: s["conversation"]["session_2"][0].update(speaker="Eve"),
            "conversation.session_2[0].speaker",
        ),
        (lambda s: s["conversation"].pop("speaker_b"), "conversation.speaker_b"),
        (lambda s: s["qa"][0].pop("question"), "qa[0].question"),
        (lambda s: s["qa"][0].update(evidence=5), "qa[0].evidence"),
    ],
)
def test_locomo_bad_record_names_record_and_field(tmp_path: Path, mutate: Any, field: str) -> None:
    """A malformed LoCoMo sample raises naming the record index and the field."""
    good, bad = _locomo_sample(), _locomo_sample()
    mutate(bad)
    path = _write(tmp_path / "loco.json", [good, bad])
    with pytest.raises(TranscriptError) as info:
        load_transcripts(path)
    assert info.value.record == 1
    assert info.value.field == field
    assert f"record 1, field '{field}'" in str(info.value)


# --------------------------------------------------------------------------------------
# tau-bench
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tau(data_dir: Path) -> list[Transcript]:
    """The 200 tau-bench airline trajectories."""
    return load_transcripts(data_dir / TAU)


@pytest.mark.data
def test_tau_counts_and_pairs(tau: list[Transcript]) -> None:
    """tau-bench loads 200 runs with unique ids and consistent tool call/result pairs."""
    assert len(tau) == 200
    assert len({t.id for t in tau}) == 200
    assert tau[0].id == "tau-bench/0-0"
    for t in tau:
        _assert_tool_pairs(t.messages)
        _assert_unique_ids(t)
        assert {"task_id", "trial", "reward", "gt_actions"} <= set(t.metadata)
    assert sum(1 for t in tau for m in t.messages if m.role == "tool") == 1164


@pytest.mark.data
def test_tau_reused_call_ids_are_renamed(tau: list[Transcript]) -> None:
    """Run 0-0 reuses a call id for a later, different call; the later pair is renamed."""
    msgs = tau[0].messages
    first, later = msgs[6], msgs[16]
    assert first.tool_calls[0].name == "get_user_details"
    assert later.tool_calls[0].name == "calculate"
    original = first.tool_calls[0].id
    assert later.tool_calls[0].id == f"{original}#2"
    assert later.metadata["original_tool_call_ids"] == [original]
    assert msgs[17].tool_call_id == f"{original}#2"
    assert msgs[17].metadata["original_tool_call_id"] == original
    assert msgs[7].tool_call_id == original
    renamed = sum(1 for t in tau if any("original_tool_call_ids" in m.metadata for m in t.messages))
    assert renamed == 49


@pytest.mark.data
def test_tau_action_probes(tau: list[Transcript]) -> None:
    """Each probe points at an assistant call of its action; values are in earlier results."""
    probes = 0
    for t in tau:
        if not t.probes:
            assert t.metadata["probe_skipped"]
            continue
        (p,) = t.probes
        probes += 1
        assert p.kind == "action" and p.position is not None
        msg = t.messages[p.position]
        assert msg.role == "assistant"
        assert p.metadata["action"] in {c.name for c in msg.tool_calls}
        assert p.metadata["action"] == t.metadata["gt_actions"][p.metadata["action_index"]]
        earlier = "\n".join(m.text for m in t.messages[: p.position] if m.role == "tool")
        for value in p.values:
            assert value in earlier
        later_calls = [
            m
            for m in t.messages[p.position + 1 :]
            if p.metadata["action"] in {c.name for c in m.tool_calls}
        ]
        assert not later_calls, "position is the LAST call of the action"
    assert probes == 146
    reasons = Counter(t.metadata.get("probe_skipped") for t in tau if not t.probes)
    assert reasons == {
        "no ground-truth actions": 28,
        "the agent called none of the ground-truth actions": 26,
    }


@pytest.mark.data
def test_tau_values_whole_tokens(tau: list[Transcript]) -> None:
    """Short values such as "no" are not counted when only found inside longer words."""
    p = tau[0].probes[0]
    assert "no" not in p.values  # only inside "economy"/"unknown" in the results
    assert "no" in p.metadata["values_not_scored"]
    by_id = {tr.id: tr for tr in tau}
    assert by_id["tau-bench/2-0"].probes[0].values == ("BOH180", "credit_card_9525117")


@pytest.mark.data
def test_tau_values_in_earlier_call_arguments_are_not_scored(tau: list[Transcript]) -> None:
    """A value the agent already passed to an earlier tool call is not a recall test."""
    t = tau[0]
    p = t.probes[0]
    assert p.position is not None
    earlier_args = " ".join(c.arguments for m in t.messages[: p.position] for c in m.tool_calls)
    assert "HAT136" in earlier_args
    assert "HAT136" in p.metadata["values_not_scored"]
    for tr in tau:
        for probe in tr.probes:
            assert probe.position is not None
            calls = [c for m in tr.messages[: probe.position] for c in m.tool_calls]
            args = " ".join(c.arguments for c in calls)
            assert not any(f'"{v}"' in args for v in probe.values)


def _tau_record(actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "task_id": 7,
        "trial": 1,
        "reward": 1.0,
        "info": {"task": {"actions": actions}},
        "traj": [
            {"role": "user", "content": "cancel my reservation please"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "get", "content": '{"id": "ABC123"}'},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "cancel", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "name": "cancel", "content": "ok"},
        ],
    }


def test_tau_synthetic_fallback_to_earlier_action(tmp_path: Path) -> None:
    """If the agent never issued the last gt action, the last gt action it issued is used."""
    rec = _tau_record(
        [
            {"name": "cancel", "kwargs": {"reservation_id": "ABC123", "flag": True, "n": [1]}},
            {"name": "refund", "kwargs": {"amount": 5}},
        ]
    )
    (t,) = load_transcripts(_write(tmp_path / "tau.json", [rec]))
    assert t.id == "tau-bench/7-1"
    (p,) = t.probes
    assert p.position == 3
    assert p.values == ("ABC123",)
    assert p.metadata["is_last_gt_action"] is False
    assert p.metadata["values_not_scored"] == ["1"]


def test_tau_synthetic_no_probe_when_nothing_issued(tmp_path: Path) -> None:
    """No probe (with a reason) when the agent issued none of the gt actions."""
    rec = _tau_record([{"name": "refund", "kwargs": {}}])
    (t,) = load_transcripts(_write(tmp_path / "tau.json", [rec]))
    assert t.probes == []
    assert "none of the ground-truth actions" in t.metadata["probe_skipped"]


def test_tau_bad_message_names_record_and_field(tmp_path: Path) -> None:
    """A malformed tool call inside traj names the record and "traj[i]"."""
    bad = _tau_record([])
    bad["traj"][3]["tool_calls"][0]["function"] = {}
    path = _write(tmp_path / "tau.json", [_tau_record([]), bad])
    with pytest.raises(TranscriptError, match="has no function name") as info:
        load_transcripts(path)
    assert (info.value.record, info.value.field) == (1, "traj[3]")


# --------------------------------------------------------------------------------------
# SWE-agent
# --------------------------------------------------------------------------------------
@pytest.mark.data
def test_swe_agent_files(data_dir: Path) -> None:
    """The three .traj files load with paired tool calls and SWE-agent keys in metadata."""
    files = sorted((data_dir / "swe-agent").glob("*.traj"))
    assert len(files) == 3
    for f in files:
        (t,) = load_transcripts(f)
        assert t.id == f"swe-agent/{f.stem}" and t.dataset == "swe-agent"
        assert t.metadata["messages_field"] == "history"
        _assert_tool_pairs(t.messages)
        _assert_unique_ids(t)
        tools = [m for m in t.messages if m.role == "tool"]
        assert tools and all(m.tool_call_id for m in tools)
        assert all("message_type" in m.metadata for m in t.messages)
    (full,) = load_transcripts(
        data_dir / "swe-agent/marshmallow-1867_function_calling_replace.traj"
    )
    assert full.metadata["exit_status"] == "submitted"


def test_swe_agent_multi_id_tool_message_is_split(tmp_path: Path) -> None:
    """A tool message answering two calls becomes two tool messages with the same content."""
    call = {"type": "function", "function": {"name": "bash", "arguments": "{}"}}
    traj = {
        "trajectory": [
            {
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "sys"}]},
                    {
                        "role": "assistant",
                        "content": "two",
                        "thought": "two",
                        "tool_calls": [{**call, "id": "a"}, {**call, "id": "b"}],
                    },
                    {
                        "role": "tool",
                        "content": [{"type": "text", "text": "out"}],
                        "tool_call_ids": ["a", "b"],
                        "message_type": "observation",
                    },
                ]
            }
        ]
    }
    path = _write(tmp_path / "x.traj", traj)
    (t,) = load_transcripts(path)
    assert t.metadata["messages_field"] == "trajectory[0].messages"
    assert [m.role for m in t.messages] == ["system", "assistant", "tool", "tool"]
    a, b = t.messages[2:]
    assert (a.tool_call_id, b.tool_call_id) == ("a", "b")
    assert a.text == b.text == "out"
    assert a.metadata["split_from_tool_call_ids"] == ["a", "b"]
    assert t.messages[0].text == "sys"
    _assert_tool_pairs(t.messages)


def test_swe_agent_bad_ids_name_field(tmp_path: Path) -> None:
    """A malformed tool_call_ids value names the history index."""
    path = _write(
        tmp_path / "x.traj",
        {"history": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_ids": "a"}]},
    )
    with pytest.raises(TranscriptError) as info:
        load_transcripts(path)
    assert info.value.field == "history[1].tool_call_ids"


# --------------------------------------------------------------------------------------
# ToolBench
# --------------------------------------------------------------------------------------
@pytest.mark.data
def test_toolbench_files(data_dir: Path) -> None:
    """13 of the 15 answer files give a transcript; the two without messages give []."""
    files = sorted((data_dir / "toolbench").rglob("*.json"))
    assert len(files) == 15
    loaded = {f: load_transcripts(f) for f in files}
    empty = sorted(f.name for f, ts in loaded.items() if not ts)
    assert empty == ["69_ChatGPT_DFS_woFilter_w2.json", "8_ChatGPT_DFS_woFilter_w2.json"]
    transcripts = [t for ts in loaded.values() for t in ts]
    assert len(transcripts) == 13
    assert len({t.id for t in transcripts}) == 13
    for t in transcripts:
        assert t.id.startswith("toolbench/G") and t.dataset == "toolbench"
        _assert_tool_pairs(t.messages)
        tools = [m for m in t.messages if m.role == "tool"]
        assert tools and all(m.tool_call_id and m.tool_call_id.startswith("fc-") for m in tools)


def test_toolbench_uses_longest_step(tmp_path: Path) -> None:
    """The longest train_messages list is loaded (legacy function call paired)."""
    steps = [
        [{"role": "user", "content": "q"}],
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            {"role": "function", "name": "f", "content": "r"},
        ],
    ]
    path = _write(tmp_path / "G9" / "1.json", {"answer_generation": {"train_messages": steps}})
    (t,) = load_transcripts(path)
    assert t.id == "toolbench/G9/1"
    assert t.metadata["train_messages_index"] == 1
    assert t.messages[2].tool_call_id == t.messages[1].tool_calls[0].id


# --------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------
_CONV = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
]


@pytest.mark.parametrize(
    ("name", "writer", "count"),
    [
        ("list.json", lambda p: _write(p, _CONV), 1),
        ("object.json", lambda p: _write(p, {"id": "x1", "messages": _CONV, "model": "m"}), 1),
        ("objects.json", lambda p: _write(p, [{"messages": _CONV}, {"messages": _CONV[:2]}]), 2),
        ("lists.json", lambda p: _write(p, [_CONV, _CONV[:2]]), 2),
        ("convs.jsonl", lambda p: _write_lines(p, [{"messages": _CONV}, _CONV[:2]]), 2),
        ("msgs.jsonl", lambda p: _write_lines(p, _CONV), 1),
        ("lines-as.json", lambda p: _write_lines(p, [{"messages": _CONV}, _CONV]), 2),
        ("empty.json", lambda p: _write(p, []), 0),
    ],
)
def test_openai_variants(tmp_path: Path, name: str, writer: Any, count: int) -> None:
    """Every accepted OpenAI shape is detected and loads with tool pairs intact."""
    path = writer(tmp_path / name)
    assert detect_format(path) == "openai"
    transcripts = load_transcripts(path)
    assert len(transcripts) == count
    for t in transcripts:
        assert t.dataset == "openai" and t.source == str(path)
        _assert_tool_pairs(t.messages)
    if count:
        first = transcripts[0]
        assert first.messages[0].role == "system"
        assert len(first.messages) == len(_CONV)


def test_openai_ids_and_metadata(tmp_path: Path) -> None:
    """Conversation ids/extra keys are kept; repeated identical messages get unique ids."""
    conv = {"id": "x1", "model": "m", "messages": [*_CONV, {"role": "user", "content": "ok"}] * 2}
    (t,) = load_transcripts(_write(tmp_path / "c.json", conv))
    assert t.id == "openai/x1"
    assert t.metadata == {"model": "m"}
    _assert_unique_ids(t)
    assert t.messages[7].id == t.messages[1].id + "#2"
    (t2,) = load_transcripts(_write(tmp_path / "plain.json", _CONV))
    assert t2.id == "openai/plain"


def test_openai_bad_message_names_record_and_field(tmp_path: Path) -> None:
    """An invalid message names the conversation record and messages[i]."""
    bad = [*_CONV[:3], {"role": "robot", "content": "x"}]
    path = _write(tmp_path / "c.json", [{"messages": _CONV}, {"messages": bad}])
    with pytest.raises(TranscriptError, match="unknown role 'robot'") as info:
        load_transcripts(path)
    assert (info.value.record, info.value.field) == (1, "messages[3]")
    assert str(info.value).startswith(f"{path}, record 1, field 'messages[3]': ")


def test_openai_jsonl_bad_message_names_line(tmp_path: Path) -> None:
    """In a message-per-line JSONL file the error names the message and its line."""
    path = tmp_path / "m.jsonl"
    rows = [json.dumps(m) for m in _CONV[:2]] + ["", json.dumps({"role": "x"})]
    path.write_text("\n".join(rows), encoding="utf-8")
    with pytest.raises(TranscriptError, match="line 4: unknown role") as info:
        load_transcripts(path)
    assert info.value.field == "messages[2]"


def test_openai_jsonl_bad_conversation_names_line(tmp_path: Path) -> None:
    """In a conversation-per-line JSONL file the error names the record and its line."""
    path = _write_lines(tmp_path / "c.jsonl", [{"messages": _CONV}, {"messages": "oops"}])
    with pytest.raises(TranscriptError, match="line 2: expected a list of messages") as info:
        load_transcripts(path)
    assert info.value.record == 1


def test_broken_json_names_line(tmp_path: Path) -> None:
    """Invalid JSON is reported with its line and column."""
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"role": "user",\n   "content": "hi"\n  },,\n]\n', encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"invalid JSON at line 4, column 5") as info:
        load_transcripts(path)
    assert info.value.path == str(path)


def test_broken_jsonl_names_line(tmp_path: Path) -> None:
    """Invalid JSON Lines are reported with the file's line number."""
    path = tmp_path / "broken.jsonl"
    path.write_text('{"role": "user", "content": "a"}\n\n{"role": \n', encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"invalid JSON at line 3"):
        load_transcripts(path)


def test_non_utf8_is_an_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a TranscriptError, not a UnicodeDecodeError."""
    path = tmp_path / "latin.json"
    path.write_bytes(b'[{"role": "user", "content": "caf\xe9"}]')
    with pytest.raises(TranscriptError, match="not UTF-8"):
        load_transcripts(path)


# --------------------------------------------------------------------------------------
# LangChain
# --------------------------------------------------------------------------------------
def test_langchain_round_trip(tmp_path: Path) -> None:
    """A messages_to_dict dump loads with roles, tool calls, tool results and ids kept."""
    lc = pytest.importorskip("langchain_core.messages")
    original = [
        lc.SystemMessage("be brief", id="s1"),
        lc.HumanMessage("weather in Paris?", id="h1"),
        lc.AIMessage(
            "", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "c1"}], id="a1"
        ),
        lc.ToolMessage("sunny", tool_call_id="c1", name="weather", id="t1"),
        lc.AIMessage([{"type": "text", "text": "It is sunny."}], id="a2"),
        lc.ChatMessage(role="user", content="thanks"),
    ]
    path = _write(tmp_path / "lc.json", lc.messages_to_dict(original))
    assert detect_format(path) == "langchain"
    (t,) = load_transcripts(path)
    assert t.id == "langchain/lc" and t.dataset == "langchain"
    assert [m.role for m in t.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert [m.id for m in t.messages[:5]] == ["s1", "h1", "a1", "t1", "a2"]
    call = t.messages[2].tool_calls[0]
    assert (call.id, call.name, call.parsed_arguments()) == ("c1", "weather", {"city": "Paris"})
    assert t.messages[3].tool_call_id == "c1" and t.messages[3].text == "sunny"
    assert t.messages[4].text == "It is sunny."
    assert t.messages[0].metadata["lc_type"] == "system"
    _assert_tool_pairs(t.messages)


def test_langchain_bad_item_names_field(tmp_path: Path) -> None:
    """An item with an unknown LangChain type names its index."""
    pytest.importorskip("langchain_core.messages")
    items = [{"type": "human", "data": {"content": "hi"}}, {"type": "alien", "data": {}}]
    path = _write(tmp_path / "lc.json", items)
    with pytest.raises(TranscriptError) as info:
        load_transcripts(path)
    assert info.value.field == "messages[1]"


def test_langchain_missing_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without langchain-core the langchain format raises ImportError with the pip hint."""
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    path = _write(tmp_path / "lc.json", [{"type": "human", "data": {"content": "hi"}}])
    with pytest.raises(ImportError, match=re.escape('pip install "ctxmgr-llm[langchain]"')):
        load_transcripts(path)


# --------------------------------------------------------------------------------------
# load_many
# --------------------------------------------------------------------------------------
def test_load_many_continues_past_bad_files(tmp_path: Path) -> None:
    """Bad and missing paths are reported while good files still load, in order."""
    good1 = _write(tmp_path / "d" / "a.json", _CONV)
    (tmp_path / "d" / "b.json").write_text("{oops", encoding="utf-8")
    _write_lines(tmp_path / "d" / "sub" / "c.jsonl", [_CONV, _CONV])
    (tmp_path / "d" / "notes.txt").write_text("ignored", encoding="utf-8")
    _write(tmp_path / "d" / ".hidden" / "x.json", {"bad": 1})
    (tmp_path / "empty").mkdir()
    transcripts, failures = load_many(
        [tmp_path / "d", good1, tmp_path / "missing.json", tmp_path / "empty"]
    )
    assert [t.id for t in transcripts] == ["openai/a", "openai/c/0", "openai/c/1"]
    assert [Path(str(e.path)).name for e in failures] == ["b.json", "missing.json", "empty"]
    assert "invalid JSON at line 1" in str(failures[0])


@pytest.mark.data
def test_load_many_whole_data_dir(data_dir: Path) -> None:
    """The whole public data directory loads with no failure."""
    transcripts, failures = load_many([data_dir])
    assert failures == []
    assert Counter(t.dataset for t in transcripts) == {
        "locomo": 10,
        "tau-bench": 200,
        "swe-agent": 3,
        "toolbench": 13,
    }


def test_load_many_explicit_format(tmp_path: Path) -> None:
    """An explicit format applies to every file; a mismatching file fails alone."""
    ok = _write(tmp_path / "a.json", _CONV)
    wrong = _write(tmp_path / "b.json", {"answer_generation": {}})
    transcripts, failures = load_many([ok, wrong], format="openai")
    assert len(transcripts) == 1
    assert len(failures) == 1 and failures[0].path == str(wrong)
