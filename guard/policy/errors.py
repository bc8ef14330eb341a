"""The one error a policy file can raise, always a single readable line."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy that cannot be loaded: ``str()`` is ``file:line: field: message``."""

    def __init__(
        self, message: str, filename: str = "<policy>", line: int | None = None, field: str = ""
    ) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line is not None else self.filename
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
