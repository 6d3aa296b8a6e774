"""The relevance strategy's BM25 against the bm25s library it follows."""

from __future__ import annotations

from collections import Counter

import bm25s
import numpy as np
import pytest
from ctxmgr.strategies.relevance import RelevanceEviction

DOCS = [
    "the cat sat on the mat",
    "dogs chase cats in the park every morning",
    "a bird sings",
    "cat cat cat food for the hungry cat",
    "Caroline went to the LGBTQ support group yesterday",
]


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.3), (2.0, 1.0)])
@pytest.mark.parametrize("query", ["cat food", "support group", "bird morning park"])
def test_bm25_equals_bm25s_lucene(k1: float, b: float, query: str) -> None:
    """Scores from cached term counts equal bm25s.BM25(method="lucene").get_scores."""
    strategy = RelevanceEviction(RelevanceEviction.Options(k1=k1, b=b))
    tokens = strategy._tokenize(DOCS)
    terms = sorted(set(strategy._tokenize([query])[0]))
    counts = [Counter(t) for t in tokens]
    tf = {t: np.array([float(c.get(t, 0)) for c in counts]) for t in terms}
    lengths = np.array([float(len(t)) for t in tokens])
    ours = strategy._bm25_arrays(tf, lengths)
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(tokens, show_progress=False)
    known = [t for t in terms if t in retriever.vocab_dict]
    expected = retriever.get_scores(known)
    assert ours == pytest.approx(expected, rel=1e-5)
    assert ours.max() > 0
