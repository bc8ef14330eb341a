"""The audit writer's error, in a module of its own: code that only catches it (the span
exporter, the proxy's configuration) need not import the store and its dependencies."""


class AuditWriteError(RuntimeError):
    """The audit store could not be written; audit records are at risk."""
