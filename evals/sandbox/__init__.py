"""Sandboxes for agent tools: a real shell in a throwaway root per sample, or the simulated
shell where no sandbox is possible.

One abstract class, :class:`Sandbox` (``setup``, ``exec``, ``read_file``, ``write_file``,
``cleanup``, plus ``shell`` for an agent's command line and ``snapshot`` for the scorers),
and backends chosen by name (after Inspect AI's sandbox environments):

- ``bwrap``: bubblewrap (Debian's ``bubblewrap``): real bash, coreutils, python3, perl, sed,
  awk in a per-sample root; no network, no view of the host; CPU, memory, file-size, time
  and output limits. Other hosts are directories reached with ``scp``/``rsync``/``ssh``
  stand-ins.
- ``simulated``: the in-memory filesystem and restricted shell of ``evals/scheming``.

``auto`` means ``bwrap`` where it runs, else ``simulated`` (:func:`resolve_backend`).
"""

from labelgate.evals.sandbox.base import (
    BACKENDS,
    ExecResult,
    Sandbox,
    SandboxError,
    SandboxLimits,
    backend_class,
    backend_status,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "ExecResult",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "backend_class",
    "backend_status",
    "resolve_backend",
]
