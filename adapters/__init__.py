"""Framework adapters (imported as ``ctxmgr.adapters``); each needs its extra.

* :mod:`ctxmgr.adapters.langchain` (``pip install "ctxmgr-llm[langchain]"``):
  ``ContextMiddleware`` for ``create_agent``, ``ContextRunnable`` for LCEL chains,
  ``ManagedChatMessageHistory``, ``LangChainSummarizer``, ``note_tools``.
* :mod:`ctxmgr.adapters.llamaindex` (``pip install "ctxmgr-llm[llamaindex]"``):
  ``ContextMemory`` for chat engines and agents, ``LlamaIndexSummarizer``, ``note_tools``.
* :mod:`ctxmgr.adapters.autogen` (``pip install "ctxmgr-llm[autogen]"``):
  ``ContextManagerContext`` for ``AssistantAgent``, ``AutoGenSummarizer``,
  ``ContextTransform`` (AutoGen 0.2 ``transform_messages``), ``note_tools``.
* :mod:`ctxmgr.adapters.openai_agents` (``pip install "ctxmgr-llm[openai-agents]"``):
  ``ContextFilter`` for ``RunConfig(call_model_input_filter=...)``, ``ContextSession``,
  ``AgentsSummarizer``, ``note_tools``.
* :mod:`ctxmgr.adapters.pydantic_ai` (``pip install "ctxmgr-llm[pydantic-ai]"``):
  ``ContextProcessor`` (history processor / ``ProcessHistory`` capability),
  ``PydanticAISummarizer``, ``note_tools``.
* :mod:`ctxmgr.adapters.langgraph` (``pip install "ctxmgr-llm[langchain]"``): ``ContextHook``,
  a ``pre_model_hook`` for LangGraph's prebuilt ``create_react_agent``.
* :mod:`ctxmgr.adapters.ag2` (``pip install "ctxmgr-llm[ag2]"``): ``ContextTransform`` for AG2's
  ``TransformMessages`` on a ``ConversableAgent``, ``AG2Summarizer``, ``note_tools``.

Each module also has lossless converters ``to_messages`` / ``from_messages`` between the
framework's message types and :class:`ctxmgr.messages.Message`. This package imports no
framework; importing a module whose framework is missing raises ``ImportError`` naming the
extra to install.
"""
