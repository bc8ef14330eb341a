"""The audit store's errors, in a module of their own: code that only catches them (the span
exporter, the proxy's configuration, the writer) need not import a store and its driver."""

from labelgate.guard.state import StateUnavailable


class AuditWriteError(RuntimeError):
    """The audit store could not be written; audit records are at risk."""


class RecordRejected(Exception):
    """A backend refuses a record for good (a duplicate key, a value it cannot hold): writing
    it again cannot succeed. SQLite's store raises ``sqlite3.IntegrityError`` for the same."""


class AuditOutage(AuditWriteError, StateUnavailable):
    """No new request is admitted: the audit store is out of reach for now (the writer holds
    what is in flight and writes it once the store is back). A ``StateUnavailable`` too, so
    the proxy answers 503 ``state_unavailable``, as for the rest of the shared state."""


class StoreUnavailable(StateUnavailable):
    """The audit store cannot be reached now (PostgreSQL down, the connection lost): nothing
    of the batch was committed, and the same batch may be written again once it is back."""
