"""Peer baselines: other frameworks' context policies, run as :class:`Fitter` objects.

Every peer replays the same transcript at the same budget and, wherever the framework lets
us plug one in, counts tokens with the same :class:`~ctxmgr.tokens.TokenCounter` as every
other policy in the run, so differences in the report come from the policies themselves.
Each peer's :attr:`notes` say where that is not possible (e.g. LlamaIndex only takes a
text tokenizer, so it ignores per-message and tool-call overhead).

Peers (see :data:`PEERS`):

* ``langchain.trim_messages``: ``langchain_core.messages.trim_messages`` (stateless).
* ``langchain.summarization``: LangChain's ``SummarizationMiddleware`` driven offline with a
  fake chat model returning a canned summary; stateful like in a real agent.
* ``llamaindex.ChatMemoryBuffer`` and ``llamaindex.Memory``: LlamaIndex memories.
* ``autogen.BufferedChatCompletionContext``, ``autogen.HeadAndTailChatCompletionContext``
  and ``autogen.TokenLimitedChatCompletionContext``: AutoGen model contexts.
* ``ag2.MessageHistoryLimiter``, ``pydantic_ai.keep_recent`` and
  ``openai_agents.SessionSettings.limit``: message-count limits of AG2, pydantic-ai (its
  documented history-processor recipe) and the OpenAI Agents SDK.

Frameworks are imported lazily; a missing one raises :class:`ImportError` naming the
``pip install "ctxmgr-llm[...]"`` command. Every framework message a peer sends back is mapped
to the original :class:`~ctxmgr.messages.Message` object; messages the peer made itself
(summaries, placeholders) become new messages with ``metadata["peer"]`` set to its name.

Sessions are synchronous. The async AutoGen and LlamaIndex ``Memory`` APIs run on one
private event loop per thread, so :meth:`FitSession.fit` must not be called from inside a
running event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ctxmgr.errors import ConfigError

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import Fitter

__all__ = [
    "PEERS",
    "AG2MessageHistoryLimiter",
    "AgentsSessionLimit",
    "AutogenBuffered",
    "AutogenHeadAndTail",
    "AutogenTokenLimited",
    "LangchainSummarization",
    "LangchainTrimMessages",
    "LlamaIndexChatMemoryBuffer",
    "LlamaIndexMemory",
    "PeerFitter",
    "PydanticAIKeepRecent",
    "make_peers",
]

from ctxmgr.bench.peers._common import _EXTRA_MODULES as _EXTRA_MODULES  # tests patch it
from ctxmgr.bench.peers._common import CANNED_SUMMARY as CANNED_SUMMARY
from ctxmgr.bench.peers._common import PeerFitter
from ctxmgr.bench.peers.ag2 import AG2MessageHistoryLimiter
from ctxmgr.bench.peers.autogen import AutogenBuffered, AutogenHeadAndTail, AutogenTokenLimited
from ctxmgr.bench.peers.langchain import (
    LangchainSummarization,
    LangchainTrimMessages,
)
from ctxmgr.bench.peers.langchain import (
    _from_langchain as _from_langchain,
)
from ctxmgr.bench.peers.langchain import (
    _to_langchain as _to_langchain,
)
from ctxmgr.bench.peers.llamaindex import LlamaIndexChatMemoryBuffer, LlamaIndexMemory
from ctxmgr.bench.peers.llamaindex import _to_llama as _to_llama
from ctxmgr.bench.peers.openai_agents import AgentsSessionLimit
from ctxmgr.bench.peers.pydantic_ai import PydanticAIKeepRecent

# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
PEERS: dict[str, Callable[[], Fitter]] = {
    LangchainTrimMessages.name: LangchainTrimMessages,
    LangchainSummarization.name: LangchainSummarization,
    LlamaIndexChatMemoryBuffer.name: LlamaIndexChatMemoryBuffer,
    LlamaIndexMemory.name: LlamaIndexMemory,
    AutogenBuffered.name: AutogenBuffered,
    AutogenHeadAndTail.name: AutogenHeadAndTail,
    AutogenTokenLimited.name: AutogenTokenLimited,
    AG2MessageHistoryLimiter.name: AG2MessageHistoryLimiter,
    PydanticAIKeepRecent.name: PydanticAIKeepRecent,
    AgentsSessionLimit.name: AgentsSessionLimit,
}
"""Peer name -> factory building its :class:`~ctxmgr.bench.fitter.Fitter`."""


def make_peers(spec: str) -> list[Fitter]:
    """Build the peers named by ``spec``.

    Args:
        spec: ``"all"``, ``"none"`` (or empty), or comma-separated peer names from
            :data:`PEERS` (surrounding spaces ignored, duplicates dropped, order kept).

    Returns:
        The peers as fitters, in the order given (``"all"``: the order of :data:`PEERS`).

    Raises:
        ConfigError: a name is unknown; the message lists the allowed names.
        ImportError: a named peer's framework is not installed (names the pip command).
    """
    text = spec.strip()
    if text.lower() == "all":
        names = list(PEERS)
    elif text.lower() in ("", "none"):
        names = []
    else:
        names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        for name in names:
            if name not in PEERS:
                raise ConfigError(
                    f"unknown peer {name!r}", key="peers", allowed=[*PEERS, "all", "none"]
                )
    return [PEERS[name]() for name in names]
