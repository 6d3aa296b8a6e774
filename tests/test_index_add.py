"""ctxmgr.index: the vectorized ``HistoryIndex.add`` builds what a term-by-term loop builds."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxmgr import index as index_mod
from ctxmgr.index import HistoryIndex, TermCounts
from ctxmgr.messages import Message
from ctxmgr.segments import Segment


def _reference(batches: list[list[list[str]]], roles: list[str]) -> dict[str, object]:
    """The per-document loop ``add`` used before it was vectorized (one batch per add)."""
    vocab: dict[str, int] = {}
    docs: list[int] = []
    terms: list[int] = []
    tfs: list[float] = []
    df: Counter[int] = Counter()
    lengths: list[float] = []
    questions: list[int] = []
    last_user = -1
    doc = 0
    for batch in batches:
        for toks in batch:
            counts = Counter(vocab.setdefault(t, len(vocab)) for t in toks)
            docs += [doc] * len(counts)
            terms += list(counts)
            tfs += [float(v) for v in counts.values()]
            df.update(counts.keys())
            lengths.append(float(len(toks)))
            questions.append(last_user)
            if roles[doc] == "user":
                last_user = doc
            doc += 1
    return {
        "vocab": vocab,
        "postings": list(zip(docs, terms, tfs)),
        "df": [df[i] for i in range(len(vocab))],
        "lengths": lengths,
        "questions": questions,
    }


def _layout(postings: list[tuple[int, int, float]], n_docs: int, chunk: int) -> list[object]:
    """Sealed chunks as built from ``postings`` (their arrays), then the open postings."""
    out: list[object] = []
    for lo in range(0, n_docs - n_docs % chunk, chunk):
        part = [p for p in postings if lo <= p[0] < lo + chunk]
        sealed = index_mod._Sealed(
            np.array([p[0] for p in part], dtype=np.int32),
            np.array([p[1] for p in part], dtype=np.int32),
            np.array([p[2] for p in part], dtype=np.float32),
        )
        out.append([a.tolist() for a in (sealed.terms, sealed.lo, sealed.docs, sealed.tf)])
    out.append([p for p in postings if p[0] >= n_docs - n_docs % chunk])
    return out


def _actual(index: HistoryIndex) -> list[object]:
    out: list[object] = [[a.tolist() for a in (c.terms, c.lo, c.docs, c.tf)] for c in index._sealed]
    out.append(
        list(zip(index._open_docs.tolist(), index._open_terms.tolist(), index._open_tf.tolist()))
    )
    return out


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(
        st.lists(st.sampled_from(["cat", "dog", "mat", "sun", "sea", "sky", "owl"]), max_size=9),
        min_size=1,
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
    chunk=st.sampled_from([2, 3, 5, 4096]),
    counted=st.lists(st.booleans(), max_size=30),
)
def test_vectorized_add_equals_the_term_by_term_loop(
    docs: list[list[str]], cuts: list[int], chunk: int, counted: list[bool]
) -> None:
    """Vocabulary ids, postings (order included), df, lengths and questions are identical.

    The order of postings inside a document (first occurrence) and of new term ids fixes
    the floating-point summation order of BM25, so a cold worker scores bit for bit as a
    manager that indexed the same segments one fit at a time. Documents given as
    ``TermCounts`` (a store's feature rows), all or some, build the same index.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index_mod, "CHUNK", chunk)
        bounds = sorted({0, len(docs), *(c for c in cuts if c <= len(docs))})
        batches = [docs[a:b] for a, b in pairwise(bounds)]
        roles = ["user" if i % 3 == 0 else "assistant" for i in range(len(docs))]
        texts = {i: " ".join(toks) for i, toks in enumerate(docs)}
        by_text: dict[str, list[str] | TermCounts] = {}
        for i, toks in enumerate(docs):
            c = Counter(toks)
            as_counts = i < len(counted) and counted[i]
            by_text[texts[i]] = TermCounts(list(c), list(c.values())) if as_counts else toks
        index = HistoryIndex(
            lambda batch: [by_text[t] for t in batch], lambda seg: seg.head.text, lambda seg: 0
        )
        start = 0
        for batch in batches:
            index.add(
                [
                    Segment((Message(roles[i], texts[i], id=f"m{i}"),), i, 1)
                    for i in range(start, start + len(batch))
                ]
            )
            start += len(batch)
        expected = _reference(batches, roles)
        assert index.vocab == expected["vocab"]
        postings = expected["postings"]
        assert _actual(index) == _layout(postings, len(docs), chunk)  # type: ignore[arg-type]
        assert index.df.view().tolist()[: len(index.vocab)] == expected["df"]
        assert index.lengths.view().tolist() == expected["lengths"]
        assert index.question.view().tolist() == expected["questions"]
        assert index.total_length == sum(expected["lengths"])  # type: ignore[arg-type]
        assert len(index._sealed) == len(docs) // chunk
        assert np.all(index.df.view() >= 0)
