"""What the adapters learn from the framework's model object and from the provider's answers.

Framework-free (duck-typed; no framework or provider SDK is imported):

* :class:`ModelFacts` and :func:`langchain_facts` / :func:`llamaindex_facts` /
  :func:`autogen_facts`: the model name, context window and provider of a framework's model
  object, so ``from_config("agent")`` needs no ``max_context_tokens``;
* :class:`ManagerSpec`: a manager built once those facts are known (an explicit
  ``max_context_tokens`` / ``model`` / ``provider`` in the config still wins);
* :func:`context_length_error`: recognizes a provider's context-length-exceeded answer in the
  exception a client raised, with the provider's numbers;
* :func:`usage_of` / :func:`stop_reason_of`: the prompt tokens and the stop reason a response
  reports, for ``ContextManager.record_usage`` / ``record_stop``.

Provider documents the recognizers follow:

* OpenAI: ``code == "context_length_exceeded"``, "This model's maximum context length is N
  tokens. However, your messages resulted in M tokens."
  (https://platform.openai.com/docs/guides/error-codes/api-errors); ``finish_reason ==
  "length"`` (https://platform.openai.com/docs/api-reference/chat/object); Responses
  ``incomplete_details.reason == "max_output_tokens"``
  (https://platform.openai.com/docs/api-reference/responses/object).
* Anthropic: 400 ``invalid_request_error`` "prompt is too long: M tokens > N maximum"
  (https://docs.anthropic.com/en/api/errors); ``stop_reason`` ``"max_tokens"`` /
  ``"model_context_window_exceeded"`` (https://docs.anthropic.com/en/api/handling-stop-reasons).
* Gemini: 400 ``INVALID_ARGUMENT`` "The input token count (M) exceeds the maximum number of
  tokens allowed (N)." (https://ai.google.dev/gemini-api/docs/troubleshooting);
  ``finishReason == "MAX_TOKENS"`` (https://ai.google.dev/api/generate-content#FinishReason).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctxmgr.errors import ConfigError

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.config import CtxmgrConfig

__all__ = [
    "GROWING_STOPS",
    "ManagerSpec",
    "ModelFacts",
    "ProviderOverflow",
    "autogen_facts",
    "context_length_error",
    "langchain_facts",
    "llamaindex_facts",
    "provider_of",
    "stop_reason_of",
    "usage_of",
]

GROWING_STOPS = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
"""Normalized stop reasons meaning the reply was cut for room (the reserve should grow)."""


# ---------------------------------------------------------------------------------------
# Model facts
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What a framework's model object tells about the model it calls.

    Attributes:
        model: the model name (``"gpt-4o"``, ``"claude-sonnet-4-5"``), or ``None``.
        window: the context window in tokens the framework publishes for it (LangChain
            ``profile["max_input_tokens"]``, LlamaIndex ``metadata.context_window``), or
            ``None`` (then ctxmgr's model registry sizes it from ``model``).
        provider: ``"openai"``, ``"anthropic"`` or ``"gemini"``, or ``None`` when unknown.
        source: the object's class, named in error messages.
    """

    model: str | None = None
    window: int | None = None
    provider: str | None = None
    source: str = "model"


def provider_of(*hints: Any) -> str | None:
    """Return the provider named by the first hint that names one (class path, model name).

    Args:
        hints: strings such as a class's module and name or a model name; ``None`` skipped.

    Returns:
        ``"anthropic"`` (anthropic, claude), ``"gemini"`` (google, gemini, genai, vertex),
        ``"openai"`` (openai, gpt, o1/o3/o4), or ``None``.
    """
    for hint in hints:
        if not hint:
            continue
        text = str(hint).lower()
        if "anthropic" in text or "claude" in text:
            return "anthropic"
        if any(word in text for word in ("gemini", "google", "genai", "vertex")):
            return "gemini"
        if "openai" in text or text.startswith(("gpt", "o1", "o3", "o4", "chatgpt")):
            return "openai"
    return None


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def langchain_facts(model: Any) -> ModelFacts:
    """Facts of a LangChain chat model (a ``bind_tools`` binding is unwrapped).

    The name comes from ``model_name`` or ``model``; the window from the model's ``profile``
    (``max_input_tokens``, published by the provider packages since langchain-core 1.0).
    """
    inner = model
    for _ in range(5):  # RunnableBinding / configurable wrappers
        bound = getattr(inner, "bound", None)
        if bound is None or bound is inner:
            break
        inner = bound
    name = getattr(inner, "model_name", None) or getattr(inner, "model", None)
    name = name if isinstance(name, str) and name else None
    profile = getattr(inner, "profile", None)
    window = (
        _positive_int(profile.get("max_input_tokens")) if isinstance(profile, Mapping) else None
    )
    llm_type = getattr(inner, "_llm_type", None)
    llm_type = llm_type if isinstance(llm_type, str) else None
    provider = provider_of(_class_path(inner), llm_type, name)
    return ModelFacts(name, window, provider, type(inner).__name__)


def llamaindex_facts(llm: Any) -> ModelFacts:
    """Facts of a LlamaIndex LLM: ``llm.metadata.model_name`` / ``context_window``."""
    meta = getattr(llm, "metadata", None)
    name = getattr(meta, "model_name", None) or getattr(llm, "model", None)
    name = name if isinstance(name, str) and name and name != "unknown" else None
    window = _positive_int(getattr(meta, "context_window", None))
    provider = provider_of(_class_path(llm), name)
    return ModelFacts(name, window, provider, type(llm).__name__)


def autogen_facts(client: Any) -> ModelFacts:
    """Facts of an AutoGen ``ChatCompletionClient``: model name and ``model_info`` family.

    AutoGen publishes no context window in ``model_info``; ctxmgr's registry sizes it from
    the model name.
    """
    name = None
    for attr in ("_create_args", "_raw_config"):
        args = getattr(client, attr, None)
        if isinstance(args, Mapping) and isinstance(args.get("model"), str):
            name = args["model"]
            break
    info = getattr(client, "model_info", None)
    family = info.get("family") if isinstance(info, Mapping) else None
    provider = provider_of(_class_path(client), name, family)
    return ModelFacts(name, None, provider, type(client).__name__)


# ---------------------------------------------------------------------------------------
# Managers built from the facts
# ---------------------------------------------------------------------------------------
class ManagerSpec:
    """A ``ContextManager`` to build when the framework's model is known.

    ``from_config("agent")`` cannot size the window before the adapter sees the model; this
    holds the config and builds the manager with the model's facts filled in where the
    config leaves them unset (an explicit ``max_context_tokens``, ``model`` or ``provider``
    wins).

    Args:
        config: what ``ContextManager.from_config`` accepts (preset, path, mapping).
        summarizer: summarizer for the manager.
        counter: token counter for the manager.
        overrides: config keys to override; ``store`` and ``conversation_id`` are passed to
            ``ContextManager.from_config`` as such (a stored session).
        adapter: the adapter's name, for error messages.

    Raises:
        ConfigError: the config is invalid.
    """

    def __init__(
        self,
        config: Any,
        summarizer: Any = None,
        counter: Any = None,
        overrides: Mapping[str, Any] | None = None,
        adapter: str = "adapter",
    ) -> None:
        from ctxmgr.config import load_config

        keys = dict(overrides or {})
        # not config keys: where the session state lives (see ContextManager.from_config)
        self.store = keys.pop("store", None)
        self.conversation_id = keys.pop("conversation_id", None)
        self.config: CtxmgrConfig = load_config(config, **keys)
        self.summarizer = summarizer
        self.counter = counter
        self.adapter = adapter

    @property
    def sized(self) -> bool:
        """Whether the config alone sizes the window (``max_context_tokens`` or a model)."""
        return self.config.max_context_tokens is not None or bool(self.config.model)

    def config_for(self, facts: ModelFacts | None) -> CtxmgrConfig:
        """The config with ``facts`` filled in where the user left a key unset."""
        from ctxmgr.config import CtxmgrConfig

        cfg = self.config
        update: dict[str, Any] = {}
        if facts is not None:
            if not cfg.model and facts.model:
                update["model"] = facts.model
            if cfg.max_context_tokens is None and facts.window is not None:
                update["max_context_tokens"] = facts.window
            if (
                "provider" in CtxmgrConfig.model_fields
                and getattr(cfg, "provider", "auto") == "auto"
                and facts.provider
            ):
                update["provider"] = facts.provider
        if not update:
            return cfg
        return CtxmgrConfig.model_validate({**cfg.model_dump(), **update})

    def build(self, facts: ModelFacts | None = None) -> ContextManager:
        """Build the manager for the model described by ``facts`` (``None``: config only).

        Raises:
            ConfigError: the window is still unknown (no ``max_context_tokens``, and the model
                is unnamed or not in ctxmgr's registry); the message says what to pass.
        """
        from ctxmgr import ContextManager

        cfg = self.config_for(facts)
        try:
            return ContextManager.from_config(
                cfg,
                counter=self.counter,
                summarizer=self.summarizer,
                store=self.store,
                conversation_id=self.conversation_id,
            )
        except ConfigError as exc:
            if exc.key != "max_context_tokens":
                raise
            what = (
                f"the model {cfg.model!r} of {facts.source if facts else 'the model'}"
                if cfg.model
                else "the model (no model object seen yet)"
            )
            raise ConfigError(
                f"{self.adapter}: cannot size the context window for {what}: pass "
                f"max_context_tokens=<the model's window in tokens> to from_config "
                f"(or model=<a known model name>); {exc}",
                key="max_context_tokens",
            ) from exc


# ---------------------------------------------------------------------------------------
# Provider answers
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderOverflow:
    """A provider's context-length-exceeded answer.

    Attributes:
        message: the provider's error message.
        provider_tokens: the prompt size the provider counted, when it said.
        provider_limit: the provider's limit, when it said.
        provider: ``"openai"``, ``"anthropic"``, ``"gemini"`` or ``None``.
    """

    message: str
    provider_tokens: int | None = None
    provider_limit: int | None = None
    provider: str | None = None


_OPENAI = re.compile(
    r"maximum context length is (?P<limit>\d+) tokens.*?(?:resulted in|requested) "
    r"(?P<tokens>\d+) tokens",
    re.S,
)
_ANTHROPIC = re.compile(r"prompt is too long:\s*(?P<tokens>\d+) tokens\s*>\s*(?P<limit>\d+)")
_GEMINI = re.compile(
    r"input token count \(?(?P<tokens>\d+)\)? exceeds the maximum number of tokens allowed "
    r"\(?(?P<limit>\d+)\)?"
)
_GENERIC = re.compile(
    r"context_length_exceeded|maximum context length|prompt is too long|"
    r"exceeds the context window|input token count .* exceeds|context window exceeded",
    re.I | re.S,
)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < 8:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _texts(exc: BaseException) -> list[str]:
    texts = [str(exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        texts.append(str(body))
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        texts.append(message)
    return texts


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and isinstance(err.get("code"), str):
            return str(err["code"])
    return None


def context_length_error(exc: BaseException) -> ProviderOverflow | None:
    """Return the provider's context-length answer carried by ``exc`` (or its causes).

    Recognizes OpenAI ``context_length_exceeded`` (Chat Completions and Responses),
    Anthropic "prompt is too long" and Gemini's token-limit ``INVALID_ARGUMENT``, from the
    SDK exceptions (duck-typed: status code, ``code``, ``body``, message), including when a
    framework wrapped them. Other errors (and non-400/413 statuses) give ``None``.

    Args:
        exc: what the client or framework raised.

    Returns:
        A :class:`ProviderOverflow` with the provider's numbers when it gave them, or
        ``None``.
    """
    for item in _chain(exc):
        status = _status(item)
        if status is not None and status not in (400, 413):
            continue
        texts = _texts(item)
        joined = "\n".join(texts)
        if _code(item) != "context_length_exceeded" and not _GENERIC.search(joined):
            continue
        for pattern, provider in (
            (_OPENAI, "openai"),
            (_ANTHROPIC, "anthropic"),
            (_GEMINI, "gemini"),
        ):
            match = pattern.search(joined)
            if match:
                return ProviderOverflow(
                    _first_message(item),
                    int(match.group("tokens")),
                    int(match.group("limit")),
                    provider,
                )
        return ProviderOverflow(_first_message(item), None, None, provider_of(_class_path(item)))
    return None


def _first_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and isinstance(err.get("message"), str):
            return str(err["message"])
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def usage_of(response: Any) -> int | None:
    """Return the prompt (input) tokens a response reports, or ``None``.

    Reads, in order: LangChain ``usage_metadata["input_tokens"]``; AutoGen
    ``usage.prompt_tokens``; a LlamaIndex ``ChatResponse``'s ``raw`` (OpenAI
    ``usage.prompt_tokens``, Anthropic ``usage.input_tokens`` plus cache reads and writes,
    Gemini ``usage_metadata.prompt_token_count``) and ``additional_kwargs["prompt_tokens"]``.
    A reported 0 counts as not reported.
    """
    meta = getattr(response, "usage_metadata", None)
    if isinstance(meta, Mapping) and _positive_int(meta.get("input_tokens")):
        return int(meta["input_tokens"])
    candidates = [getattr(response, "usage", None)]
    extra = getattr(getattr(response, "message", None), "additional_kwargs", None)
    if isinstance(extra, Mapping):  # LlamaIndex Anthropic streams put usage here
        candidates.append(extra.get("usage"))
    raw = getattr(response, "raw", None)
    if raw is not None:
        candidates += [_get(raw, "usage"), _get(raw, "usage_metadata"), _get(raw, "usageMetadata")]
        message = _get(raw, "message")
        if message is not None:
            candidates.append(_get(message, "usage"))
    for usage in candidates:
        if usage is None:
            continue
        for key in ("prompt_tokens", "input_tokens", "prompt_token_count", "promptTokenCount"):
            value = _positive_int(_get(usage, key))
            if value:
                if key == "input_tokens":  # Anthropic bills cache reads/writes separately
                    for extra in ("cache_read_input_tokens", "cache_creation_input_tokens"):
                        value += _positive_int(_get(usage, extra)) or 0
                return value
    kwargs = getattr(response, "additional_kwargs", None)
    if isinstance(kwargs, Mapping):
        return _positive_int(kwargs.get("prompt_tokens"))
    return None


_STOP_NAMES = {
    "max_output_tokens": "length",
    "max_tokens": "max_tokens",
    "length": "length",
    "model_context_window_exceeded": "model_context_window_exceeded",
}


def _normalize_stop(value: Any) -> str | None:
    if value is None:
        return None
    text = str(getattr(value, "value", getattr(value, "name", value)))
    text = text.rsplit(".", 1)[-1].lower()
    return _STOP_NAMES.get(text, text)


def stop_reason_of(response: Any) -> str | None:
    """Return the response's stop reason, normalized (``"length"``, ``"max_tokens"``...).

    Reads AutoGen ``finish_reason``, LangChain ``response_metadata`` (``finish_reason``,
    ``stop_reason``, Responses ``incomplete_details.reason``) and a LlamaIndex response's
    ``raw`` (``choices[0].finish_reason``, ``stop_reason``, ``candidates[0].finish_reason``).
    Gemini's ``MAX_TOKENS`` becomes ``"max_tokens"``; Responses ``max_output_tokens``
    becomes ``"length"``.
    """
    direct = getattr(response, "finish_reason", None)
    if isinstance(direct, str):
        return _normalize_stop(direct)
    sources: list[Any] = [
        getattr(response, "response_metadata", None),
        getattr(getattr(response, "message", None), "additional_kwargs", None),
    ]
    raw = getattr(response, "raw", None)
    if raw is not None:
        sources.append(raw)
    for src in sources:
        if src is None:
            continue
        for key in ("finish_reason", "stop_reason"):
            if _get(src, key):
                return _normalize_stop(_get(src, key))
        details = _get(src, "incomplete_details")
        if details is not None and _get(details, "reason"):
            return _normalize_stop(_get(details, "reason"))
        for key in ("choices", "candidates"):
            items = _get(src, key)
            if isinstance(items, Sequence) and items:
                value = _get(items[0], "finish_reason") or _get(items[0], "finishReason")
                if value:
                    return _normalize_stop(value)
    return None


def manager_source(
    config: Any,
    summarizer: Any = None,
    counter: Any = None,
    overrides: Mapping[str, Any] | None = None,
    adapter: str = "adapter",
) -> ContextManager | ManagerSpec:
    """Return ``config`` when it is a ready manager, else a :class:`ManagerSpec` for it.

    Raises:
        ConfigError: ``summarizer``, ``counter`` or ``overrides`` given with a ready manager,
            or an invalid config.
    """
    from ctxmgr import ContextManager

    if isinstance(config, ContextManager):
        if summarizer is not None or counter is not None or overrides:
            raise ConfigError(
                "summarizer/counter/overrides apply to a config, not to a ready ContextManager"
            )
        return config
    return ManagerSpec(config, summarizer, counter, overrides, adapter)


def record_response(manager: ContextManager, response: Any) -> None:
    """Feed a response's reported prompt tokens and stop reason to ``manager``.

    Calls ``manager.record_usage(input_tokens=...)`` when the response reports usage and
    ``manager.record_stop(reason)`` when it reports a stop reason (see :func:`usage_of`,
    :func:`stop_reason_of`).
    """
    tokens = usage_of(response)
    if tokens:
        manager.record_usage(input_tokens=tokens)
    stop = stop_reason_of(response)
    if stop:
        manager.record_stop(stop)


def overflow_error(overflow: ProviderOverflow, manager: ContextManager) -> Exception:
    """The ``ContextOverflowError`` raised when the retry after an overflow failed too."""
    from ctxmgr.errors import ContextOverflowError

    return ContextOverflowError.from_provider(
        f"the provider refused the request again after ctxmgr compacted it: {overflow.message}",
        provider_tokens=overflow.provider_tokens,
        provider_limit=overflow.provider_limit,
        max_context_tokens=manager.budget.max_context_tokens,
        effective_limit=manager.budget.effective_limit,
    )
