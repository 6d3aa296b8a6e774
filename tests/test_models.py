"""Tests for ctxmgr.models: the context-window registry and its name matching."""

from __future__ import annotations

import pytest

from ctxmgr.errors import ConfigError
from ctxmgr.models import context_window, known_models, match_model, max_output_tokens


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-4", 8_192),
        ("gpt-3.5-turbo", 16_385),
        ("o1", 200_000),
        ("o4-mini", 200_000),
        ("gpt-5", 400_000),
        ("claude-3-5-sonnet", 200_000),
        ("claude-sonnet-4-5", 200_000),
        ("gemini-1.5-pro", 2_097_152),
        ("gemini-2.5-flash", 1_048_576),
        ("llama-3.3", 131_072),
        ("mixtral-8x7b", 32_768),
        ("mistral-large", 131_072),
        ("qwen3", 32_768),
    ],
)
def test_exact_match(model: str, tokens: int) -> None:
    """Registered names return their documented window."""
    assert context_window(model) == tokens


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("llama-3.1-8b-instruct", "llama-3.1"),
        ("llama-3-70b", "llama-3"),
        ("llama3.1:8b", "llama3.1"),
        ("qwen2.5-72b-instruct", "qwen2.5-72b"),
    ],
)
def test_longest_prefix_match(model: str, key: str) -> None:
    """Dated snapshots and suffixed variants resolve to the longest registered prefix."""
    assert match_model(model) == key
    assert context_window(model) == known_models()[key]


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("anthropic/claude-3-5-sonnet-latest", 200_000),
        ("openrouter/anthropic/claude-3.5-sonnet", 200_000),
        ("meta-llama/Llama-3.3-70B-Instruct", 131_072),
        ("models/gemini-2.0-flash", 1_048_576),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 200_000),
        ("meta.llama3-1-70b-instruct-v1:0", 131_072),
        ("ft:gpt-4o-mini-2024-07-18:my-org::abc123", 128_000),
        ("  GPT-4o  ", 128_000),
    ],
)
def test_provider_prefixes_and_case(model: str, tokens: int) -> None:
    """Provider prefixes, Bedrock vendor prefixes, ft: and case are ignored."""
    assert context_window(model) == tokens


def test_prefix_needs_separator() -> None:
    """A prefix only matches at a separator: a new version never falls into an old family."""
    assert match_model("gpt-4.7") is None
    assert match_model("gpt-4x") is None
    with pytest.raises(ConfigError):
        context_window("gpt-4.7")


def test_snapshot_with_different_window() -> None:
    """Explicit legacy snapshots beat their family prefix."""
    assert context_window("gpt-3.5-turbo-0613") == 4_096
    assert context_window("gpt-4-1106-preview") == 128_000
    assert context_window("mistral-large-2402") == 32_768


def test_overrides_win() -> None:
    """Overrides beat the registry, with the same prefix matching."""
    overrides = {"gpt-4o": 64_000, "my-local-model": 4_096}
    assert context_window("gpt-4o-2024-08-06", overrides=overrides) == 64_000
    assert context_window("my-local-model-q4", overrides=overrides) == 4_096
    assert context_window("gpt-4.1", overrides=overrides) == 1_047_576
    assert context_window("vllm/My-Local-Model", overrides=overrides) == 4_096


def test_override_with_provider_prefix() -> None:
    """An override key may include the provider prefix."""
    assert context_window("azure/prod-deploy", overrides={"azure/prod-deploy": 32_000}) == 32_000


@pytest.mark.parametrize("bad", [0, -5, 1.5, "8k", True])
def test_bad_override_is_config_error(bad: object) -> None:
    """A non-positive or non-int override raises ConfigError."""
    with pytest.raises(ConfigError, match="positive int"):
        context_window("gpt-4o", overrides={"gpt-4o": bad})  # type: ignore[dict-item]


def test_unknown_model_error() -> None:
    """An unknown model raises ConfigError telling to set max_context_tokens, with examples."""
    with pytest.raises(ConfigError, match="max_context_tokens") as info:
        context_window("totally-unknown-model")
    assert "gpt-4o" in str(info.value)
    assert info.value.key == "max_context_tokens"


def test_known_models_is_a_copy() -> None:
    """known_models returns a fresh dict; mutating it does not change the registry."""
    models = known_models()
    models["gpt-4o"] = 1
    del models["o1"]
    assert context_window("gpt-4o") == 128_000
    assert known_models()["o1"] == 200_000


def test_registry_is_well_formed() -> None:
    """Every key is lower-case without a provider prefix and every window is positive."""
    for name, tokens in known_models().items():
        assert name == name.strip().lower() and "/" not in name
        assert isinstance(tokens, int) and tokens > 0
        assert match_model(name) == name


def test_max_output_tokens() -> None:
    """Published output limits resolve like context windows; unknown gives None."""
    assert max_output_tokens("gpt-4o-2024-08-06") == 16_384
    assert max_output_tokens("claude-3-7-sonnet-latest") == 64_000
    assert max_output_tokens("llama-3.1-8b") is None
    assert max_output_tokens("totally-unknown-model") is None
