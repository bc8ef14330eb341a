"""What proxy replicas share, and where it is kept: the ``state:`` section's seam.

:class:`SharedState` makes the parts several replicas must agree on: the fingerprint store
(ingested documents and labeled answers), pending approvals, and the per-key limits. The audit
trail has its own backends (``guard/audit``). ``state.backend``:

- ``sqlite`` (:class:`LocalState`, the default): the fingerprint store in a SQLite file under
  ``guard.state_dir``; approvals and limits in this process's memory. One replica.
- ``postgres`` (``proxy/pg_state.py``): all three in one PostgreSQL database, shared by every
  replica that names it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from labelgate.guard.fingerprint import FingerprintStore, SQLiteFingerprintStore
from labelgate.guard.labels import Lattice
from labelgate.proxy.approvals import ApprovalQueue, Approvals
from labelgate.proxy.auth import Limits, LocalLimits
from labelgate.proxy.config import ConfigError, GuardSettings, StateSettings


class SharedState(ABC):
    """The backend of what replicas share. ``start``/``aclose`` run on the event loop, at the
    app's start and end; building one may already connect (a bad DSN fails at start-up)."""

    limits: Limits

    @abstractmethod
    def fingerprints(self, settings: GuardSettings, lattice: Lattice) -> FingerprintStore:
        """The fingerprint store (closed by its owner)."""

    @abstractmethod
    def approvals(self, timeout: float) -> ApprovalQueue:
        """Where ``ask`` decisions wait for a person."""

    @abstractmethod
    def problem(self) -> str | None:
        """Why this replica cannot serve now (its shared state is out of reach), or None:
        ``/readyz`` says it."""

    @abstractmethod
    async def start(self) -> None:
        """On the event loop, before the first request."""

    @abstractmethod
    async def aclose(self) -> None:
        """After the last request."""


class LocalState(SharedState):
    """One process: SQLite files and memory."""

    def __init__(self) -> None:
        self.limits = LocalLimits()

    def fingerprints(self, settings: GuardSettings, lattice: Lattice) -> FingerprintStore:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteFingerprintStore(
            settings.fingerprints_path(), lattice, postings=settings.fingerprint_postings
        )

    def approvals(self, timeout: float) -> ApprovalQueue:
        return Approvals(timeout)

    def problem(self) -> str | None:
        return None  # a file and memory: failures show as errors, not as unreadiness

    async def start(self) -> None:
        return None  # nothing to connect

    async def aclose(self) -> None:
        return None


def open_state(settings: StateSettings) -> SharedState:
    """The backend ``settings`` names; PostgreSQL unreachable raises ``StateUnavailable``."""
    if settings.backend == "postgres":
        try:
            from labelgate.proxy.pg_state import PostgresState  # psycopg: an optional extra
        except ImportError:
            raise ConfigError(
                "state.backend postgres needs psycopg: pip install 'labelgate[postgres]'"
            ) from None
        return PostgresState(settings.resolved_dsn())
    return LocalState()
