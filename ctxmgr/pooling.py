"""Mean-pooled static embeddings with a word-level token cache (WordLlama, bit-identical).

WordLlama (Miller, 2024, https://github.com/dleemiller/WordLlama) embeds a text as the
mean of its tokens' static vectors. Its ``embed`` tokenizes every text whole with the
Llama-2 SentencePiece BPE, which has no pre-tokenizer: a 2,000-character tool result is
one BPE sequence (about 0.7 M tokens/s on one core), and a batch is padded to its longest
text before the vectors are gathered. :class:`PooledEmbedder` gives the same vectors
faster:

* a text is split at every single space between two non-space characters and each piece
  is tokenized once in the process's life (a dict cache). This is exact for a vocabulary
  in which the word-boundary marker ``▁`` appears inside a token only in runs of ``▁``
  (checked at construction, else every text is tokenized whole): no BPE merge can then
  join the end of one piece with the ``▁`` that starts the next, so the token sequence
  of a text is the concatenation of its pieces' sequences;
* texts are pooled in batches of similar token counts (padding under a quarter, where
  one batch of a short question and a 2,000-character tool result was mostly padding)
  with WordLlama's own expressions (a float32 sum over tokens in token order, padding
  zeroed, divided by the token count, L2-normalized as ``WordLlama.embed(norm=True)``
  does); a row's sum does not depend on the padding or the other rows of its batch.

``tests/test_pooling.py`` checks the result equals ``WordLlama.embed`` (``np.array_equal``:
bit for bit, except that a component that is exactly zero may be ``-0.0`` in one and
``0.0`` in the other, which compare equal).
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Any

import numpy as np

__all__ = ["PooledEmbedder"]

_BOUNDARY = re.compile(r"(?<=[^ ]) (?=[^ ])")
_CACHE_LIMIT = 100_000  # pieces (~15 MB at most, process-wide); cleared when it grows past
_BATCH_TOKENS = 16_384  # padded tokens gathered at once (16 MB of float32 at 256 dims)


def _pieces(text: str) -> list[str]:
    """The pieces of ``_BOUNDARY.split(text)``, by ``str.split`` where that is the same.

    With no run of spaces and none at either end, every space sits between two non-space
    characters, so splitting at every space gives the same pieces.
    """
    if "  " in text or text.startswith(" ") or text.endswith(" "):
        return _BOUNDARY.split(text)
    return text.split(" ")


class PooledEmbedder:
    """Normalized mean-pooled embeddings of texts for a loaded ``WordLlama`` model.

    Args:
        model: a ``wordllama.WordLlama`` instance (its ``embedding`` matrix and
            ``tokenizer`` are used; nothing is modified).
    """

    def __init__(self, model: Any) -> None:
        from tokenizers import Tokenizer

        self.embedding: np.ndarray = model.embedding
        # an unpadded copy of the model's tokenizer (the model's own pads every batch)
        self._tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        vocab = self._tokenizer.get_vocab()
        self.split = all("▁" not in t[1:] or set(t) == {"▁"} for t in vocab)
        self._cache: dict[str, list[int]] = {}

    def _encode(self, texts: list[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [e.ids for e in encodings]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens), as ``WordLlama.tokenize`` gives."""
        if not self.split:
            return self._encode(texts)
        cache = self._cache  # shared by the threads of a process: read into a local map
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        pieces = [_pieces(t) for t in texts]
        local: dict[str, list[int] | None] = dict.fromkeys(chain.from_iterable(pieces))
        for p in local:
            local[p] = cache.get(p)
        missing = [p for p, ids in local.items() if ids is None]
        if missing:
            encoded = dict(zip(missing, self._encode(missing)))
            local.update(encoded)
            cache.update(encoded)
        get = local.__getitem__  # every piece is a list of ids now
        return [list(chain.from_iterable(map(get, ps))) for ps in pieces]  # type: ignore[arg-type]

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (not mutated): float32 (len(texts), dim), rows L2-normalized.

        A text with no token gets a row of NaN, as ``WordLlama.embed(norm=True)`` does.
        """
        embedding = self.embedding
        ids = self.token_ids(texts)
        counts = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        sums = np.zeros((len(texts), embedding.shape[1]), dtype=np.float32)
        order = np.argsort(counts, kind="stable")
        top = embedding.shape[0] - 1
        i, n = int(np.searchsorted(counts[order], 1)), len(order)  # empty texts stay zero
        while i < n:  # batches of similar length: padding stays under a quarter
            limit = max(int(counts[order[i]] * 1.25), int(counts[order[i]]) + 8)
            j = i + 1
            while j < n and counts[order[j]] <= limit and (j + 1 - i) * limit <= _BATCH_TOKENS:
                j += 1
            rows = order[i:j]
            lengths = counts[rows]
            width = int(lengths[-1])
            # row r holds the ids of text rows[r], then zeros (valid: where its ids are)
            valid = np.arange(width) < lengths[:, np.newaxis]
            padded = np.zeros((len(rows), width), dtype=np.int32)
            flat = chain.from_iterable([ids[k] for k in rows.tolist()])
            padded[valid] = np.fromiter(flat, dtype=np.int32, count=int(lengths.sum()))
            np.clip(padded, 0, top, out=padded)
            # WordLlama.avg_pool's float32 sums over the tokens, in token order; it multiplies
            # by a 0/1 mask, here the padding rows are zeroed: a token's vector times 1.0 is
            # itself, and a padding adds +0.0 where the mask added +-0.0 (the same sum; at
            # most the sign of an exactly zero component differs, and -0.0 == 0.0)
            gathered = embedding[padded]
            gathered[~valid] = 0.0
            sums[rows] = np.sum(gathered, axis=1, dtype=np.float32)
            i = j
        sums /= np.maximum(counts, 1).astype(np.float32)[:, np.newaxis]
        with np.errstate(invalid="ignore", divide="ignore"):
            sums /= np.linalg.norm(sums, axis=1, keepdims=True)
        return sums
