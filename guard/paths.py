"""Where labelgate keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "LABELGATE_DB"


def default_db_path() -> Path:
    """The audit database: ``$LABELGATE_DB``, else ``./.labelgate/audit.db``."""
    configured = os.environ.get(DB_ENV)
    return Path(configured) if configured else Path.cwd() / ".labelgate" / "audit.db"
