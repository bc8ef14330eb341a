"""The audit store's errors, in a module of their own: code that only catches them (the span
exporter, the proxy's configuration, the writer) need not import a store and its driver."""

from labelgate.guard.state import StateUnavailable


class AuditWriteError(RuntimeError):
    """The audit store could not be written; audit records are at risk."""


class RecordRejected(Exception):
    """A backend refuses a record for good (a duplicate key, a value it cannot hold): writing
    it again cannot succeed. SQLite's store raises ``sqlite3.IntegrityError`` for the same."""


class StoreUnavailable(StateUnavailable):
    """The audit store cannot be reached now (PostgreSQL down, the connection lost): nothing
    of the batch was committed, and the same batch may be written again once it is back."""
