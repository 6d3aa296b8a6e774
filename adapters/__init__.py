"""Framework adapters (imported as ``ctxmgr.adapters``); each needs its extra."""
