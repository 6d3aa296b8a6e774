"""``relevance``: score segments against the current query (BM25 or embeddings) plus recency.

BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond",
2009), Lucene variant as in the ``bm25s`` library, with ``bm25s``'s tokenizer, English
stop words and the Snowball stemmer (``PyStemmer``). Any embedding function can replace
it (cosine similarity). The query is the latest user message unless ``fit(query=...)``
gives one. Scores are normalized to [0, 1] and blended with recency.

Cost: nothing on the append-only path. At a compaction, segments not seen before are
tokenized in one batch and their term counts cached; candidates are scored from those
counts (O(candidates x query terms), no index build). Recalling archived segments uses a
``bm25s`` index over the whole history, rebuilt only when the history has grown by a
quarter since the last build.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ctxmgr.errors import ConfigError
from ctxmgr.hookspecs import hookimpl
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["RelevanceEviction"]

if TYPE_CHECKING:
    import bm25s
    import numpy as np
else:  # heavy: imported when the strategy is first configured (``import ctxmgr`` stays light)
    bm25s = np = None


def _import_deps() -> None:
    global bm25s, np
    if np is None:
        import bm25s as _bm25s
        import numpy as _np

        bm25s, np = _bm25s, _np


class RelevanceOptions(StrategyOptions):
    """Options of :class:`RelevanceEviction`.

    Attributes:
        embedder: ``None`` for BM25, or ``"module:function"`` naming a callable
            ``f(texts: list[str]) -> list[list[float]]``.
        recency_weight: share of recency in the blended score, in [0, 1].
        neighbor_weight: each segment gains this times the relevance of its neighbours
            (``neighbor_span`` on each side, same session only): answers in a dialogue sit
            next to the turn that matches the question.
        neighbor_span: neighbours counted on each side, in history segments.
        neighbor_decay: the weight of a neighbour at distance d is
            ``neighbor_weight * neighbor_decay ** (d - 1)``.
        session_key: metadata key whose value delimits sessions for smoothing.
        index_metadata: metadata keys whose values are indexed with the text (dates).
        rerank_on_new_query: re-select on every new user message (the question changed),
            recalling relevant archived segments, even below the trigger; costs a
            prompt-cache miss on that turn. Off by default (a context below the trigger
            only grows by appending); the ``relevance`` preset turns it on.
        max_recall: at most this many archived segments recalled per new query.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalization.
        stemmer: Snowball stemmer language, or ``None``.
        stopwords: a ``bm25s`` stop-word list (``"en"``, ``"en_plus"``) or ``None``.

    Defaults (k1 = 1.5, ``en_plus`` stop words, English stemmer, speaker and session date
    indexed, neighbour smoothing 0.4 over 2 turns, recency 0.1) were chosen on LoCoMo
    (Maharana et al. 2024) evidence recall; 2-fold cross-validation by dialogue gave the
    same held-out recall (``benchmarks/README.md``).
    """

    embedder: str | None = None
    recency_weight: float = Field(default=0.1, ge=0, le=1)
    neighbor_weight: float = Field(default=0.4, ge=0, le=1)
    neighbor_span: int = Field(default=2, ge=0)
    neighbor_decay: float = Field(default=1.0, gt=0, le=1)
    session_key: str = "session"
    index_metadata: list[str] = Field(default_factory=lambda: ["session_date"])
    rerank_on_new_query: bool = False
    max_recall: int = Field(default=256, ge=0)
    k1: float = Field(default=1.5, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)
    stemmer: str | None = "english"
    stopwords: str | None = "en_plus"


class RelevanceEviction(Strategy):
    """Evicts the segments least relevant to the current query first."""

    name = "relevance"
    summary = "scores segments by BM25 (or embeddings) against the current query, plus recency"
    Options = RelevanceOptions
    options: RelevanceOptions

    def __init__(self, options: StrategyOptions | None = None, *, weight: float = 1.0):
        super().__init__(options, weight=weight)
        _import_deps()
        self._tokens: dict[str, list[str]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._cache: tuple[tuple[str, int], np.ndarray] | None = None
        self._query_state: dict[str, Any] | None = None
        self._vectors: dict[str, Any] = {}
        self._stemmer: Any = None
        if self.options.stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.options.stemmer)
        self._embed: Callable[[list[str]], Any] | None = None
        if self.options.embedder:
            module, _, attr = self.options.embedder.partition(":")
            try:
                self._embed = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load {self.options.embedder!r} ('module:function'): {exc}",
                    key="relevance.embedder",
                ) from None

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        out = bm25s.tokenize(
            texts,
            stopwords=self.options.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in out]  # type: ignore[union-attr]

    def adopt(self, other: Strategy) -> None:
        """Share the content-keyed token caches and the history index with a clone."""
        if isinstance(other, RelevanceEviction):
            self._tokens = other._tokens
            self._counts = other._counts
            self._vectors = other._vectors

    def snapshot(self) -> Any:
        """Nothing to keep: the last query recalled for lives in the session state."""
        return None

    def restore(self, snapshot: Any) -> None:
        """Drop the caches keyed by history length (a failed fit)."""
        self._cache = None
        self._query_state = None

    def _doc(self, seg: Segment) -> str:
        extra = [
            str(seg.head.metadata[k]) for k in self.options.index_metadata if k in seg.head.metadata
        ]
        return " ".join([seg.text, *extra])

    def _smooth(self, scores: np.ndarray, history: Sequence[Segment]) -> np.ndarray:
        """Add ``neighbor_weight`` x the scores of neighbours within ``neighbor_span``.

        ``scores`` holds one value per history segment, in history order; a neighbour at
        distance d counts ``neighbor_decay ** (d - 1)`` and only within the same session
        (``session_key`` metadata). Vectorized: O(history x span) numpy work.
        """
        nw, span = self.options.neighbor_weight, self.options.neighbor_span
        if nw <= 0 or span <= 0 or len(scores) < 2:
            return scores
        key = self.options.session_key
        labels = np.array([hash(seg.head.metadata.get(key)) for seg in history])
        out = scores.copy()
        for d in range(1, span + 1):
            w = nw * self.options.neighbor_decay ** (d - 1)
            same = labels[d:] == labels[:-d]
            out[:-d] += w * np.where(same, scores[d:], 0.0)
            out[d:] += w * np.where(same, scores[:-d], 0.0)
        return out

    @staticmethod
    def _key(seg: Segment) -> str:
        return seg.head.fingerprint + seg.head.id

    def _ensure(self, segments: Sequence[Segment]) -> None:
        """Tokenize (in one batch) the segments not seen yet; cache tokens and counts."""
        missing = [s for s in segments if self._key(s) not in self._tokens]
        if missing:
            for seg, toks in zip(missing, self._tokenize([self._doc(s) for s in missing])):
                key = self._key(seg)
                self._tokens[key] = toks
                self._counts[key] = Counter(toks)

    def _history_scores(self, window: Window) -> np.ndarray:
        """Smoothed relevance of every history segment to ``window.query``, max-normalized.

        Cached per (query, history length). For BM25 the per-term frequency arrays of the
        current query are kept and extended with new segments only, so a compaction in a
        tool loop (same query, a few new segments) costs O(new segments) in Python plus
        vectorized O(history) numpy work.
        """
        history = window.history
        key = (window.query, len(history))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        n = len(history)
        if not window.query.strip() or n == 0:
            scores = np.zeros(n)
        elif self._embed is not None:
            scores = self._cosine(history, window.query)
        else:
            scores = self._bm25_history(history, window.query)
        scores = self._smooth(scores, history)
        top = float(scores.max()) if n else 0.0
        scores = scores / top if top > 0 and math.isfinite(top) else np.zeros(n)
        self._cache = (key, scores)
        return scores

    def _bm25_history(self, history: Sequence[Segment], query: str) -> np.ndarray:
        """BM25 of every history segment for ``query``, reusing the query's tf arrays."""
        q = self._query_state
        n = len(history)
        if q is None or q["query"] != query or q["history"] is not history or q["n"] > n:
            terms = sorted(set(self._tokenize([query])[0]))
            q = {
                "query": query,
                "history": history,
                "n": 0,
                "terms": terms,
                "tf": {t: np.zeros(0) for t in terms},
                "lengths": np.zeros(0),
            }
            self._query_state = q
        if q["n"] < n:
            new = history[q["n"] :]
            self._ensure(new)
            counts = [self._counts[self._key(s)] for s in new]
            q["lengths"] = np.concatenate(
                [q["lengths"], np.fromiter((sum(c.values()) for c in counts), float, len(counts))]
            )
            for t in q["terms"]:
                add = np.fromiter((c.get(t, 0) for c in counts), float, len(counts))
                q["tf"][t] = np.concatenate([q["tf"][t], add])
            q["n"] = n
        return self._bm25_arrays(q["tf"], q["lengths"])

    def _bm25_arrays(self, tf_by_term: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """BM25 of every document from per-term frequency arrays (one array per query term).

        The Lucene variant, as ``bm25s.BM25(method="lucene")`` computes it (tested equal in
        ``tests/test_relevance.py``): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), term score
        = idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)) (bm25s leaves out the constant
        k1 + 1 factor too).
        """
        n = len(lengths)
        scores = np.zeros(n)
        if n == 0:
            return scores
        k1, b = self.options.k1, self.options.b
        norm = k1 * (1 - b + b * lengths / (float(lengths.mean()) or 1.0))
        for tf in tf_by_term.values():
            df = int(np.count_nonzero(tf))
            if df:
                scores += math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + norm)
        return scores

    def _cosine(self, segments: Sequence[Segment], query: str) -> np.ndarray:
        assert self._embed is not None
        keys = [self._key(s) for s in segments]
        todo = [i for i, k in enumerate(keys) if k not in self._vectors]
        if todo:
            vectors = self._embed([self._doc(segments[i]) for i in todo])
            for i, vec in zip(todo, vectors):
                self._vectors[keys[i]] = np.asarray(vec, dtype=float)
        matrix = np.stack([self._vectors[k] for k in keys])
        qvec = np.asarray(self._embed([query])[0], dtype=float)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(qvec) or 1.0)
        return np.maximum(0.0, matrix @ qvec / np.where(norms == 0, 1.0, norms))

    @hookimpl
    def ctxmgr_recall(
        self, window: Window, history: Sequence[Segment], candidates: AbstractSet[int]
    ) -> Iterable[int] | None:
        """On a new query, return the archived segments most relevant to it.

        Takes the best-scoring segments not already candidates, up to the target token
        budget (at most ``max_recall``); the eviction step then ranks them with the rest.
        """
        if not self.options.rerank_on_new_query:
            return None
        query = window.query.strip()
        # per conversation, so it is saved with the session (stores, clones)
        data = window.state.extra.setdefault(self.name, {})
        if not query or query == data.get("recalled_for"):
            return None
        data["recalled_for"] = query
        scores = self._history_scores(window)
        budget = window.budget.target_tokens
        out: list[int] = []
        for pos in np.argsort(-scores, kind="stable")[: self.options.max_recall + len(candidates)]:
            pos = int(pos)
            if scores[pos] <= 0 or budget <= 0 or len(out) >= self.options.max_recall:
                break
            if pos not in candidates:
                out.append(pos)
                budget -= history[pos].tokens
        return out

    @hookimpl
    def ctxmgr_wants_compaction(
        self, window: Window, new_segments: Sequence[Segment]
    ) -> str | None:
        """Ask for a re-selection when a new user message arrives and history was evicted."""
        if not self.options.rerank_on_new_query or len(window.state.archive) == 0:
            return None
        if any(s.role == "user" for s in new_segments):
            return "new query: re-rank by relevance"
        return None

    @hookimpl
    def ctxmgr_score(self, window: Window) -> Sequence[float] | None:
        """Blend history-wide relevance (looked up per candidate) with recency, in [0, 1]."""
        n = len(window.segments)
        if n == 0:
            return None
        if window.history and window.positions:
            rel = self._history_scores(window)[np.asarray(window.positions)]
        else:  # no history view (direct use): score the candidates themselves
            probe = Window(
                segments=window.segments,
                budget=window.budget,
                counter=window.counter,
                state=window.state,
                query=window.query,
                history=window.segments,
            )
            rel = self._history_scores(probe)
        rw = self.options.recency_weight
        recency = np.arange(n, dtype=float) / max(1, n - 1)
        return list((1 - rw) * rel + rw * recency)


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`RelevanceEviction`."""
    register(RelevanceEviction)
