"""Feature rows: a cold worker rebuilds the relevance index from the store, not from scratch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ctxmgr.strategies.relevance import RelevanceEviction

from ctxmgr import ContextManager
from ctxmgr.stores import SQLiteStore
from ctxmgr.stores.base import ArchiveRow, StoredState
from ctxmgr.testing import agent_history, check_tool_pairs


@pytest.fixture
def derived(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count the texts the relevance strategy tokenizes and embeds (any instance)."""
    seen = {"tokenized": 0, "embedded": 0}
    tokenize, embed = RelevanceEviction._tokenize, RelevanceEviction._embed_rows

    def counting_tokenize(self: RelevanceEviction, texts: list[str]) -> list[list[str]]:
        seen["tokenized"] += len(texts)
        return tokenize(self, texts)

    def counting_embed(self: RelevanceEviction, texts: list[str]) -> Any:
        seen["embedded"] += len(texts)
        return embed(self, texts)

    monkeypatch.setattr(RelevanceEviction, "_tokenize", counting_tokenize)
    monkeypatch.setattr(RelevanceEviction, "_embed_rows", counting_embed)
    yield seen


def test_cold_worker_reuses_stored_terms_and_vectors(
    tmp_path: Path, derived: dict[str, int]
) -> None:
    """A fresh worker tokenizes and embeds only the new segment and the question.

    And it fits exactly as a manager that never stopped (the index rebuilt from the rows
    scores bit for bit as the one built a fit at a time).
    """
    store = SQLiteStore(tmp_path / "f.db")
    history = agent_history(400, seed=4)
    reference = ContextManager.from_config("agent", max_context_tokens=3000)
    first = ContextManager.from_config(
        "agent", max_context_tokens=3000, store=store, conversation_id="c"
    )
    for cut in (200, 398):
        assert first.fit(history[:cut]).messages == reference.fit(history[:cut]).messages
    rows = {k: v for k, v in store.features("c").items() if k.startswith("relevance:")}
    assert {k.split("|")[1] for k in rows} == {"t", "v"}
    derived.update(tokenized=0, embedded=0)
    cold = ContextManager.from_config(
        "agent", max_context_tokens=3000, store=store, conversation_id="c"
    )
    got = cold.fit(history)
    # at most one segment per new message, plus the question: not the ~190 segments
    new = len(history) - 398
    assert 1 <= derived["tokenized"] <= new + 1, derived
    assert derived["embedded"] <= new + 1, derived
    assert got.messages == reference.fit(history).messages
    after = [k for k in store.features("c") if k.startswith("relevance:")]
    assert len(after) > len(rows)  # the new segments' rows were saved


def test_other_options_do_not_reuse_rows(tmp_path: Path, derived: dict[str, int]) -> None:
    """Rows are keyed by the options that shape them: another stemmer re-tokenizes."""
    store = SQLiteStore(tmp_path / "f.db")
    history = agent_history(120, seed=2)
    ContextManager.from_config(
        "agent", max_context_tokens=3000, store=store, conversation_id="c"
    ).fit(history[:119])
    config = {
        "max_context_tokens": 3000,
        "strategies": [{"name": "relevance", "placement": "block", "stemmer": None}],
    }
    derived.update(tokenized=0, embedded=0)
    other = ContextManager.from_config(config, store=store, conversation_id="c")
    reference = ContextManager.from_config(config)
    assert other.fit(history).messages == reference.fit(history).messages
    assert derived["tokenized"] > 50


class NoFeatures:
    """A third-party store written before feature rows: the base methods only."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.ttl = inner.ttl
        self.saved_with: list[set[str]] = []

    def version(self, conversation_id: str) -> int:
        return self.inner.version(conversation_id)

    def load(self, conversation_id: str) -> StoredState | None:
        return self.inner.load(conversation_id)

    def save(
        self,
        conversation_id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        archive: Sequence[ArchiveRow] = (),
        counts: Mapping[str, int] | None = None,
    ) -> int:
        self.saved_with.append({"archive", "counts"})
        return self.inner.save(
            conversation_id, data, expected_version=expected_version, archive=archive, counts=counts
        )

    def archive(self, conversation_id: str) -> list[dict[str, Any]]:
        return self.inner.archive(conversation_id)

    def archive_size(self, conversation_id: str) -> int:
        return self.inner.archive_size(conversation_id)

    def counts(self, conversation_id: str) -> dict[str, int]:
        return self.inner.counts(conversation_id)

    def delete(self, conversation_id: str) -> bool:
        return self.inner.delete(conversation_id)

    def close(self) -> None:
        self.inner.close()


def test_store_without_features_still_works(tmp_path: Path) -> None:
    """A store with no ``features`` method is saved to without them and resumes exactly."""
    store = NoFeatures(SQLiteStore(tmp_path / "f.db"))
    history = agent_history(150, seed=6)
    reference = ContextManager.from_config("agent", max_context_tokens=2500)
    for cut in (60, 110, 150):
        worker = ContextManager.from_config(
            "agent", max_context_tokens=2500, store=store, conversation_id="c"
        )
        assert worker.fit(history[:cut]).messages == reference.fit(history[:cut]).messages
    assert len(store.saved_with) == 3
    assert store.inner.features("c") == {}


class Recording:
    """A store recording the feature rows each save writes (and able to lose rows)."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.ttl = inner.ttl
        self.written: list[dict[str, str]] = []
        self.hide_rows = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.written.append(dict(kwargs.get("features") or {}))
        return self.inner.save(*args, **kwargs)

    def features(self, conversation_id: str, keys: Any = None) -> dict[str, str]:
        rows = self.inner.features(conversation_id, keys)
        return {} if self.hide_rows and keys is not None else rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_shrunk_messages_are_rows_written_once(tmp_path: Path) -> None:
    """The snapshot refers to cleared tool results as rows; a save writes only new ones."""
    store = Recording(SQLiteStore(tmp_path / "w.db"))
    history = agent_history(500, seed=7)
    worker = ContextManager.from_config(
        "fifo", max_context_tokens=8000, store=store, conversation_id="c"
    )
    worker.fit(history[:400])
    window = store.inner.load("c").data["window"]
    entries = [x for item in window["shrunk"].values() for x in item["messages"]]
    refs = {x["k"] for x in entries if "k" in x}
    assert len(refs) > 5 and not [x for x in entries if "role" in x]  # nothing inline
    assert refs <= set(store.written[-1])
    for cut in range(401, 421):
        worker.fit(history[:cut])
    written = [k for rows in store.written for k in rows]
    assert len(written) == len(set(written))  # each row is written by one save only
    assert [rows for rows in store.written[1:] if rows]  # later clearings wrote theirs
    window = store.inner.load("c").data["window"]
    assert not [x for item in window["shrunk"].values() for x in item["messages"] if "role" in x]


def test_missing_rows_fall_back_to_a_full_refit(tmp_path: Path) -> None:
    """A window whose rows cannot be read is refitted from scratch with the stored state.

    As for an edited history: a valid fit (budget, tool pairs) that loses nothing, not
    necessarily the uninterrupted manager's.
    """
    store = Recording(SQLiteStore(tmp_path / "m.db"))
    history = agent_history(300, seed=8)
    first = ContextManager.from_config(
        "fifo", max_context_tokens=6000, store=store, conversation_id="c"
    )
    first.fit(history[:290])
    archived = {(e.message.id, e.message.fingerprint) for e in first.state.archive}
    store.hide_rows = True
    cold = ContextManager.from_config(
        "fifo", max_context_tokens=6000, store=store, conversation_id="c"
    )
    assert cold._resume is not None and not cold._resume.get("_rows")
    result = cold.fit(history)
    assert check_tool_pairs(result.messages) == []
    assert result.report.tokens_after <= cold.budget.effective_limit
    kept = {(m.id, m.fingerprint) for m in result.messages}
    stored = {(e.message.id, e.message.fingerprint) for e in cold.state.archive}
    assert archived <= stored
    assert {(m.id, m.fingerprint) for m in history} <= kept | stored
