"""ctxmgr: context-window management for LLM agents."""
