"""Context windows (and, where published, maximum output) of common models, in tokens.

:func:`context_window` maps a model name to its context window: the most input + output
tokens one request may hold, as the provider documents it. Names are matched
case-insensitively, exactly first and then by the longest registered prefix that ends at a
separator (``-``, ``_``, ``:``, ``@`` or a space), so dated snapshots and suffixed variants
resolve to their family (``"gpt-4o-2024-08-06"`` -> ``gpt-4o``) while a new version number
does not silently match an older family (``"gpt-4.7"`` does not match ``gpt-4``). Provider
prefixes are ignored: everything up to the last ``/`` (``"anthropic/claude-3-5-sonnet"``,
``"models/gemini-2.0-flash"``), an OpenAI fine-tune ``ft:`` prefix, and Bedrock-style
``vendor.`` prefixes (``"us.anthropic.claude-3-7-sonnet-20250219-v1:0"``).

The values are the model's own window. A server may be configured smaller (Ollama's
``num_ctx``, vLLM's ``--max-model-len``): set ``max_context_tokens`` or pass ``overrides``
then. Where one family name covers versions with different windows, the unversioned name
maps to what the provider's ``-latest`` alias serves, and older snapshots are listed
explicitly; for open-weight models it maps to the window the model serves without extra
RoPE scaling (YaRN).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from ctxmgr.errors import ConfigError

__all__ = [
    "ModelInfo",
    "context_window",
    "known_models",
    "match_model",
    "max_output_tokens",
]


class ModelInfo(NamedTuple):
    """A registry entry.

    Attributes:
        context_window: the model's context window in tokens (input + output).
        max_output_tokens: the most output tokens one response may have, or ``None`` when
            the provider does not publish it separately.
    """

    context_window: int
    max_output_tokens: int | None = None


_K128 = 128_000  # OpenAI's "128,000 context window"
_K200 = 200_000

_REGISTRY: dict[str, ModelInfo] = {
    # -- OpenAI ----------------------------------------------------------------------------
    # Source: https://platform.openai.com/docs/models (each model's page: "context window",
    # "max output tokens"), and https://platform.openai.com/docs/deprecations for legacy ones.
    "gpt-4o": ModelInfo(_K128, 16_384),
    "gpt-4o-2024-05-13": ModelInfo(_K128, 4_096),
    "gpt-4o-mini": ModelInfo(_K128, 16_384),
    "chatgpt-4o-latest": ModelInfo(_K128, 16_384),
    "gpt-4.1": ModelInfo(1_047_576, 32_768),
    "gpt-4.1-mini": ModelInfo(1_047_576, 32_768),
    "gpt-4.1-nano": ModelInfo(1_047_576, 32_768),
    "gpt-4.5-preview": ModelInfo(_K128, 16_384),
    "gpt-4-turbo": ModelInfo(_K128, 4_096),
    "gpt-4-1106-preview": ModelInfo(_K128, 4_096),
    "gpt-4-0125-preview": ModelInfo(_K128, 4_096),
    "gpt-4-vision-preview": ModelInfo(_K128, 4_096),
    "gpt-4-1106-vision-preview": ModelInfo(_K128, 4_096),
    "gpt-4": ModelInfo(8_192, 8_192),
    "gpt-4-32k": ModelInfo(32_768, 32_768),
    "gpt-3.5-turbo": ModelInfo(16_385, 4_096),
    "gpt-3.5-turbo-0613": ModelInfo(4_096, 4_096),
    "gpt-3.5-turbo-0301": ModelInfo(4_096, 4_096),
    "gpt-3.5-turbo-instruct": ModelInfo(4_096, 4_096),
    "o1": ModelInfo(_K200, 100_000),
    "o1-pro": ModelInfo(_K200, 100_000),
    "o1-preview": ModelInfo(_K128, 32_768),
    "o1-mini": ModelInfo(_K128, 65_536),
    "o3": ModelInfo(_K200, 100_000),
    "o3-pro": ModelInfo(_K200, 100_000),
    "o3-mini": ModelInfo(_K200, 100_000),
    "o4-mini": ModelInfo(_K200, 100_000),
    "gpt-5": ModelInfo(400_000, 128_000),
    "gpt-5-mini": ModelInfo(400_000, 128_000),
    "gpt-5-nano": ModelInfo(400_000, 128_000),
    "gpt-5-chat": ModelInfo(_K128, 16_384),
    "gpt-5.1": ModelInfo(400_000, 128_000),
    # Source: https://huggingface.co/openai/gpt-oss-120b (config: max_position_embeddings).
    "gpt-oss-120b": ModelInfo(131_072),
    "gpt-oss-20b": ModelInfo(131_072),
    # -- Anthropic --------------------------------------------------------------------------
    # Source: https://docs.anthropic.com/en/docs/about-claude/models/overview ("Context
    # window: 200K" for every Claude 3 / 3.5 / 3.7 / 4 / 4.1 / 4.5 model; "Max output").
    # The 1M-token window of Sonnet 4 / 4.5 is a beta behind a request header, not the default.
    "claude-3-opus": ModelInfo(_K200, 4_096),
    "claude-3-sonnet": ModelInfo(_K200, 4_096),
    "claude-3-haiku": ModelInfo(_K200, 4_096),
    "claude-3-5-sonnet": ModelInfo(_K200, 8_192),
    "claude-3-5-haiku": ModelInfo(_K200, 8_192),
    "claude-3-7-sonnet": ModelInfo(_K200, 64_000),
    "claude-sonnet-4": ModelInfo(_K200, 64_000),
    "claude-opus-4": ModelInfo(_K200, 32_000),
    "claude-opus-4-1": ModelInfo(_K200, 32_000),
    "claude-sonnet-4-5": ModelInfo(_K200, 64_000),
    "claude-haiku-4-5": ModelInfo(_K200, 64_000),
    "claude-opus-4-5": ModelInfo(_K200, 64_000),
    # Dotted spellings used by gateways such as OpenRouter ("anthropic/claude-3.5-sonnet").
    "claude-3.5-sonnet": ModelInfo(_K200, 8_192),
    "claude-3.5-haiku": ModelInfo(_K200, 8_192),
    "claude-3.7-sonnet": ModelInfo(_K200, 64_000),
    "claude-opus-4.1": ModelInfo(_K200, 32_000),
    "claude-sonnet-4.5": ModelInfo(_K200, 64_000),
    "claude-haiku-4.5": ModelInfo(_K200, 64_000),
    "claude-opus-4.5": ModelInfo(_K200, 64_000),
    # Legacy (https://docs.anthropic.com/en/docs/about-claude/models/legacy-model-guide).
    "claude-2.1": ModelInfo(_K200, 4_096),
    "claude-2": ModelInfo(100_000, 4_096),
    "claude-instant-1.2": ModelInfo(100_000, 4_096),
    # -- Google -----------------------------------------------------------------------------
    # Source: https://ai.google.dev/gemini-api/docs/models ("Input token limit" /
    # "Output token limit" per model).
    "gemini-1.5-pro": ModelInfo(2_097_152, 8_192),
    "gemini-1.5-flash": ModelInfo(1_048_576, 8_192),
    "gemini-1.5-flash-8b": ModelInfo(1_048_576, 8_192),
    "gemini-2.0-flash": ModelInfo(1_048_576, 8_192),
    "gemini-2.0-flash-lite": ModelInfo(1_048_576, 8_192),
    "gemini-2.5-pro": ModelInfo(1_048_576, 65_536),
    "gemini-2.5-flash": ModelInfo(1_048_576, 65_536),
    "gemini-2.5-flash-lite": ModelInfo(1_048_576, 65_536),
    # -- Meta Llama -------------------------------------------------------------------------
    # Source: Meta's model cards (https://www.llama.com/docs/model-cards-and-prompt-formats/):
    # Llama 3.1 / 3.2 / 3.3 "128K" = 131,072 (config max_position_embeddings); Llama 3: 8K.
    # Spellings: Hugging Face ("llama-3.1-8b-instruct", "meta-llama-3.1-..."), Ollama
    # ("llama3.1:8b"), Groq ("llama3-70b-8192"), Bedrock ("meta.llama3-1-70b-instruct-v1:0").
    "llama-3.1": ModelInfo(131_072),
    "llama-3.2": ModelInfo(131_072),
    "llama-3.3": ModelInfo(131_072),
    "llama-3": ModelInfo(8_192),
    "meta-llama-3.1": ModelInfo(131_072),
    "meta-llama-3": ModelInfo(8_192),
    "llama3.1": ModelInfo(131_072),
    "llama3.2": ModelInfo(131_072),
    "llama3.3": ModelInfo(131_072),
    "llama3-1": ModelInfo(131_072),
    "llama3-2": ModelInfo(131_072),
    "llama3-3": ModelInfo(131_072),
    "llama3": ModelInfo(8_192),
    # -- Mistral ----------------------------------------------------------------------------
    # Source: https://docs.mistral.ai/getting-started/models/ ("128k" read as 131,072, the
    # models' max_position_embeddings; "256k" read conservatively as 256,000) and the
    # Hugging Face model cards for the open-weight models.
    "mistral-large": ModelInfo(131_072),
    "mistral-large-2402": ModelInfo(32_768),
    "mistral-medium": ModelInfo(131_072),
    "mistral-medium-2312": ModelInfo(32_768),
    "mistral-small": ModelInfo(131_072),
    "mistral-small-2402": ModelInfo(32_768),
    "mistral-small-2409": ModelInfo(32_768),
    "mistral-small-2501": ModelInfo(32_768),
    "codestral": ModelInfo(256_000),
    "codestral-2405": ModelInfo(32_768),
    "mistral-7b": ModelInfo(32_768),
    "open-mistral-7b": ModelInfo(32_768),
    "mixtral-8x7b": ModelInfo(32_768),
    "open-mixtral-8x7b": ModelInfo(32_768),
    "mixtral-8x22b": ModelInfo(65_536),
    "open-mixtral-8x22b": ModelInfo(65_536),
    "mistral-nemo": ModelInfo(131_072),
    "open-mistral-nemo": ModelInfo(131_072),
    "ministral-3b": ModelInfo(131_072),
    "ministral-8b": ModelInfo(131_072),
    "pixtral-12b": ModelInfo(131_072),
    "pixtral-large": ModelInfo(131_072),
    # -- Qwen -------------------------------------------------------------------------------
    # Source: the Qwen model cards on https://huggingface.co/Qwen ("Context Length").
    # Qwen2.5 7B-72B: "Full 131,072 tokens" (beyond 32,768 needs YaRN rope scaling enabled on
    # self-hosted servers); 0.5B-3B: 32,768. Qwen3: "32,768 natively" (131,072 with YaRN).
    # Qwen3 "-2507" releases and Qwen3-Coder: 262,144 natively.
    "qwen2": ModelInfo(32_768),
    "qwen2.5": ModelInfo(32_768),
    "qwen2.5-7b": ModelInfo(131_072),
    "qwen2.5-14b": ModelInfo(131_072),
    "qwen2.5-32b": ModelInfo(131_072),
    "qwen2.5-72b": ModelInfo(131_072),
    "qwen3": ModelInfo(32_768),
    "qwen3-4b-instruct-2507": ModelInfo(262_144),
    "qwen3-4b-thinking-2507": ModelInfo(262_144),
    "qwen3-30b-a3b-instruct-2507": ModelInfo(262_144),
    "qwen3-30b-a3b-thinking-2507": ModelInfo(262_144),
    "qwen3-235b-a22b-instruct-2507": ModelInfo(262_144),
    "qwen3-235b-a22b-thinking-2507": ModelInfo(262_144),
    "qwen3-coder": ModelInfo(262_144),
}

_BY_LENGTH: tuple[str, ...] = tuple(sorted(_REGISTRY, key=len, reverse=True))
_SEPARATORS = frozenset("-_:@ ")
_VENDOR_DOTS = re.compile(r"^(?:[a-z]+\.)+")  # Bedrock: "anthropic.", "us.anthropic.", "meta."
_EXAMPLES = ("gpt-4o", "gpt-4.1", "o3", "claude-sonnet-4-5", "gemini-2.5-pro", "llama-3.1")


def _normalize(model: str) -> str:
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:]
    name = name.rsplit("/", 1)[-1]
    return _VENDOR_DOTS.sub("", name)


def _lookup(name: str, keys: Mapping[str, object], by_length: tuple[str, ...]) -> str | None:
    if name in keys:
        return name
    for key in by_length:
        if len(name) > len(key) and name.startswith(key) and name[len(key)] in _SEPARATORS:
            return key
    return None


def match_model(model: str) -> str | None:
    """Return the registry name ``model`` resolves to, or ``None`` when it is unknown.

    Args:
        model: a model name as a provider or framework spells it.

    Returns:
        The matching key of :func:`known_models` (exact match, else longest prefix ending at
        a separator), e.g. ``"gpt-4o"`` for ``"openai/gpt-4o-2024-08-06"``.
    """
    return _lookup(_normalize(model), _REGISTRY, _BY_LENGTH)


def _check_overrides(overrides: Mapping[str, int]) -> dict[str, int]:
    clean: dict[str, int] = {}
    for key, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(
                f"context window override for {key!r} must be a positive int (tokens), "
                f"got {value!r}"
            )
        clean[str(key).strip().lower()] = value
    return clean


def context_window(model: str, *, overrides: Mapping[str, int] | None = None) -> int:
    """Return the context window of ``model``, in tokens (input + output).

    ``overrides`` are consulted first, with the same matching rules (exact, then longest
    prefix; tried on the name as given and with provider prefixes removed), then the
    built-in registry (sources per family in this module).

    Args:
        model: a model name, e.g. ``"gpt-4o-2024-08-06"`` or ``"anthropic/claude-3-5-sonnet"``.
        overrides: ``{model name or prefix: tokens}`` that win over the registry.

    Returns:
        The context window in tokens, e.g. 128,000 for gpt-4o.

    Raises:
        ConfigError: an override is not a positive int, or ``model`` is unknown (the
            message says to set ``max_context_tokens`` explicitly and lists known names).
    """
    normalized = _normalize(model)
    if overrides:
        table = _check_overrides(overrides)
        by_length = tuple(sorted(table, key=len, reverse=True))
        for candidate in (model.strip().lower(), normalized):
            key = _lookup(candidate, table, by_length)
            if key is not None:
                return table[key]
    key = _lookup(normalized, _REGISTRY, _BY_LENGTH)
    if key is None:
        raise ConfigError(
            f"unknown model {model!r}: its context window is not in ctxmgr's registry; set "
            f"max_context_tokens explicitly (or pass a model override). Known models include "
            f"{', '.join(_EXAMPLES)} (see ctxmgr.models.known_models())",
            key="max_context_tokens",
        )
    return _REGISTRY[key].context_window


def max_output_tokens(model: str) -> int | None:
    """Return the published maximum output tokens of ``model``, or ``None``.

    Args:
        model: a model name (matched like :func:`context_window`).

    Returns:
        The maximum output tokens per response, or ``None`` when the model is unknown or its
        provider publishes no separate output limit.
    """
    key = match_model(model)
    return None if key is None else _REGISTRY[key].max_output_tokens


def known_models() -> dict[str, int]:
    """Return a copy of the registry as ``{model name: context window in tokens}``."""
    return {name: info.context_window for name, info in _REGISTRY.items()}
