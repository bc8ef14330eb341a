"""The one error of the shared state (``state: {backend: postgres}``), importable without its
driver: the proxy maps it to a 503 whatever backend raised it."""

from __future__ import annotations


class StateUnavailable(RuntimeError):
    """The shared state (PostgreSQL) cannot be reached or failed: the guard fails closed."""
