"""Loader for LoCoMo (Maharana et al. 2024): a transcript per sample, a ``qa`` probe per QA item."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ctxmgr.bench.loaders._common import (
    Source,
    _dataset_label,
    _first,
    _get,
    _record,
    _transcript,
    _typename,
)
from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.messages import Message

# ---------------------------------------------------------------------------------------
# LoCoMo
# ---------------------------------------------------------------------------------------
_SESSION_KEY = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")
_EVIDENCE_ID = re.compile(r"D:?0*(\d+):0*(\d+)")


def _detect_locomo(src: Source) -> bool:
    data = src.data
    if src.is_jsonl:
        return False
    sample = data if isinstance(data, Mapping) else _first(data)
    return isinstance(sample, Mapping) and "conversation" in sample and "qa" in sample


def _parse_evidence(raw: Any, known: set[str]) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    """Split evidence entries into known ids, unknown tokens and normalizations made."""
    entries = raw if isinstance(raw, list) else [raw]
    kept: dict[str, None] = {}
    unknown: list[str] = []
    normalized: dict[str, str] = {}
    for entry in entries:
        if entry is None:
            continue
        for token in _EVIDENCE_SPLIT.split(str(entry)):
            if not token:
                continue
            m = _EVIDENCE_ID.fullmatch(token)
            norm = f"D{int(m.group(1))}:{int(m.group(2))}" if m else token
            if norm in known:
                kept[norm] = None
                if norm != token:
                    normalized[token] = norm
            else:
                unknown.append(token)
    return tuple(kept), unknown, normalized


def _load_locomo(src: Source) -> list[Transcript]:
    """Load LoCoMo samples: one transcript per sample, one ``"qa"`` probe per QA item.

    * Transcript ``id`` is ``"locomo/<sample_id>"``; metadata holds ``sample_id``,
      ``speaker_a``, ``speaker_b`` and ``session_dates`` (``{N: "1:56 pm on 8 May, 2023"}``).
      The dataset's ``event_summary`` / ``session_summary`` / ``observation`` annotations
      are not loaded (they would leak the answers).
    * Messages are the turns only (no system message), sessions in numeric order
      (``session_1``, ``session_2``, ... ``session_10``). ``speaker_a`` is role ``user``,
      ``speaker_b`` role ``assistant``; ``name`` is the speaker and ``id`` is
      ``"<sample_id>/<dia_id>"``. Metadata: ``dia_id``, ``session`` (N), ``session_date``
      and any other turn keys verbatim (``blip_caption``, ``img_url``, ``query``...).
    * So that time questions are answerable from the context alone, the first turn of each
      session is prefixed with ``"[session N — DATE] "`` (``"[session N] "`` when the date
      is missing), and a shared photo's caption is appended to the turn text as
      ``" [shares a photo: CAPTION]"`` (the image itself is not in the text data).
    * Probe ``answer`` is ``answer``, or ``adversarial_answer`` when there is no answer
      (category 5); ``metadata["answer_field"]`` says which. Evidence entries are split on
      ``;``, ``,`` and whitespace and normalized (``"D:11:26"`` and ``"D30:05"`` become
      ``"D11:26"`` and ``"D30:5"``, listed in ``metadata["normalized_evidence"]``); only
      ids of turns in the conversation are kept, the rest are listed in
      ``metadata["unknown_evidence"]``.
    """
    data = src.data
    samples = [data] if isinstance(data, Mapping) else data
    if not isinstance(samples, list):
        raise src.error(f"expected a list of LoCoMo samples, got {_typename(data)}")
    return [_locomo_sample(src, r, sample) for r, sample in enumerate(samples)]


def _locomo_sample(src: Source, r: int, raw: Any) -> Transcript:
    sample = _record(src, raw, r)
    sample_id = _get(src, sample, "sample_id", (str, int), record=r)
    conv = _get(src, sample, "conversation", Mapping, record=r)
    speakers = {
        _get(src, conv, "speaker_a", str, record=r, prefix="conversation."): "user",
        _get(src, conv, "speaker_b", str, record=r, prefix="conversation."): "assistant",
    }
    sessions = sorted((int(m.group(1)), key) for key in conv if (m := _SESSION_KEY.fullmatch(key)))
    messages: list[Message] = []
    dates: dict[int, str | None] = {}
    known: set[str] = set()
    for n, key in sessions:
        turns = _get(src, conv, key, list, record=r, prefix="conversation.")
        date = conv.get(f"{key}_date_time")
        date = None if date is None else str(date)
        dates[n] = date
        for t, raw_turn in enumerate(turns):
            where = f"conversation.{key}[{t}]"
            if not isinstance(raw_turn, Mapping):
                raise src.error(
                    f"expected a turn object, got {_typename(raw_turn)}", record=r, field=where
                )
            speaker = _get(src, raw_turn, "speaker", str, record=r, prefix=where + ".")
            if speaker not in speakers:
                raise src.error(
                    f"speaker {speaker!r} is neither speaker_a nor speaker_b "
                    f"({', '.join(speakers)})",
                    record=r,
                    field=where + ".speaker",
                )
            text = _get(src, raw_turn, "text", str, record=r, prefix=where + ".", empty_ok=True)
            dia_id = _get(src, raw_turn, "dia_id", str, record=r, prefix=where + ".")
            caption = raw_turn.get("blip_caption")
            if caption:
                text = f"{text} [shares a photo: {caption}]".strip()
            if t == 0:
                text = f"[session {n} — {date}] {text}" if date else f"[session {n}] {text}"
            metadata = {
                "dia_id": dia_id,
                "session": n,
                "session_date": date,
                **{k: v for k, v in raw_turn.items() if k not in ("speaker", "text", "dia_id")},
            }
            known.add(dia_id)
            messages.append(
                Message(
                    speakers[speaker],  # type: ignore[arg-type]
                    text,
                    name=speaker,
                    id=f"{sample_id}/{dia_id}",
                    metadata=metadata,
                )
            )
    qa = sample.get("qa") or []
    if not isinstance(qa, list):
        raise src.error(f"expected list, got {_typename(qa)}", record=r, field="qa")
    probes = [_locomo_probe(src, r, i, item, known) for i, item in enumerate(qa)]
    return _transcript(
        src,
        f"locomo/{sample_id}",
        _dataset_label(src, "locomo", "locomo10.json"),
        messages,
        probes,
        {
            "sample_id": sample_id,
            "speaker_a": conv["speaker_a"],
            "speaker_b": conv["speaker_b"],
            "session_dates": dates,
        },
    )


def _locomo_probe(src: Source, r: int, i: int, raw: Any, known: set[str]) -> Probe:
    where = f"qa[{i}]"
    if not isinstance(raw, Mapping):
        raise src.error(f"expected a QA object, got {_typename(raw)}", record=r, field=where)
    question = _get(src, raw, "question", str, record=r, prefix=where + ".")
    category = _get(src, raw, "category", int, record=r, prefix=where + ".", required=False)
    answer_field = "answer" if raw.get("answer") is not None else "adversarial_answer"
    answer = raw.get(answer_field)
    evidence = raw.get("evidence")
    if evidence is not None and not isinstance(evidence, (list, str)):
        raise src.error(
            f"expected a list of ids, got {_typename(evidence)}",
            record=r,
            field=where + ".evidence",
        )
    kept, unknown, normalized = _parse_evidence(evidence, known)
    metadata: dict[str, Any] = {"qa_index": i, "answer_field": answer_field}
    if answer_field == "answer" and raw.get("adversarial_answer") is not None:
        metadata["adversarial_answer"] = raw["adversarial_answer"]
    if unknown:
        metadata["unknown_evidence"] = unknown
    if normalized:
        metadata["normalized_evidence"] = normalized
    return Probe(
        kind="qa",
        question=question,
        answer=None if answer is None else str(answer),
        evidence_ids=kept,
        category=category,
        metadata=metadata,
    )
