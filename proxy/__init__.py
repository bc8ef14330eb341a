"""labelgate's OpenAI-compatible gateway: the wire layer in front of the guard.

``create_app(config)`` builds the Starlette app (``build_app`` adds the label guard);
``labelgate serve`` runs it with uvicorn. The guard plugs in through
``proxy.guard_hook.GuardHook``. Names are imported lazily, so that the CLI modules under
``proxy`` load fast for ``labelgate --help``.
"""

from __future__ import annotations

from guard.lazy import lazy_exports

_EXPORTS = {
    "create_app": "proxy.app",
    "build_app": "proxy.assemble",
    "ProxyConfig": "proxy.config",
    "load_config": "proxy.config",
    "Caller": "proxy.context",
    "RequestContext": "proxy.context",
    "AllowAllHook": "proxy.guard_hook",
    "GuardedResponse": "proxy.guard_hook",
    "GuardHook": "proxy.guard_hook",
    "PolicyDenied": "proxy.guard_hook",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
