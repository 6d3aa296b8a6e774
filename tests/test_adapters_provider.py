"""``ctxmgr.adapters._provider``: facts from real framework models, real SDK errors, usage."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("openai")

import anthropic
import openai
from ctxmgr.adapters._provider import (
    ManagerSpec,
    ModelFacts,
    context_length_error,
    langchain_facts,
    llamaindex_facts,
    provider_of,
    stop_reason_of,
    usage_of,
)
from mockprovider import UNCLOSED_CLIENT_SOCKETS, MockProvider

from ctxmgr.errors import ConfigError

BIG = "word " * 4000  # ~4,000 tokens: over the 3,000-token window

pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_SOCKETS]


def _raised(call: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_openai_context_length_error(mock_provider: MockProvider) -> None:
    """OpenAI's context_length_exceeded 400, from the real SDK exception, with its numbers."""
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="t", max_retries=0)
    exc = _raised(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": BIG}]
        )
    )
    found = context_length_error(exc)
    assert found is not None
    assert (found.provider_tokens, found.provider_limit) == (
        mock_provider.requests[-1].tokens,
        3000,
    )
    assert found.provider == "openai"
    assert "maximum context length is 3000" in found.message


def test_openai_responses_context_length_error(mock_provider: MockProvider) -> None:
    """The Responses API's context_length_exceeded (no numbers in the message)."""
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="t", max_retries=0)
    exc = _raised(lambda: client.responses.create(model="gpt-4o", input=BIG))
    found = context_length_error(exc)
    assert found is not None
    assert (found.provider_tokens, found.provider_limit) == (None, None)


def test_anthropic_context_length_error(mock_provider: MockProvider) -> None:
    """Anthropic's "prompt is too long: M tokens > N maximum", wrapped by LangChain too."""
    client = anthropic.Anthropic(base_url=mock_provider.base_url, api_key="t", max_retries=0)
    exc = _raised(
        lambda: client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": BIG}]
        )
    )
    found = context_length_error(exc)
    assert found is not None
    assert found.provider_tokens == mock_provider.requests[-1].tokens
    assert found.provider_limit == 3000
    wrapper = RuntimeError("model call failed")
    wrapper.__cause__ = exc
    assert context_length_error(wrapper) == found


def test_gemini_context_length_error(mock_provider: MockProvider) -> None:
    """Gemini's INVALID_ARGUMENT token-limit answer from google-genai's ClientError."""
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="t", http_options={"base_url": mock_provider.base_url})
    exc = _raised(lambda: client.models.generate_content(model="gemini-2.5-flash", contents=BIG))
    found = context_length_error(exc)
    assert found is not None
    assert (found.provider_tokens, found.provider_limit) == (
        mock_provider.requests[-1].tokens,
        3000,
    )


def test_other_400_is_not_an_overflow(mock_provider: MockProvider) -> None:
    """A wire-rule 400 (tool message without its call) is not a context-length error."""
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="t", max_retries=0)
    exc = _raised(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "tool", "tool_call_id": "x", "content": "r"}]
        )
    )
    assert isinstance(exc, openai.BadRequestError)
    assert context_length_error(exc) is None
    assert context_length_error(ValueError("prompt is too long")) is not None
    assert context_length_error(ValueError("something else")) is None


def test_usage_and_stop_from_sdk_objects(mock_provider: MockProvider) -> None:
    """usage_of / stop_reason_of read the real SDK and framework response objects."""
    from langchain_core.messages import AIMessage

    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="t", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )

    class Raw:  # a LlamaIndex ChatResponse keeps the SDK object as .raw
        raw = reply

    assert usage_of(Raw()) == mock_provider.requests[-1].tokens
    assert stop_reason_of(Raw()) == "stop"
    message = AIMessage(
        "x",
        usage_metadata={"input_tokens": 120, "output_tokens": 1, "total_tokens": 121},
        response_metadata={"stop_reason": "max_tokens"},
    )
    assert (usage_of(message), stop_reason_of(message)) == (120, "max_tokens")
    gemini = AIMessage("x", response_metadata={"finish_reason": "MAX_TOKENS"})
    assert stop_reason_of(gemini) == "max_tokens"
    responses = AIMessage(
        "x", response_metadata={"incomplete_details": {"reason": "max_output_tokens"}}
    )
    assert stop_reason_of(responses) == "length"


def test_facts_from_framework_models() -> None:
    """Model name, window and provider from real LangChain and LlamaIndex model objects."""
    from langchain_anthropic import ChatAnthropic
    from langchain_openai import ChatOpenAI
    from llama_index.llms.openai import OpenAI

    gpt = ChatOpenAI(model="gpt-4o", api_key="t")  # type: ignore[arg-type]
    facts = langchain_facts(gpt.bind_tools([]))
    assert (facts.model, facts.provider) == ("gpt-4o", "openai")
    assert facts.window == (gpt.profile or {}).get("max_input_tokens")
    claude = langchain_facts(ChatAnthropic(model="claude-sonnet-4-5", api_key="t"))  # type: ignore[call-arg,arg-type]
    assert (claude.model, claude.provider) == ("claude-sonnet-4-5", "anthropic")
    li = llamaindex_facts(OpenAI(model="gpt-4o", api_key="t"))
    assert (li.model, li.window, li.provider) == ("gpt-4o", 128_000, "openai")
    assert provider_of(None, "models/gemini-2.0-flash") == "gemini"


def test_manager_spec_explicit_window_wins() -> None:
    """An explicit max_context_tokens beats the model's window; the model names the tokenizer."""
    spec = ManagerSpec("agent", overrides={"max_context_tokens": 3000})
    manager = spec.build(ModelFacts("gpt-4o", 128_000, "openai"))
    assert manager.budget.max_context_tokens == 3000
    assert manager.config.model == "gpt-4o"
    assert (
        ManagerSpec("agent").build(ModelFacts("gpt-4o", None, "openai")).budget.max_context_tokens
        == 128_000
    )


def test_manager_spec_unknown_model_says_what_to_pass() -> None:
    """An unknown model without a window: ConfigError telling to pass max_context_tokens."""
    with pytest.raises(ConfigError, match="pass max_context_tokens=") as info:
        ManagerSpec("agent", adapter="ContextMiddleware").build(ModelFacts("my-local-llm"))
    assert "ContextMiddleware" in str(info.value)
    with pytest.raises(ConfigError, match="max_context_tokens"):
        ManagerSpec("agent").build(None)


def test_middleware_sizes_the_window_from_the_agent_model(mock_provider: MockProvider) -> None:
    """from_config("agent") with no window: the agent's model sizes it at the first call.

    The window is ChatAnthropic's ``profile["max_input_tokens"]``, the provider profile is
    Anthropic's and the model name picks the tokenizer.
    """
    from ctxmgr.adapters.langchain import ContextMiddleware
    from langchain.agents import create_agent
    from mockprovider import langchain_model

    mock_provider.window = 300_000
    model = langchain_model("anthropic", mock_provider)
    middleware = ContextMiddleware.from_config("agent")
    agent = create_agent(model, [], system_prompt="Be brief.", middleware=[middleware])
    agent.invoke({"messages": [("user", "hi")]})
    manager = middleware.manager_for("default")
    assert manager.budget.max_context_tokens == model.profile["max_input_tokens"]
    assert manager.profile.name == "anthropic"
    assert manager.config.model == "claude-sonnet-4-5"


def test_fitting_step_without_a_model_says_what_to_pass() -> None:
    """ContextRunnable without model= or a window: ConfigError naming max_context_tokens."""
    from ctxmgr.adapters.langchain import ContextRunnable

    runnable = ContextRunnable.from_config("agent")
    with pytest.raises(ConfigError, match="max_context_tokens"):
        runnable.invoke([("user", "hi")])
    sized = ContextRunnable.from_config("agent", max_context_tokens=8000)
    assert len(sized.invoke([("user", "hi")])) == 1
