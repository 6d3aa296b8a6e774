"""ctxmgr: keep an LLM agent's context window healthy.

Pluggable context-management middleware: a token budget with compaction hysteresis,
tool-pair-safe segments, strategies as pluggy hooks (pin-and-slide FIFO, relevance
eviction, tool-result clearing, running summaries, system-prompt replay, scratchpad
notes), and adapters for LangChain, LlamaIndex and AutoGen (``ctxmgr.adapters``).

Quick start::

    from ctxmgr import ContextManager, Message

    mgr = ContextManager.from_config("agent", max_context_tokens=8000)
    fitted, report = mgr.fit([Message.system("You are terse."), Message.user("hi")])
"""

from ctxmgr.budget import Budget
from ctxmgr.config import CtxmgrConfig, StrategyConfig, load_config
from ctxmgr.errors import (
    AgentLoopError,
    ConfigError,
    ContextOverflowError,
    CtxmgrError,
    DatasetError,
    InvalidHistoryError,
    InvalidStateError,
    StrategyError,
    TranscriptError,
)
from ctxmgr.manager import ContextManager
from ctxmgr.messages import (
    ContentPart,
    Message,
    ToolCall,
    from_openai,
    messages_from_openai,
    messages_to_openai,
    to_openai,
)
from ctxmgr.providers import ProviderProfile, get_profile
from ctxmgr.report import FitReport, FitResult, SegmentRecord
from ctxmgr.segments import Repair, Segment, segment_messages
from ctxmgr.state import Archive, Note, SessionState
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.summarizers import AsyncSummarizer, ExtractiveSummarizer, Summarizer
from ctxmgr.tokens import TokenCounter, get_counter
from ctxmgr.window import Injection, Window

__version__ = "0.1.0"

__all__ = [
    "AgentLoopError",
    "Archive",
    "AsyncSummarizer",
    "Budget",
    "ConfigError",
    "ContentPart",
    "ContextManager",
    "ContextOverflowError",
    "CtxmgrConfig",
    "CtxmgrError",
    "DatasetError",
    "ExtractiveSummarizer",
    "FitReport",
    "FitResult",
    "Injection",
    "InvalidHistoryError",
    "InvalidStateError",
    "Message",
    "Note",
    "ProviderProfile",
    "Repair",
    "Segment",
    "SegmentRecord",
    "SessionState",
    "Strategy",
    "StrategyConfig",
    "StrategyError",
    "StrategyOptions",
    "Summarizer",
    "TokenCounter",
    "ToolCall",
    "TranscriptError",
    "Window",
    "__version__",
    "from_openai",
    "get_counter",
    "get_profile",
    "load_config",
    "messages_from_openai",
    "messages_to_openai",
    "segment_messages",
    "to_openai",
]
