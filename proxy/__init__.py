"""labelgate's OpenAI-compatible gateway: the wire layer in front of the guard.

``create_app(config)`` builds the Starlette app (``build_app`` adds the label guard);
``labelgate serve`` runs it with uvicorn. The guard plugs in through
``proxy.hook.GatewayHook``. Names are imported lazily, so that the CLI modules under
``proxy`` load fast for ``labelgate --help``.
"""

from __future__ import annotations

from labelgate.guard.lazy import lazy_exports

_EXPORTS = {
    "create_app": "labelgate.proxy.app",
    "build_app": "labelgate.proxy.assemble",
    "ProxyConfig": "labelgate.proxy.config",
    "load_config": "labelgate.proxy.config",
    "Caller": "labelgate.proxy.context",
    "RequestContext": "labelgate.proxy.context",
    "PassThroughHook": "labelgate.proxy.hook",
    "GuardedResponse": "labelgate.proxy.hook",
    "GatewayHook": "labelgate.proxy.hook",
    "PolicyDenied": "labelgate.proxy.hook",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
