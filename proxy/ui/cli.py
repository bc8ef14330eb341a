"""``labelgate ui``: serve the read-only audit web UI on loopback."""

from __future__ import annotations

from pathlib import Path

import click

from labelgate.guard.audit.cli import store_options, target_of
from labelgate.guard.cli import CLIError


@click.command()
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
def ui(db: Path | None, dsn: str | None, host: str, port: int) -> None:
    """Browse traces, labels, decisions and eval runs in a read-only local web page (a
    SQLite audit file, or with --dsn a PostgreSQL audit store)."""
    import sqlite3

    import uvicorn

    from labelgate.guard.audit.errors import StoreUnavailable
    from labelgate.proxy.config import is_loopback
    from labelgate.proxy.ui.app import create_ui_app

    if not is_loopback(host):
        raise CLIError(f"{host} is not a loopback address: the UI shows audit content unprotected")
    target = target_of(db, dsn)
    try:
        app = create_ui_app(target)
    except StoreUnavailable as exc:
        raise CLIError(str(exc)) from None
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        raise CLIError(f"cannot open {target}: {exc}") from None
    shown = app.state.ui_target
    click.echo(f"labelgate ui: http://{host}:{port}/ (read-only view of {shown})")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
