"""labelgate's OpenAI-compatible gateway: the wire layer in front of the guard.

``create_app(config)`` builds the Starlette app; ``labelgate serve`` runs it with uvicorn.
The guard plugs in through ``proxy.guard_hook.GuardHook``.
"""

from proxy.app import create_app
from proxy.config import ProxyConfig, load_config
from proxy.context import Caller, RequestContext
from proxy.guard_hook import AllowAllHook, GuardedResponse, GuardHook, PolicyDenied

__all__ = [
    "AllowAllHook",
    "Caller",
    "GuardHook",
    "GuardedResponse",
    "PolicyDenied",
    "ProxyConfig",
    "RequestContext",
    "create_app",
    "load_config",
]
