"""Strategies shipped with ctxmgr (imported as ``ctxmgr.strategies``)."""
