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
from typing import Any

import bm25s
import numpy as np
from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["RelevanceEviction"]


class RelevanceOptions(StrategyOptions):
    """Options of :class:`RelevanceEviction`.

    Attributes:
        embedder: ``None`` for BM25, or ``"module:function"`` naming a callable
            ``f(texts: list[str]) -> list[list[float]]``.
        recency_weight: share of recency in the blended score, in [0, 1].
        neighbor_weight: share of the neighbours' relevance added to a segment's own
            (dialogue answers sit next to the turn that matches the question).
        rerank_on_new_query: re-select on every new user message (the question changed),
            recalling relevant archived segments; costs a prompt-cache miss on that turn.
        max_recall: at most this many archived segments recalled per new query.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalization.
        stemmer: Snowball stemmer language, or ``None``.
        stopwords: ``"en"`` or ``None``.
    """

    embedder: str | None = None
    recency_weight: float = Field(default=0.2, ge=0, le=1)
    neighbor_weight: float = Field(default=0.0, ge=0, le=1)
    rerank_on_new_query: bool = True
    max_recall: int = Field(default=256, ge=0)
    k1: float = Field(default=1.2, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)
    stemmer: str | None = "english"
    stopwords: str | None = "en"


class RelevanceEviction(Strategy):
    """Evicts the segments least relevant to the current query first."""

    name = "relevance"
    summary = "scores segments by BM25 (or embeddings) against the current query, plus recency"
    Options = RelevanceOptions
    options: RelevanceOptions

    def __init__(self, options: StrategyOptions | None = None, *, weight: float = 1.0):
        super().__init__(options, weight=weight)
        self._tokens: dict[str, list[str]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._history_index: tuple[Any, int] | None = None
        self._recalled_for = ""
        self._vectors: dict[str, Any] = {}
        self._stemmer: Any = None
        if self.options.stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.options.stemmer)
        self._embed: Callable[[list[str]], Any] | None = None
        if self.options.embedder:
            module, _, attr = self.options.embedder.partition(":")
            self._embed = getattr(importlib.import_module(module), attr)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        out = bm25s.tokenize(
            texts,
            stopwords=self.options.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in out]  # type: ignore[union-attr]

    @staticmethod
    def _key(seg: Segment) -> str:
        return seg.head.fingerprint + seg.head.id

    def _ensure(self, segments: Sequence[Segment]) -> None:
        """Tokenize (in one batch) the segments not seen yet; cache tokens and counts."""
        missing = [s for s in segments if self._key(s) not in self._tokens]
        if missing:
            for seg, toks in zip(missing, self._tokenize([s.text for s in missing])):
                key = self._key(seg)
                self._tokens[key] = toks
                self._counts[key] = Counter(toks)

    @hookimpl
    def ctxmgr_recall(
        self, window: Window, history: Sequence[Segment], candidates: AbstractSet[int]
    ) -> Iterable[int] | None:
        """On a new query, return archived segments that match it (BM25 over the history).

        The history index is rebuilt only when the history grew by a quarter (at least
        64 segments) since the last build, so recall costs amortized O(1) indexing per
        segment plus one BM25 query; segments newer than the index are still candidates
        through the current context.
        """
        if not self.options.rerank_on_new_query or self._embed is not None:
            return None
        query = window.query.strip()
        if not query or query == self._recalled_for:
            return None
        self._recalled_for = query
        n = len(history)
        built = self._history_index[1] if self._history_index else 0
        if self._history_index is None or n - built >= max(64, built // 4):
            self._ensure(history)
            retriever = bm25s.BM25(k1=self.options.k1, b=self.options.b)
            retriever.index(
                [self._tokens[self._key(s)] or ["\x00"] for s in history], show_progress=False
            )
            self._history_index = (retriever, n)
        retriever, built = self._history_index
        known = [t for t in self._tokenize([query])[0] if t in retriever.vocab_dict]
        if not known:
            return None
        scores = np.asarray(retriever.get_scores(known))
        budget = window.budget.target_tokens
        out = []
        for pos in np.argsort(-scores, kind="stable")[: self.options.max_recall]:
            pos = int(pos)
            if scores[pos] <= 0 or budget <= 0:
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

    def _relevance(self, window: Window) -> np.ndarray:
        segs = window.segments
        n = len(segs)
        if not window.query.strip():
            return np.zeros(n)
        if self._embed is not None:
            keys = [self._key(s) for s in segs]
            todo = [i for i, k in enumerate(keys) if k not in self._vectors]
            if todo:
                vectors = self._embed([segs[i].text for i in todo])
                for i, vec in zip(todo, vectors):
                    self._vectors[keys[i]] = np.asarray(vec, dtype=float)
            matrix = np.stack([self._vectors[k] for k in keys])
            query = np.asarray(self._embed([window.query])[0], dtype=float)
            norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
            return np.asarray(matrix @ query / np.where(norms == 0, 1.0, norms))
        self._ensure(segs)
        query_tokens = set(self._tokenize([window.query])[0])
        if not query_tokens:
            return np.zeros(n)
        return self._bm25([self._counts[self._key(s)] for s in segs], query_tokens)

    def _bm25(self, docs: Sequence[Counter[str]], query: set[str]) -> np.ndarray:
        """BM25 scores of ``docs`` (term counts) for ``query`` terms.

        The Lucene variant (the ``bm25s`` default): idf = ln(1 + (N - df + 0.5) /
        (df + 0.5)), term score = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl /
        avgdl)). Computed from per-segment counts cached at tokenization, so a compaction
        costs O(candidates x query terms) with no index to build.
        """
        n = len(docs)
        lengths = np.fromiter((sum(c.values()) for c in docs), dtype=float, count=n)
        avgdl = float(lengths.mean()) or 1.0
        k1, b = self.options.k1, self.options.b
        norm = k1 * (1 - b + b * lengths / avgdl)
        scores = np.zeros(n)
        for term in query:
            tf = np.fromiter((c.get(term, 0) for c in docs), dtype=float, count=n)
            df = int(np.count_nonzero(tf))
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores += idf * tf * (k1 + 1) / (tf + norm)
        return scores

    @hookimpl
    def ctxmgr_score(self, window: Window) -> Sequence[float] | None:
        """Blend normalized relevance (with neighbour smoothing) and recency, in [0, 1]."""
        n = len(window.segments)
        if n == 0:
            return None
        rel = self._relevance(window)
        top = float(rel.max()) if n else 0.0
        if top > 0 and math.isfinite(top):
            rel = rel / top
        else:
            rel = np.zeros(n)
        nw = self.options.neighbor_weight
        if nw > 0 and n > 1:
            padded = np.pad(rel, 1)
            neighbours = np.maximum(padded[:-2], padded[2:])
            rel = np.minimum(1.0, rel + nw * neighbours)
        rw = self.options.recency_weight
        recency = np.arange(n, dtype=float) / max(1, n - 1)
        return list((1 - rw) * rel + rw * recency)


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`RelevanceEviction`."""
    register(RelevanceEviction)
