"""``labelgate ui``: serve the read-only audit web UI on loopback."""

from __future__ import annotations

from pathlib import Path

import click

from labelgate.guard.audit.cli import db_option
from labelgate.guard.cli import CLIError


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
def ui(db: Path | None, host: str, port: int) -> None:
    """Browse traces, labels, decisions and eval runs in a read-only local web page."""
    import sqlite3

    import uvicorn

    from labelgate.guard.paths import default_db_path
    from labelgate.proxy.config import is_loopback
    from labelgate.proxy.ui.app import create_ui_app

    if not is_loopback(host):
        raise CLIError(f"{host} is not a loopback address: the UI shows audit content unprotected")
    path = db if db is not None else default_db_path()
    try:
        app = create_ui_app(path)
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        raise CLIError(f"cannot open {path}: {exc}") from None
    click.echo(f"labelgate ui: http://{host}:{port}/ (read-only view of {path})")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
